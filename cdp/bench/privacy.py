"""`bench privacy`: erase one subject with many events from a large database while others keep arriving.

The data set is built with set-based SQL (the bench measures erasure, not ingestion): `others` profiles
with `events / others` events each, and one subject with `subject_events`, spread over the last 80 days,
with identifiers, trait history and consent. The others live in a mix of countries (their regime stored as
the pipeline stores it) and a share of them made consent choices. A separate process keeps ingesting events
of other people during the erasure and reports its batch latencies: ingestion is not locked out if they stay
low. Before that, it measures the consent filter over every live profile.
"""
from __future__ import annotations

import subprocess
import sys
import time

import orjson
from django.conf import settings
from django.db import connection, transaction

from consent.regimes import regime_for
from consent.selectors import consent_allowed_q, consent_allowed_sql, consent_granted
from consent.services.ledger import ConsentChoice, consent_record
from consent.services.erasure import privacy_erase_step
from consent.services.privacy import privacy_request_create, privacy_request_execute, privacy_request_verify
from profiles.models import Profile, Source

# Where the others live, spelled as clients send them: four in ten in GDPR countries, three in the US, three
# where no regime is named (the default regime applies).
COUNTRIES = ["DE", "FR", "United Kingdom", "es", "US", "US", "USA", "BR", "IN", None]
# The share of the others with an explicit choice per purpose (from a form, a banner, an opt-out), and the share
# of those choices that grant. Their ledger entries stay after cleanup, anonymised: the ledger is append-only.
CHOICES = {"marketing_email": (30, 50), "analytics": (40, 70), "sale_sharing": (10, 0)}


def _build(tag: str, source: Source, others: int, per_other: int, subject_events: int) -> tuple[list[int], int]:
    """Creates the data set; returns the other profiles' ids and the subject's profile id."""
    regimes = [regime_for({"country": c}, default="") for c in COUNTRIES]
    # The space an earlier run's cleanup freed is reused instead of the table growing by a whole data set, which
    # every scan of it would read again (autovacuum does this on a server where it runs).
    with connection.cursor() as cur:
        cur.execute("VACUUM profiles_profile, consent_consentstate")
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "INSERT INTO profiles_profile (created_at, updated_at, traits, trait_times, computed, event_count, "
            "event_counts, first_seen, last_seen, regime) SELECT now(), now(), jsonb_strip_nulls(jsonb_build_object("
            "'name', 'Bench ' || g, 'country', (%s::text[])[1 + g %% %s])), '{}', '{}', 0, '{}', "
            "now() - interval '80 days', now(), (%s::text[])[1 + g %% %s] "
            "FROM generate_series(1, %s) g RETURNING id",
            [COUNTRIES, len(COUNTRIES), regimes, len(COUNTRIES), others + 1])
        ids = sorted(r[0] for r in cur.fetchall())
        subject, other_ids = ids[-1], ids[:-1]
        # Array literals: psycopg's list adapter checks every element in Python.
        id_array, others_array = ("{" + ",".join(map(str, some)) + "}" for some in (ids, other_ids))
        cur.execute(
            "INSERT INTO profiles_identifier (type, value, profile_id, first_seen) "
            "SELECT k.kind, %s || '-' || k.kind || '-' || p.id, p.id, now() FROM unnest(%s::bigint[]) AS p(id) "
            "CROSS JOIN (VALUES ('user_id'), ('anonymous_id'), ('email')) AS k(kind)", [tag, id_array])
        # Consent choices of the others, each a ledger entry and the state pointing at it, as consent_record
        # leaves them. Which profiles chose, and what, is spread by a hash of the id.
        for purpose, (chose, grant) in CHOICES.items():
            cur.execute(
                "WITH entries AS (INSERT INTO consent_consententry (profile_id, purpose_id, granted, source, regime, "
                "recorded_at, created_at, policy_version, tc_string, ip_hash, user_agent, message_id, reason) "
                "SELECT p.id, pu.id, h.v %% 100 < %s, 'import', COALESCE(NULLIF(p.regime, ''), %s), "
                "now() - (h.v %% 80) * interval '1 day', now(), '', '', '', '', '', %s "
                "FROM unnest(%s::bigint[]) AS o(id) JOIN profiles_profile p ON p.id = o.id "
                "CROSS JOIN LATERAL (SELECT abs(hashtext(%s || p.id)) AS v) h "
                "JOIN consent_purpose pu ON pu.key = %s WHERE h.v / 100 %% 100 < %s "
                "RETURNING id, profile_id, purpose_id, granted, source, recorded_at) "
                "INSERT INTO consent_consentstate (profile_id, purpose_id, granted, source, recorded_at, entry_id) "
                "SELECT profile_id, purpose_id, granted, source, recorded_at, id FROM entries",
                [grant, settings.CONSENT_DEFAULT_REGIME, f"bench data set {tag}", others_array, purpose, purpose,
                 chose])
        cur.execute("SELECT nextval(pg_get_serial_sequence('profiles_pendingevent', 'id'))")
        first_id = cur.fetchone()[0]
        total = others * per_other + subject_events
        # Event ids come from the queue's sequence, as the pipeline's do; move it past this range.
        cur.execute("SELECT setval(pg_get_serial_sequence('profiles_pendingevent', 'id'), %s)", [first_id + total])
        insert = (
            "INSERT INTO profiles_event (id, source_id, message_id, type, event, user_id, anonymous_id, timestamp, "
            "received_at, payload, profile_id, processed_at) "
            "SELECT %s + g, %s, %s || '-' || g, 'track', 'Product Viewed', %s || '-user_id-' || p, "
            "%s || '-anonymous_id-' || p, now() - (g %% 80) * interval '1 day' - (g %% 86400) * interval '1 second', "
            "now(), jsonb_build_object('type', 'track', 'event', 'Product Viewed', 'userId', %s || '-user_id-' || p, "
            "'properties', jsonb_build_object('sku', 'SKU-' || (g %% 500), 'price', (g %% 10000) / 100.0)), p, now() "
            "FROM (SELECT g, {profile} AS p FROM generate_series(%s, %s) AS g) s")
        cur.execute(insert.format(profile=f"{other_ids[0]} + (g %% {others})"),
                    [first_id, source.pk, tag, tag, tag, tag, 0, others * per_other - 1])
        cur.execute(insert.format(profile=str(subject)),
                    [first_id, source.pk, tag, tag, tag, tag, others * per_other, total - 1])
        cur.execute("INSERT INTO profiles_traitchange (profile_id, key, old_value, new_value, changed_at) "
                    "SELECT %s, 'plan', to_jsonb(g - 1), to_jsonb(g), now() FROM generate_series(1, 1000) g", [subject])
        cur.execute("UPDATE profiles_profile SET event_count = %s WHERE id = %s", [subject_events, subject])
        cur.execute("ANALYZE profiles_event")
    # What autovacuum does after a bulk load on a server where it runs (visibility map, statistics), so that
    # the filter reads consent states from their index alone. Outside the transaction, as VACUUM must be.
    with connection.cursor() as cur:
        cur.execute("VACUUM (ANALYZE) profiles_profile, consent_consentstate")
    return other_ids, subject


INGEST_DURING = """
import os, sys, time, django, orjson
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings"); django.setup()
from cdp.pipeline import pipeline_process_batch
from profiles.models import Source
from profiles.services.ingest import events_accept
source, tag, stop = Source.objects.get(pk=int(sys.argv[1])), sys.argv[2], sys.argv[5]
first, count = int(sys.argv[3]), int(sys.argv[4])
latencies, k = [], 0
while not os.path.exists(stop):
    started = time.perf_counter()
    events_accept(source=source, messages=[
        {"type": "track", "userId": f"{tag}-user_id-{first + (k * 7 + i) % count}", "event": "During",
         "messageId": f"{tag}-during-{k}-{i}"} for i in range(200)])
    while pipeline_process_batch(batch_size=200):
        pass
    latencies.append(time.perf_counter() - started)
    k += 1
print(orjson.dumps({"batches": len(latencies), "max_s": max(latencies, default=0),
                    "mean_s": sum(latencies) / len(latencies) if latencies else 0}).decode())
"""


def bench_privacy(*, events: int, subject_events: int, others: int, tag: str, source: Source, log) -> dict:
    per_other = max(1, (events - subject_events) // others)
    started = time.perf_counter()
    other_ids, subject = _build(tag, source, others, per_other, subject_events)
    consent_record(choices=[ConsentChoice(profile_id=subject, purpose="analytics", granted=True, source="api",
                                          recorded_at=Profile.objects.get(pk=subject).created_at)])
    build_s = time.perf_counter() - started
    log(f"built {others * per_other + subject_events} events ({subject_events} of the subject) and "
        f"{others + 1} profiles in {build_s:.1f}s")

    # Consent reads: the enforcement selector over every other profile, repeated.
    reads, read_started, sample = 0, time.perf_counter(), other_ids[:5000]
    while time.perf_counter() - read_started < 2:
        consent_granted(profile_ids=sample, purpose="marketing_email")
        reads += len(sample)
    read_rate = reads / (time.perf_counter() - read_started)

    # The consent filter as a segment uses it: of all live profiles, how many allow email marketing, in one
    # COUNT over the whole table. The first count warms the cache and checks that both forms agree.
    live = Profile.objects.filter(merged_into__isnull=True)
    allowed = live.filter(consent_allowed_q(purpose="marketing_email"))
    profiles, allowed_count = live.count(), allowed.count()
    condition, params = consent_allowed_sql(purpose="marketing_email", profile_alias="p")
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM profiles_profile p WHERE p.merged_into_id IS NULL AND {condition}", params)
        if cur.fetchone()[0] != allowed_count:
            raise AssertionError("the ORM and SQL forms of the consent filter disagree")
    counts, filter_started = 0, time.perf_counter()
    while time.perf_counter() - filter_started < 2:
        allowed.count()
        counts += 1
    filter_rate = profiles * counts / (time.perf_counter() - filter_started)

    stop = f"/tmp/bench-privacy-stop-{tag}"
    ingest = subprocess.Popen([sys.executable, "-c", INGEST_DURING, str(source.pk), tag, str(other_ids[0]),
                               str(len(other_ids)), stop], cwd=str(settings.BASE_DIR), stdout=subprocess.PIPE,
                              text=True)
    time.sleep(2)  # ingestion is under way before the erasure starts
    request = privacy_request_create(kind="deletion", regime="gdpr", identifiers=[
        {"type": "user_id", "value": f"{tag}-user_id-{subject}"}], actor="bench")
    privacy_request_verify(request_id=request.pk, actor="bench")
    erase_started = time.perf_counter()
    privacy_request_execute(request_id=request.pk, actor="bench")
    steps = 0
    while not privacy_erase_step(request_id=request.pk):
        steps += 1
    erase_s = time.perf_counter() - erase_started
    time.sleep(1)
    open(stop, "w").close()
    during = orjson.loads(ingest.communicate(timeout=120)[0].strip().splitlines()[-1])
    request.refresh_from_db()
    counts = request.receipt["erased"]
    return {"erase_s": round(erase_s, 3), "rows_erased": sum(counts.values()), "erased": counts,
            "erase_steps": steps + 1, "subject_events": subject_events,
            "database_events": others * per_other + subject_events, "build_s": round(build_s, 1),
            "consent_reads_per_s": round(read_rate, 1), "consent_filter_profiles_per_s": round(filter_rate, 1),
            "consent_filter_profiles": profiles, "consent_filter_allowed": allowed_count,
            "ingest_batches_during_erase": during["batches"], "ingest_batch_max_s": round(during["max_s"], 3),
            "ingest_batch_mean_s": round(during["mean_s"], 3), "other_ids": (other_ids[0], other_ids[-1])}
