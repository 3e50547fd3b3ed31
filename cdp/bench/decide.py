"""`bench decide`: the decision API under load from a separate client process, against a real gunicorn server,
beside a bare view of the same server (/healthz, fixed JSON), and at a fixed 200 requests per second.

The data: `profiles` people (user ids; nine in ten in the US, where personalisation is opt-out, the rest in
Germany, where it is opt-in and a third of them granted it), ten batch segments over their traits, computed, and
50 active campaigns on 5 placements (10 each, priorities spread), each targeting a segment and, for some, the
page; some with caps, some with a control share. Nine requests in ten are for known people, one for a first visit.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone

from django.conf import settings
from django.db import connection, models, transaction

from campaigns.models import Campaign, Placement
from campaigns.selectors import snapshot_invalidate
from campaigns.services import definitions as campaign_definitions
from campaigns.services.exposures import QUEUE, exposures_record_queued, redis
from cdp.bench.cleanup import profile_relations
from cdp.bench.server import ServerError, free_port, last_json, stop, wait_ready
from cdp.bench.decide_client import PLACEMENTS
from consent.services.ledger import ConsentChoice, consent_record
from profiles.models import Source
from segments.models import Segment
from segments.services.definitions import segment_create
from segments.services.membership import segment_recompute

PLANS = ["free", "pro", "enterprise"]
SEGMENTS = [
    ("pro", {"trait": "plan", "op": "eq", "value": "pro"}),
    ("enterprise", {"trait": "plan", "op": "eq", "value": "enterprise"}),
    ("paying", {"trait": "plan", "op": "in", "value": ["pro", "enterprise"]}),
    ("high-ltv", {"trait": "ltv", "op": "gt", "value": 700}),
    ("low-ltv", {"trait": "ltv", "op": "lt", "value": 200}),
    ("recent", {"trait": "signup", "op": "newer_than", "value": "26w"}),
    ("germany", {"trait": "country", "op": "eq", "value": "DE"}),
    ("free-high", {"all": [{"trait": "plan", "op": "eq", "value": "free"},
                           {"trait": "ltv", "op": "gt", "value": 500}]}),
    ("everyone-paying-or-recent", {"any": [{"segment": "paying"}, {"segment": "recent"}]}),
    ("mid-ltv", {"trait": "ltv", "op": "between", "value": [200, 700]}),
]


def _build(tag: str, profiles: int, now: datetime, log: Callable) -> tuple[int, list[int]]:
    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("SELECT pg_get_serial_sequence('profiles_profile', 'id')")
        sequence = cur.fetchone()[0]
        cur.execute("SELECT nextval(%s)", [sequence])
        first = cur.fetchone()[0]
        cur.execute("SELECT setval(%s, %s)", [sequence, first + profiles])
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "INSERT INTO profiles_profile (id, created_at, updated_at, traits, trait_times, computed, event_count, "
            "event_counts, first_seen, last_seen, regime) SELECT %(first)s + g, %(now)s, %(now)s, jsonb_build_object("
            "'plan', (%(plans)s::text[])[1 + g %% 3], 'country', CASE WHEN g %% 10 = 0 THEN 'DE' ELSE 'US' END, "
            "'ltv', (g * 37) %% 1000, 'signup', to_char(%(now)s - make_interval(days => g %% 700), 'YYYY-MM-DD')), "
            "'{}', '{}', 0, '{}', %(now)s, %(now)s, CASE WHEN g %% 10 = 0 THEN 'gdpr' ELSE 'ccpa' END "
            "FROM generate_series(0, %(n)s - 1) g",
            {"first": first, "now": now, "plans": PLANS, "n": profiles})
        cur.execute(
            "INSERT INTO profiles_identifier (type, value, profile_id, first_seen) "
            "SELECT 'user_id', %(tag)s || '-u' || g, %(first)s + g, %(now)s FROM generate_series(0, %(n)s - 1) g",
            {"tag": tag, "first": first, "now": now, "n": profiles})
    # A third of the Germans opted in to personalisation, through the ledger as the API would record it.
    consent_record(choices=[ConsentChoice(profile_id=first + g, purpose="personalization", granted=True, source="api",
                                          recorded_at=now) for g in range(0, profiles, 30)])
    with connection.cursor() as cur:
        cur.execute("ANALYZE profiles_profile, profiles_identifier, consent_consentstate")
    log(f"  {profiles:,} profiles in {time.perf_counter() - started:.1f} s")
    segment_ids = []
    for key, definition in SEGMENTS:
        refs = {k: f"{tag}-{k}" for k, _ in SEGMENTS}
        segment = segment_create(key=f"{tag}-{key}", name=key, mode=Segment.Mode.BATCH,
                                 definition=_renamed(definition, refs))
        segment_recompute(segment_id=segment.pk)
        segment_ids.append(segment.pk)
    log(f"  {len(SEGMENTS)} segments computed, {time.perf_counter() - started:.1f} s")
    return first, segment_ids


def _renamed(definition, refs: dict[str, str]):
    if isinstance(definition, dict):
        return {k: (refs[v] if k == "segment" else _renamed(v, refs)) for k, v in definition.items()}
    if isinstance(definition, list):
        return [_renamed(v, refs) for v in definition]
    return definition


def _campaigns(tag: str) -> None:
    channels = {"email_weekly": "email", "push_daily": "push"}
    placements = {}
    for key in PLACEMENTS:
        placements[key] = campaign_definitions.placement_save(
            key=f"{tag}-{key}", name=key, channel=channels.get(key, "web"), default_content={"text": "default"})
    for n in range(50):
        placement = PLACEMENTS[n % 5]
        segment = SEGMENTS[n % len(SEGMENTS)][0]
        targeting = {"segment": f"{tag}-{segment}"}
        if n % 4 == 0:
            targeting = {"all": [targeting, {"context": "page.path", "op": "starts_with", "value": "/s"}]}
        campaign = campaign_definitions.campaign_save(
            key=f"{tag}-c{n}", name=f"Bench {n}", placements=[placements[placement]], targeting=targeting,
            priority=n % 7, caps=[{"count": 5, "per": "day"}] if n % 3 == 0 else [],
            control_share=0.1 if n % 2 else 0.0,
            # Bench people have no email consent: their email campaigns ask only for personalisation.
            purpose="personalization",
            variants=[{"key": "A", "weight": 50, "content": {"text": f"{n}A"}},
                      {"key": "B", "weight": 50, "content": {"text": f"{n}B"}}])
        campaign_definitions.campaign_transition(campaign=campaign, action="activate")


def _machine_ticks() -> tuple[int, int]:
    """The machine's busy and stolen CPU time so far, in clock ticks (Linux's /proc/stat; zeros elsewhere)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return user + nice + system + irq + softirq, steal


def _client(port: int, write_key: str, tag: str, profiles: int, mode: str, requests: int, connections: int,
            rate: float = 0.0) -> dict:
    """One run of the client; with the machine's CPU time per request over it (server, database, Redis and the
    client together: what a request costs whatever else the host's other tenants take) and the share of time the
    hypervisor stole."""
    cmd = [sys.executable, "-m", "cdp.bench.decide_client", str(port), write_key, tag, str(profiles), mode,
           str(requests), str(connections)] + ([str(rate)] if rate else [])
    busy_before, steal_before = _machine_ticks()
    run = subprocess.run(cmd, cwd=str(settings.BASE_DIR), capture_output=True, text=True, timeout=3600)
    busy_after, steal_after = _machine_ticks()
    if run.returncode != 0:
        raise RuntimeError(f"the decision client failed:\n{run.stderr[-3000:]}")
    result = last_json(run.stdout)
    if result["errors"]:
        raise RuntimeError(f"{result['errors']} failed requests in {mode}; first: {result['first_error']}")
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    result["cpu_us_per_request"] = round((busy_after - busy_before) * tick_us / requests)
    result["steal_share"] = round((steal_after - steal_before) * tick_us / 1e6 / result["elapsed"]
                                  / (os.cpu_count() or 1), 3)
    return result


def bench_decide(*, profiles: int, requests: int, workers: int | None, connections: int | None, keep: bool,
                 log: Callable) -> dict:
    if not settings.REDIS_URL:
        raise RuntimeError("bench decide needs REDIS_URL: exposures are queued in Redis, as in production.")
    workers = workers or (2 if (os.cpu_count() or 1) <= 2 else os.cpu_count())
    connections = connections or 2 * workers
    tag = "bd" + datetime.now(timezone.utc).strftime("%m%d%H%M%S")
    now = datetime.now(timezone.utc)
    log(f"bench decide {tag}: {profiles:,} profiles, 50 campaigns on 5 placements, gunicorn -w {workers}, "
        f"{connections} client connections")
    source = Source.objects.create(name=f"bench-{tag}")
    first, segment_ids = _build(tag, profiles, now, log)
    try:
        _campaigns(tag)
        port = free_port()
        with tempfile.NamedTemporaryFile("w+", prefix="bench-gunicorn-", suffix=".log", delete=False) as glog:
            log_path = glog.name
        with open(log_path, "w") as glog:
            server = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "cdp.wsgi", "-w", str(workers), "-b", f"127.0.0.1:{port}",
                 "--log-level", "warning", "--timeout", "120"],
                cwd=str(settings.BASE_DIR), env=dict(os.environ), stdout=glog, stderr=subprocess.STDOUT)
        try:
            wait_ready(server, port, log_path)
            # Warm every worker's snapshot and connections, as a server that has been up for a while.
            _client(port, source.write_key, tag, profiles, "decide", 200 * workers, connections)
            bare = _client(port, source.write_key, tag, profiles, "bare", requests, connections)
            loaded = _client(port, source.write_key, tag, profiles, "decide", requests, connections)
            paced = _client(port, source.write_key, tag, profiles, "paced", min(requests, 6000), 8, rate=200)
        except ServerError as exc:
            raise RuntimeError(str(exc)) from exc
        finally:
            stop(server)
        queued = redis().llen(QUEUE)
        recorded = 0
        while taken := exposures_record_queued():
            recorded += taken
        os.unlink(log_path)
        result = {
            "profiles": profiles, "campaigns": 50, "placements": 5, "workers": workers, "connections": connections,
            "bare_rps": round(requests / bare["elapsed"], 1),
            "decide_rps": round(requests / loaded["elapsed"], 1),
            "decide_loaded_latency_ms": loaded["latencies_ms"],
            "decide_p50_ms": paced["latencies_ms"][0], "decide_p95_ms": paced["latencies_ms"][1],
            "decide_p99_ms": paced["latencies_ms"][2], "paced_rps": round(paced["requests"] / paced["elapsed"], 1),
            "reasons": loaded["reasons"], "exposures_queued": queued, "exposures_recorded": recorded}
        result["ratio_to_bare"] = round(result["decide_rps"] / result["bare_rps"], 3)
        result.update(bare_cpu_us=bare["cpu_us_per_request"], decide_cpu_us=loaded["cpu_us_per_request"],
                      cpu_ratio=round(bare["cpu_us_per_request"] / max(1, loaded["cpu_us_per_request"]), 3),
                      steal_share=max(bare["steal_share"], loaded["steal_share"]))
        return result
    finally:
        if not keep:
            log("cleaning up")
            _cleanup(tag, source, first, profiles, segment_ids)


def _cleanup(tag: str, source: Source, first: int, profiles: int, segment_ids: list[int]) -> None:
    with transaction.atomic(), connection.cursor() as cur:
        campaigns = list(Campaign.objects.filter(key__startswith=f"{tag}-").values_list("id", flat=True))
        placements = list(Placement.objects.filter(key__startswith=f"{tag}-").values_list("id", flat=True))
        cur.execute("DELETE FROM campaigns_conversion c USING campaigns_exposure e WHERE c.exposure_id = e.id "
                    "AND e.placement_id = ANY(%s)", [placements])
        cur.execute("DELETE FROM campaigns_exposure WHERE placement_id = ANY(%s)", [placements])
        cur.execute("DELETE FROM campaigns_campaign_placements WHERE campaign_id = ANY(%s)", [campaigns])
        cur.execute("DELETE FROM campaigns_campaign_exclusive_with WHERE from_campaign_id = ANY(%s) "
                    "OR to_campaign_id = ANY(%s)", [campaigns, campaigns])
        cur.execute("DELETE FROM campaigns_campaign WHERE id = ANY(%s)", [campaigns])
        cur.execute("DELETE FROM campaigns_placement WHERE id = ANY(%s)", [placements])
        for table in ("segments_segmentsize", "segments_segmentmembership"):
            cur.execute(f"DELETE FROM {table} WHERE segment_id = ANY(%s)", [segment_ids])
        cur.execute("DELETE FROM segments_segment WHERE id = ANY(%s)", [segment_ids])
        range_ = [first, first + profiles - 1]
        # Every table that points at a profile, by its on_delete (the ledger keeps its entries, anonymised).
        for rel in profile_relations():
            table, column = rel.related_model._meta.db_table, rel.field.column
            if rel.on_delete is models.SET_NULL:
                cur.execute(f"UPDATE {table} SET {column} = NULL WHERE {column} BETWEEN %s AND %s", range_)
            else:
                cur.execute(f"DELETE FROM {table} WHERE {column} BETWEEN %s AND %s", range_)
        cur.execute("DELETE FROM profiles_profile WHERE id BETWEEN %s AND %s", range_)
        source.delete()
    snapshot_invalidate()
