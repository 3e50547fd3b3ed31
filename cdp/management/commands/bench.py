"""`manage.py bench ingest --events N [--json] [--workers W] [--keep]`: end-to-end throughput on PostgreSQL.
(`bench privacy`, `bench segments`, `bench decide` and `bench ml` are described in their modules under cdp/bench/.)

One run measures, on fresh events of a dedicated source "bench-<timestamp>":
  accept  - events/s through POST /v1/batch (batches of 100) on a real gunicorn, loaded by a separate client process;
  process - events/s of a separate worker process draining the pipeline (pipeline_drain until nothing is pending),
            and that worker's peak RSS;
  copy    - the physical limit: the same events written with one COPY into a bare table without indexes;
and each rate as a ratio of that limit. `bench _process` is the worker (internal).
"""
from __future__ import annotations

import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

import orjson
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from cdp.bench.cleanup import bench_cleanup
from cdp.bench.copy_limit import copy_limit, copy_rows
from cdp.bench.decide import bench_decide
from cdp.bench.messages import BATCH_SIZE, bench_messages
from cdp.bench.ml import bench_ml
from cdp.bench.privacy import bench_privacy
from cdp.bench.segments import bench_segments
from cdp.bench.server import ServerError, free_port, last_json, stop, wait_ready
from cdp.pipeline import pipeline_drain
from cdp.startup import loaded_objects_freeze
from profiles.models import Event, PendingEvent, Source


def _last_json(output: str) -> dict:
    try:
        return last_json(output)
    except ServerError as exc:
        raise CommandError(str(exc)) from exc


class Command(BaseCommand):
    help = ("Benchmarks on PostgreSQL: ingestion (HTTP accept, pipeline processing, the COPY limit), privacy, "
            "segments, and the decision API.")

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["ingest", "privacy", "segments", "decide", "ml", "_process"],
                            help="ingest, privacy, segments, decide or ml (_process is internal)")
        parser.add_argument("--events", type=int, default=None,
                            help="events in the run (ingest: 100,000) or in the database (privacy: 1,000,000; "
                                 "segments: 1,000,000)")
        parser.add_argument("--subject-events", type=int, default=100_000, help="privacy: the erased subject's events")
        parser.add_argument("--profiles", type=int, default=None,
                            help="privacy: other people in the database (10,000); segments and decide: people "
                                 "(100,000)")
        parser.add_argument("--items", type=int, default=10_000, help="ml: catalog items")
        parser.add_argument("--interactions", type=int, default=2_000_000, help="ml: interaction events")
        parser.add_argument("--samples", type=int, default=40, help="segments: events timed for realtime latency")
        parser.add_argument("--requests", type=int, default=20_000,
                            help="decide: requests of each flat-out run (the paced run: at most 6,000)")
        parser.add_argument("--json", action="store_true", help="also print one JSON object on the last line")
        parser.add_argument("--workers", type=int, default=None,
                            help="gunicorn workers (default 2 on 2 CPUs or fewer, else 3)")
        parser.add_argument("--connections", type=int, default=None,
                            help="concurrent client connections (default 2 x workers)")
        parser.add_argument("--keep", action="store_true", help="keep the bench source, its events and profiles")
        parser.add_argument("--allow-pending", action="store_true",
                            help="run although other pending events exist (the worker processes them too)")
        parser.add_argument("--batch-size", type=int, default=None, help="pipeline batch size (default setting)")

    def handle(self, *args, action, **options):
        if action == "_process":
            return self._process(options["batch_size"])
        if action == "privacy":
            return self._privacy(**{**options, "profiles": options["profiles"] or 10_000})
        if action == "segments":
            return self._segments(**options)
        if action == "decide":
            return self._decide(**options)
        if action == "ml":
            return self._ml(**options)
        return self._ingest(**{**options, "events": options["events"] or 100_000})

    def _privacy(self, *, events, subject_events, profiles, json, keep, **_):
        events = events or 1_000_000
        if subject_events >= events:
            raise CommandError("--subject-events must be fewer than --events.")
        tag = "bp" + datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S") + secrets.token_hex(2)
        source = Source.objects.create(name=f"bench-{tag}")
        try:
            result = bench_privacy(events=events, subject_events=subject_events, others=profiles, tag=tag,
                                   source=source, log=self.stderr.write)
        finally:
            if not keep:
                bench_cleanup(source)
        w = self.stdout.write
        w(f"bench privacy: erased a subject with {result['subject_events']:,} events from "
          f"{result['database_events']:,} in {result['erase_s']:.2f} s ({result['erase_steps']} steps)")
        w("rows erased: " + ", ".join(f"{k} {v:,}" for k, v in result["erased"].items())
          + f" = {result['rows_erased']:,}")
        w(f"ingestion of other profiles meanwhile: {result['ingest_batches_during_erase']} batches of 200, "
          f"mean {result['ingest_batch_mean_s'] * 1000:.0f} ms, slowest {result['ingest_batch_max_s'] * 1000:.0f} ms")
        w(f"consent state reads: {result['consent_reads_per_s']:,.0f} profiles/s")
        w(f"consent filter: {result['consent_filter_profiles_per_s']:,.0f} profiles/s (a COUNT over "
          f"{result['consent_filter_profiles']:,} live profiles, {result['consent_filter_allowed']:,} allow "
          "marketing_email)")
        if json:
            result.pop("other_ids")
            w(orjson.dumps(result).decode())

    def _decide(self, *, profiles, requests, workers, connections, json, keep, **_):
        try:
            result = bench_decide(profiles=profiles or 100_000, requests=requests, workers=workers,
                                  connections=connections, keep=keep, log=self.stderr.write)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        w = self.stdout.write
        w(f"bench decide: {result['profiles']:,} profiles, {result['campaigns']} active campaigns on "
          f"{result['placements']} placements, gunicorn -w {result['workers']}, {result['connections']} connections")
        p50, p95, p99 = result["decide_loaded_latency_ms"]
        w(f"flat out   /v1/decide {result['decide_rps']:,.0f} requests/s (p50 {p50} ms, p95 {p95} ms, "
          f"p99 {p99} ms), bare view {result['bare_rps']:,.0f} requests/s: x{result['ratio_to_bare']}")
        w(f"CPU        {result['decide_cpu_us']:,} us per decision, {result['bare_cpu_us']:,} us per bare request "
          f"(the whole machine): x{result['cpu_ratio']}; {result['steal_share']:.0%} of the time stolen")
        w(f"200 rps    p50 {result['decide_p50_ms']} ms, p95 {result['decide_p95_ms']} ms, "
          f"p99 {result['decide_p99_ms']} ms ({result['paced_rps']} requests/s held)")
        w("reasons    " + ", ".join(f"{k} {v:,}" for k, v in sorted(result["reasons"].items())))
        w(f"exposures  {result['exposures_queued']:,} queued during the runs, {result['exposures_recorded']:,} "
          "recorded afterwards")
        if json:
            w(orjson.dumps(result).decode())

    def _ml(self, *, profiles, items, interactions, json, keep, **_):
        try:
            result = bench_ml(profiles=profiles or 100_000, items=items, interactions=interactions, keep=keep,
                              log=self.stderr.write)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        w = self.stdout.write
        w(f"bench ml: {result['profiles']:,} profiles, {result['items']:,} items, {result['interactions']:,} "
          f"interactions; peak RSS {result['peak_rss_mb']:,} MB")
        w(f"clustering      {result['cluster_s']} s (k = {result['cluster_k']}; computed traits first: "
          f"{result['enrich_s']} s)")
        w(f"propensity      train {result['train_s']} s, score {result['score_s']} s; AUC {result['auc']} "
          f"(recency alone {result['baseline_auc']})")
        w(f"recommendations train {result['recs_train_s']} s (evaluation {result['recs_evaluate_s']} s); read p99 "
          f"{result['recs_p99_ms']} ms (p50 {result['recs_p50_ms']} ms)")
        for method, metrics in result["evaluation"].items():
            w(f"  {method:15} hit rate@10 {metrics['hit_rate_at_10']:.4f}  NDCG@10 {metrics['ndcg_at_10']:.4f}")
        if json:
            w(orjson.dumps(result).decode())

    def _segments(self, *, events, profiles, samples, json, keep, **_):
        result = bench_segments(profiles=profiles or 100_000, events=events or 1_000_000, samples=samples, keep=keep,
                                log=self.stderr.write)
        w = self.stdout.write
        w(f"bench segments: {result['profiles']:,} profiles, {result['events']:,} events (built in "
          f"{result['build_seconds']} s)")
        for name in ("behaviour", "trait"):
            r = result[name]
            w(f"{name:<10} {r['members']:>9,} members  query {r['query_s']:.2f} s, hand-written SQL "
              f"{r['handwritten_sql_s']:.2f} s (x{r['ratio']}), first recompute {r['first_recompute_s']:.2f} s, "
              f"recompute {r['recompute_s']:.2f} s")
        count = (f"≈ {result['preview_count']:,} ± {result['preview_margin']:,} estimated"
                 if result["preview_estimated"] else f"{result['preview_count']:,}")
        w(f"preview    {result['preview_s']:.2f} s ({count} profiles; exact {result['preview_exact_count']:,} "
          f"in {result['exact_count_s']:.2f} s)")
        w(f"pipeline   {result['process_events_per_s']:,.0f} events/s without realtime segments, "
          f"{result['process_with_segments_events_per_s']:,.0f} with 20 ({result['process_ratio']:.0%})")
        w(f"realtime   p50 {result['realtime_p50_s']:.3f} s, p95 {result['realtime_p95_s']:.3f} s "
          f"({result['realtime_samples']} events, HTTP to membership, one worker)")
        if json:
            w(orjson.dumps(result).decode())

    # The worker process: drain, then report its own loop time and peak RSS.
    def _process(self, batch_size):
        # As each process of the product's Celery worker does when it starts.
        loaded_objects_freeze()
        started = time.perf_counter()
        total = pipeline_drain(batch_size=batch_size)
        batches = -(-total // (batch_size or settings.PIPELINE_BATCH_SIZE))
        elapsed = time.perf_counter() - started
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        self.stdout.write(orjson.dumps({"processed": total, "batches": batches, "elapsed": elapsed,
                                        "peak_rss_mb": peak_kb / 1024}).decode())

    def _ingest(self, *, events, json, workers, connections, keep, allow_pending, batch_size, **_):
        if not settings.REDIS_URL:
            raise CommandError("bench ingest needs REDIS_URL: without it Celery runs eagerly and the collection API "
                               "would process every batch inline, which is not what accept measures.")
        if events < BATCH_SIZE:
            raise CommandError(f"--events must be at least {BATCH_SIZE}.")
        workers = workers or (2 if (os.cpu_count() or 1) <= 2 else 3)
        connections = connections or 2 * workers
        pending = PendingEvent.objects.count()
        if pending and not allow_pending:
            raise CommandError(f"{pending} events are already pending; the pipeline would process them with the "
                               "bench's. Drain them first (manage.py process_events) or pass --allow-pending.")

        with connection.cursor() as cur:
            cur.execute("SHOW autovacuum")
            autovacuum = cur.fetchone()[0]
        tag = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(2)
        source = Source.objects.create(name=f"bench-{tag}")
        log = self.stderr.write
        log(f"bench source {source.name} (id {source.pk}), {events} events, gunicorn -w {workers}, "
            f"{connections} client connections")
        env = dict(os.environ)
        base = str(settings.BASE_DIR)

        # 1. Accept: gunicorn in its own process, the client in another.
        port = free_port()
        with tempfile.NamedTemporaryFile("w+", prefix="bench-gunicorn-", suffix=".log", delete=False) as glog:
            log_path = glog.name
        with open(log_path, "w") as glog:
            server = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "cdp.wsgi", "-w", str(workers), "-b", f"127.0.0.1:{port}",
                 "--log-level", "warning", "--timeout", "120"],
                cwd=base, env=env, stdout=glog, stderr=subprocess.STDOUT,
            )
        try:
            try:
                wait_ready(server, port, log_path)
            except ServerError as exc:
                raise CommandError(str(exc)) from exc
            client = subprocess.run(
                [sys.executable, "-m", "cdp.bench.client", str(port), source.write_key, tag, str(events),
                 str(connections)],
                cwd=base, env=env, capture_output=True, text=True, timeout=3600,
            )
        finally:
            stop(server)
        if client.returncode != 0:
            raise CommandError(f"the load client failed:\n{client.stderr[-3000:]}")
        accept = _last_json(client.stdout)
        stored = PendingEvent.objects.filter(source=source).count()
        if accept["errors"] or stored != events:
            raise CommandError(f"accept incomplete: {stored}/{events} stored, {accept['errors']} failed requests, "
                               f"first error {accept['first_error']}; gunicorn log {log_path}")
        os.unlink(log_path)
        accept_rate = events / accept["elapsed"]

        # 2. Process: a separate worker process drains the pipeline.
        cmd = [sys.executable, "manage.py", "bench", "_process"]
        if batch_size:
            cmd += ["--batch-size", str(batch_size)]
        started = time.perf_counter()
        worker = subprocess.run(cmd, cwd=base, env=env, capture_output=True, text=True, timeout=7200)
        worker_wall = time.perf_counter() - started
        if worker.returncode != 0:
            raise CommandError(f"the pipeline worker failed:\n{worker.stderr[-3000:]}")
        process = _last_json(worker.stdout)
        left = PendingEvent.objects.filter(source=source).count()
        if left or Event.objects.filter(source=source).count() != events:
            raise CommandError(f"{left} bench events are still pending after the worker finished.")
        process_rate = events / process["elapsed"]

        # 3. The limit: the same events, one COPY, a bare table.
        data = copy_rows(bench_messages(tag=tag, events=events), source.pk)
        limit = copy_limit(data=data, rows=events, table=f"bench_copy_{tag.replace('-', '_')}")

        result = {
            "events": events,
            "accept_events_per_s": round(accept_rate, 1),
            "process_events_per_s": round(process_rate, 1),
            "copy_limit_events_per_s": round(limit, 1),
            "worker_peak_rss_mb": round(process["peak_rss_mb"], 1),
            "accept_ratio": round(accept_rate / limit, 4),
            "process_ratio": round(process_rate / limit, 4),
            "accept_seconds": round(accept["elapsed"], 3),
            "process_seconds": round(process["elapsed"], 3),
            "process_worker_wall_seconds": round(worker_wall, 3),
            "process_batches": process["batches"],
            "processed_total": process["processed"],
            "gunicorn_workers": workers,
            "client_connections": connections,
            "source": source.name,
            "autovacuum": autovacuum,
        }
        w = self.stdout.write
        w(f"bench ingest: {events} events, source {source.name}, gunicorn -w {workers}, "
          f"{connections} connections, batches of {BATCH_SIZE}")
        w(f"{'stage':<10}{'events/s':>14}{'seconds':>10}{'of COPY limit':>16}")
        w(f"{'accept':<10}{accept_rate:>14,.0f}{accept['elapsed']:>10.2f}{accept_rate / limit:>16.2%}")
        w(f"{'process':<10}{process_rate:>14,.0f}{process['elapsed']:>10.2f}{process_rate / limit:>16.2%}")
        w(f"{'copy':<10}{limit:>14,.0f}{events / limit:>10.2f}{1:>16.2%}")
        w(f"worker peak RSS {process['peak_rss_mb']:.1f} MB; worker wall time with startup {worker_wall:.2f} s; "
          f"{process['processed']} events processed in {process['batches']} batches")
        if autovacuum != "on":
            w("warning: autovacuum is off on this server: dead rows of earlier runs stay in the queue table and "
              "planner statistics stay stale, which slows the pipeline's claim query")
        if process["processed"] != events:
            w(f"note: the worker processed {process['processed']} events, other pending events included")

        # 4. Clean up (set-based), unless asked to keep.
        if keep:
            w(f"kept: source {source.name} (id {source.pk}), its events in profiles_event (source_id={source.pk}) "
              "and the profiles they created")
        else:
            removed = bench_cleanup(source)
            w(f"cleaned up: {removed['events']} events, {removed['profiles']} profiles and source {source.name}")
        if json:
            w(orjson.dumps(result).decode())
