"""`bench segments`: recompute, preview, the pipeline with realtime segments, and realtime latency, over a large
data set made with set-based SQL (the bench measures segments, not ingestion).

The data: `profiles` people with traits (plan, country, lifetime value, signup date) and a computed monetary value,
a user id each and an email for half; `events` track events over the last 30 days, spread unevenly (a few people
do much more than most, as on real sites), mostly Product Viewed, some Product Added and Order Completed. Ids come
from blocks reserved on the tables' own sequences, so cleanup deletes exactly what the run made.
"""
from __future__ import annotations

import base64
import http.client
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import orjson
from django.conf import settings
from django.db import connection, transaction

from cdp.celery import app as celery_app
from profiles.models import Source
from profiles.services.ingest import events_accept
from segments.models import Segment
from segments.selectors import segment_preview
from segments.services.definitions import segment_create
from segments.services.membership import segment_recompute

EVENT_NAMES = ["Product Viewed"] * 5 + ["Product Added"] * 2 + ["Order Completed", "Page Scrolled", "Signed Up"]
CATEGORIES = ["shoes", "shirts", "bags", "hats", "socks"]
PLANS = ["free", "pro", "enterprise"]
COUNTRIES = ["DE", "US", "FR", "GB", "BR"]
INSERT_CHUNK = 1_000_000

BEHAVIOUR = {"all": [
    {"event": "Product Viewed", "within": "24h", "count": {"op": "gte", "value": 3}},
    {"not": {"event": "Order Completed", "within": "7d"}},
]}
BEHAVIOUR_SQL = (
    "SELECT p.id FROM profiles_profile p JOIN (SELECT profile_id FROM profiles_event WHERE type = 'track' "
    "AND event = 'Product Viewed' AND \"timestamp\" >= %(now)s - interval '24 hours' AND profile_id IS NOT NULL "
    "GROUP BY profile_id HAVING count(*) >= 3) v ON v.profile_id = p.id WHERE p.merged_into_id IS NULL "
    "AND NOT EXISTS (SELECT 1 FROM profiles_event o WHERE o.profile_id = p.id AND o.type = 'track' "
    "AND o.event = 'Order Completed' AND o.\"timestamp\" >= %(now)s - interval '7 days')")
TRAIT = {"all": [{"trait": "plan", "op": "eq", "value": "pro"}, {"trait": "ltv", "op": "gt", "value": 500}]}
TRAIT_SQL = (
    "SELECT p.id FROM profiles_profile p WHERE p.merged_into_id IS NULL AND p.traits ->> 'plan' = 'pro' "
    "AND jsonb_typeof(p.traits -> 'ltv') = 'number' AND (p.traits ->> 'ltv')::numeric > 500")


def reserve_ids(cur, table: str, count: int) -> int:
    """Reserves `count` ids of the table's identity sequence; returns the first."""
    cur.execute(f"SELECT pg_get_serial_sequence('{table}', 'id')")
    sequence = cur.fetchone()[0]
    cur.execute("SELECT nextval(%s)", [sequence])
    first = cur.fetchone()[0]
    cur.execute("SELECT setval(%s, %s)", [sequence, first + count])
    return first


def _build(tag: str, source: Source, profiles: int, events: int, now: datetime, log: Callable) -> dict:
    with connection.cursor() as cur:
        first_profile = reserve_ids(cur, "profiles_profile", profiles)
        first_event = reserve_ids(cur, "profiles_pendingevent", events)
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "INSERT INTO profiles_profile (id, created_at, updated_at, traits, trait_times, computed, event_count, "
            "event_counts, first_seen, last_seen, regime) SELECT %(first)s + g, %(now)s, %(now)s, jsonb_build_object("
            "'plan', (%(plans)s::text[])[1 + g %% 3], 'country', (%(countries)s::text[])[1 + g %% 5], "
            "'ltv', (g * 37) %% 1000, 'signup', to_char(%(now)s - make_interval(days => g %% 700), 'YYYY-MM-DD')), "
            "'{}', jsonb_build_object('monetary_value', (g * 53) %% 2000), 0, '{}', %(now)s - interval '30 days', "
            "%(now)s, '' FROM generate_series(0, %(n)s - 1) g",
            {"first": first_profile, "now": now, "plans": PLANS, "countries": COUNTRIES, "n": profiles})
        cur.execute(
            "INSERT INTO profiles_identifier (type, value, profile_id, first_seen) "
            "SELECT 'user_id', %(tag)s || '-u' || g, %(first)s + g, %(now)s FROM generate_series(0, %(n)s - 1) g "
            "UNION ALL SELECT 'email', 'p' || g || '.' || %(tag)s || '@bench.example', %(first)s + g, %(now)s "
            "FROM generate_series(0, %(n)s - 1, 2) g",
            {"tag": tag, "first": first_profile, "now": now, "n": profiles})
    log(f"  {profiles:,} profiles with identifiers in {time.perf_counter() - started:.1f} s")
    for start in range(0, events, INSERT_CHUNK):
        size = min(INSERT_CHUNK, events - start)
        with transaction.atomic(), connection.cursor() as cur:
            # u in [0, 1) from a multiplicative hash; the square puts more events on the first profiles.
            cur.execute(
                "INSERT INTO profiles_event (id, source_id, message_id, type, event, user_id, anonymous_id, "
                "\"timestamp\", received_at, payload, profile_id, processed_at, error) "
                "SELECT %(first)s + k, %(source)s, %(tag)s || '-' || k, 'track', (%(names)s::text[])[1 + k %% 10], "
                "'', '', %(now)s - make_interval(secs => (k * 7919) %% (30 * 86400)), %(now)s, jsonb_build_object("
                "'type', 'track', 'event', (%(names)s::text[])[1 + k %% 10], 'properties', jsonb_build_object("
                "'category', (%(cats)s::text[])[1 + (k / 10) %% 5], 'revenue', (k * 13) %% 500)), "
                "%(first_profile)s + floor(%(n)s * power(((k::numeric * 2654435761) %% 4294967296) / 4294967296, 2))"
                "::bigint, %(now)s, '' FROM generate_series(%(start)s::bigint, %(end)s::bigint) k",
                {"first": first_event, "source": source.pk, "tag": tag, "names": EVENT_NAMES, "now": now,
                 "cats": CATEGORIES, "first_profile": first_profile, "n": profiles, "start": start,
                 "end": start + size - 1})
        log(f"  {start + size:,} events, {time.perf_counter() - started:.0f} s")
    with connection.cursor() as cur:
        cur.execute("ANALYZE profiles_profile, profiles_identifier, profiles_event")
    return {"first_profile": first_profile, "first_event": first_event,
            "build_seconds": round(time.perf_counter() - started, 1)}


def _best_of(runs: int, fn: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def _count(sql: str, params) -> int:
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM ({sql}) s", params)
        return cur.fetchone()[0]


def _compiled_sql(definition: dict, now: datetime):
    from consent.selectors import consent_allowed_sql
    from segments import rules
    from segments.compiler import compile_members

    compiled = compile_members(rules.parse(definition), now=now, segment_ids=dict(Segment.objects.values_list(
        "key", "id")), consent_sql=lambda purpose, alias: consent_allowed_sql(purpose=purpose, profile_alias=alias))
    return compiled.sql, compiled.params


def _recompute(tag: str, name: str, definition: dict, handwritten: str, now: datetime, log: Callable) -> dict:
    sql, params = _compiled_sql(definition, now)
    compiled_s, compiled_count = _best_of(3, lambda: _count(sql, params))
    hand_s, hand_count = _best_of(3, lambda: _count(handwritten, {"now": now}))
    if compiled_count != hand_count:
        raise RuntimeError(f"{name}: the compiled query found {compiled_count} profiles, the hand-written one "
                           f"{hand_count}")
    segment = segment_create(key=f"{tag}-{name}", name=f"Bench {name}", mode=Segment.Mode.BATCH,
                             definition=definition)
    started = time.perf_counter()
    first = segment_recompute(segment_id=segment.pk, now=now)
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    again = segment_recompute(segment_id=segment.pk, now=now + timedelta(seconds=1))
    again_s = time.perf_counter() - started
    log(f"  {name}: {compiled_count:,} members; query {compiled_s:.2f} s vs hand-written {hand_s:.2f} s; "
        f"first recompute {first_s:.2f} s, again {again_s:.2f} s")
    return {"members": compiled_count, "query_s": round(compiled_s, 3), "handwritten_sql_s": round(hand_s, 3),
            "ratio": round(compiled_s / hand_s, 3) if hand_s else None, "first_recompute_s": round(first_s, 3),
            "recompute_s": round(again_s, 3), "entered": len(first.entered), "again_changed":
            len(again.entered) + len(again.exited)}


def _stream(tag: str, profiles: int, count: int, offset: int) -> list[dict]:
    """Track and identify messages of existing bench people (by user id), as clients send them."""
    out = []
    for k in range(count):
        person = (k * 7 + offset) % profiles
        name = EVENT_NAMES[k % 10]
        message = {"type": "track", "event": name, "userId": f"{tag}-u{person}", "messageId": f"{tag}-s{offset}-{k}",
                   "properties": {"category": CATEGORIES[k % 5], "revenue": k % 300}}
        if k % 10 == 9:
            message = {"type": "identify", "userId": f"{tag}-u{person}", "messageId": f"{tag}-s{offset}-{k}",
                       "traits": {"plan": PLANS[k % 3]}}
        out.append(message)
    return out


def _process_rate(source: Source, messages: list[dict]) -> float:
    for start in range(0, len(messages), 500):
        events_accept(source=source, messages=messages[start:start + 500])
    worker = subprocess.run([sys.executable, "manage.py", "bench", "_process"], cwd=str(settings.BASE_DIR),
                            capture_output=True, text=True, timeout=3600)
    if worker.returncode != 0:
        raise RuntimeError(f"the pipeline worker failed:\n{worker.stderr[-3000:]}")
    result = orjson.loads([line for line in worker.stdout.splitlines() if line.startswith("{")][-1])
    return result["processed"] / result["elapsed"]


REALTIME = [
    {"event": "Product Viewed", "within": "1h"},
    {"event": "Product Viewed", "within": "24h", "count": {"op": "gte", "value": 3}},
    {"event": "Product Added", "within": "7d", "not_followed_by": {"event": "Order Completed", "within": "2h"}},
    {"event": "Order Completed", "within": "30d", "sum": {"property": "revenue", "op": "gt", "value": 500}},
    {"event": "Order Completed", "last": {"op": "newer_than", "value": "7d"}},
    {"event": "Product Viewed", "where": [{"property": "category", "op": "eq", "value": "shoes"}], "within": "7d"},
    {"event": "Signed Up", "first": {"op": "newer_than", "value": "30d"}},
    {"event": "Page Scrolled", "within": "24h", "count": {"op": "gte", "value": 2}},
    {"event": "Product Added", "within": "24h", "followed_by": {"event": "Order Completed", "within": "1h"}},
    {"event": "Order Completed", "within": "30d", "avg": {"property": "revenue", "op": "gte", "value": 200}},
    {"trait": "plan", "op": "eq", "value": "pro"},
    {"trait": "ltv", "op": "between", "value": [100, 400]},
    {"trait": "country", "op": "in", "value": ["DE", "FR"]},
    {"computed": "monetary_value", "op": "gt", "value": 1000},
    {"trait": "signup", "op": "newer_than", "value": "4w"},
    {"all": [{"trait": "plan", "op": "neq", "value": "free"}, {"event": "Product Viewed", "within": "24h"}]},
    {"any": [{"trait": "country", "op": "eq", "value": "US"}, {"event": "Order Completed", "within": "7d"}]},
    {"identifier": "email"},
    {"not": {"event": "Order Completed", "within": "30d"}},
    {"all": [{"identifier": "email"}, {"trait": "plan", "op": "eq", "value": "enterprise"}]},
]


def _latency(tag: str, source: Source, segment: Segment, profiles: int, samples: int, log: Callable) -> list[float]:
    """Sends one event at a time over HTTP to a real gunicorn, a plain Celery worker processing; the time from
    the 200 until the person's membership row exists."""
    env = dict(os.environ)
    base = str(settings.BASE_DIR)
    # The run computed every segment it created itself; the recomputes their creation queued would only make
    # the worker busy with repeats before the first sample.
    with celery_app.connection_for_write() as broker:
        broker.default_channel.queue_purge("segments")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    logs = tempfile.NamedTemporaryFile("w", prefix="bench-segments-", suffix=".log", delete=False)
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "cdp.wsgi", "-w", "1", "-b", f"127.0.0.1:{port}",
                               "--log-level", "warning"], cwd=base, env=env, stdout=logs, stderr=subprocess.STDOUT)
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "cdp", "worker", "--pool", "solo", "-l",
                               "warning", "--without-gossip", "--without-mingle"], cwd=base, env=env, stdout=logs,
                              stderr=subprocess.STDOUT)
    auth = "Basic " + base64.b64encode(f"{source.write_key}:".encode()).decode()
    latencies = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=2).request("GET", "/healthz")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not start; see {logs.name}")
                time.sleep(0.2)
        time.sleep(3)  # the worker connects to the broker
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for k in range(samples):
            person = (k * 7919) % profiles
            body = orjson.dumps({"userId": f"{tag}-u{person}", "event": "Bench Latency", "messageId":
                                 f"{tag}-lat-{k}"})
            conn.request("POST", "/v1/track", body=body, headers={"Authorization": auth,
                                                                  "Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            sent = time.perf_counter()
            if response.status != 200:
                raise RuntimeError(f"collection answered {response.status}")
            with connection.cursor() as cur:
                while True:
                    cur.execute("SELECT 1 FROM segments_segmentmembership m JOIN profiles_identifier i ON "
                                "i.profile_id = m.profile_id WHERE m.segment_id = %s AND m.exited_at IS NULL AND "
                                "i.type = 'user_id' AND i.value = %s", [segment.pk, f"{tag}-u{person}"])
                    if cur.fetchone():
                        break
                    if time.perf_counter() - sent > 60:
                        raise RuntimeError(f"no membership 60 s after event {k}; see {logs.name}")
                    time.sleep(0.01)
            latencies.append(time.perf_counter() - sent)
    finally:
        for proc in (server, worker):
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    log(f"  realtime latency over {samples} events: p50 {statistics.median(latencies):.3f} s")
    return latencies


def _cleanup(tag: str, source: Source, built: dict, profiles: int, events: int) -> None:
    with transaction.atomic(), connection.cursor() as cur:
        # The database's foreign keys do not cascade: the segments' rows go first, set-based.
        cur.execute("SELECT coalesce(array_agg(id), '{}') FROM segments_segment WHERE key LIKE %s", [f"{tag}-%"])
        segments = cur.fetchone()[0]
        cur.execute("DELETE FROM segments_deliveryattempt a USING segments_delivery d WHERE a.delivery_id = d.id "
                    "AND d.segment_id = ANY(%s)", [segments])
        for table in ("segments_delivery", "segments_segmentsize", "segments_segmentmembership",
                      "segments_staticmember", "segments_segment_destinations"):
            cur.execute(f"DELETE FROM {table} WHERE segment_id = ANY(%s)", [segments])
        cur.execute("DELETE FROM segments_segment WHERE id = ANY(%s)", [segments])
        last_profile = built["first_profile"] + profiles - 1
        cur.execute("DELETE FROM profiles_event WHERE source_id = %s", [source.pk])
        for table in ("profiles_messagekey", "profiles_pendingevent"):
            cur.execute(f"DELETE FROM {table} WHERE source_id = %s", [source.pk])
        range_ = [built["first_profile"], last_profile]
        cur.execute("DELETE FROM segments_segmentmembership WHERE profile_id BETWEEN %s AND %s", range_)
        for table in ("profiles_identifier", "profiles_traitchange"):
            cur.execute(f"DELETE FROM {table} WHERE profile_id BETWEEN %s AND %s", range_)
        cur.execute("DELETE FROM profiles_mergerecord WHERE into_profile_id BETWEEN %s AND %s "
                    "OR other_profile_id BETWEEN %s AND %s", range_ * 2)
        cur.execute("DELETE FROM consent_consententry WHERE profile_id BETWEEN %s AND %s", range_)
        cur.execute("DELETE FROM consent_consentstate WHERE profile_id BETWEEN %s AND %s", range_)
        cur.execute("UPDATE profiles_profile SET merged_into_id = NULL WHERE id BETWEEN %s AND %s", range_)
        cur.execute("DELETE FROM profiles_profile WHERE id BETWEEN %s AND %s", range_)
        source.delete()


def bench_segments(*, profiles: int, events: int, samples: int, keep: bool, log: Callable) -> dict:
    if not settings.REDIS_URL:
        raise RuntimeError("bench segments needs REDIS_URL: realtime latency is measured with a real worker.")
    tag = "bs" + datetime.now(timezone.utc).strftime("%m%d%H%M%S") + secrets.token_hex(2)
    source = Source.objects.create(name=f"bench-{tag}")
    now = datetime.now(timezone.utc)
    log(f"bench segments {tag}: building {profiles:,} profiles and {events:,} events")
    built = _build(tag, source, profiles, events, now, log)
    try:
        result: dict = {"profiles": profiles, "events": events, "build_seconds": built["build_seconds"]}
        log("recompute:")
        behaviour = _recompute(tag, "behaviour", BEHAVIOUR, BEHAVIOUR_SQL, now, log)
        trait = _recompute(tag, "trait", TRAIT, TRAIT_SQL, now, log)
        result.update(behaviour=behaviour, trait=trait, recompute_s=behaviour["recompute_s"],
                      first_recompute_s=behaviour["first_recompute_s"],
                      handwritten_sql_s=behaviour["handwritten_sql_s"], query_s=behaviour["query_s"])
        abandoned = {"all": [
            {"event": "Product Added", "within": "7d", "not_followed_by": {"event": "Order Completed",
                                                                           "within": "2h"}},
            {"trait": "plan", "op": "in", "value": ["pro", "enterprise"]}]}
        preview_s, preview = _best_of(3, lambda: segment_preview(definition=abandoned))
        exact_s, exact = _best_of(1, lambda: _count(*_compiled_sql(abandoned, datetime.now(timezone.utc))))
        result.update(preview_s=round(preview_s, 3), preview_count=preview.count, preview_estimated=preview.estimated,
                      preview_margin=preview.margin, preview_exact_count=exact, exact_count_s=round(exact_s, 3))
        shown = f"≈ {preview.count:,} ± {preview.margin:,}" if preview.estimated else f"{preview.count:,}"
        log(f"preview of an unsaved cart-abandonment definition: {shown} profiles in {preview_s:.2f} s "
            f"(exact count {exact:,} in {exact_s:.2f} s)")

        log("pipeline rate (stream of 50,000 events of known people), without and with 20 realtime segments:")
        stream = 50_000
        without = [_process_rate(source, _stream(tag, profiles, stream, 0))]
        started = time.perf_counter()
        for n, definition in enumerate(REALTIME):
            created = segment_create(key=f"{tag}-rt{n}", name=f"Bench realtime {n}", mode=Segment.Mode.REALTIME,
                                     definition=definition)
            # Computed first, as the queued task would: the stream then measures keeping them current, not
            # every member entering at once.
            segment_recompute(segment_id=created.pk, now=datetime.now(timezone.utc))
        result["realtime_first_recompute_s"] = round(time.perf_counter() - started, 2)
        log(f"  20 realtime segments computed in {result['realtime_first_recompute_s']} s")
        with_segments = [_process_rate(source, _stream(tag, profiles, stream, 1))]
        Segment.objects.filter(key__startswith=f"{tag}-rt").update(mode=Segment.Mode.BATCH)
        without.append(_process_rate(source, _stream(tag, profiles, stream, 2)))
        Segment.objects.filter(key__startswith=f"{tag}-rt").update(mode=Segment.Mode.REALTIME)
        with_segments.append(_process_rate(source, _stream(tag, profiles, stream, 3)))
        rate, rate_with = statistics.mean(without), statistics.mean(with_segments)
        result.update(process_events_per_s=round(rate, 1), process_with_segments_events_per_s=round(rate_with, 1),
                      process_ratio=round(rate_with / rate, 3), process_runs_without=[round(r) for r in without],
                      process_runs_with=[round(r) for r in with_segments])
        log(f"  without {rate:,.0f} events/s, with 20 realtime segments {rate_with:,.0f} events/s "
            f"({rate_with / rate:.0%}); runs alternated {without} / {with_segments}")

        log("realtime latency (HTTP -> membership):")
        latency_segment = segment_create(key=f"{tag}-latency", name="Bench latency", mode=Segment.Mode.REALTIME,
                                         definition={"event": "Bench Latency", "within": "1h"})
        latencies = sorted(_latency(tag, source, latency_segment, profiles, samples, log))
        result.update(realtime_p50_s=round(statistics.median(latencies), 3),
                      realtime_p95_s=round(latencies[max(0, int(round(0.95 * len(latencies))) - 1)], 3),
                      realtime_samples=len(latencies))
        return result
    finally:
        if not keep:
            log("cleaning up")
            _cleanup(tag, source, built, profiles, events)
