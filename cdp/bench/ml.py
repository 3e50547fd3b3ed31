"""`bench ml`: what segments learn from profiles, at scale, on data made with set-based SQL.

The data: `profiles` people in the US (personalisation allowed by default), `items` products in 200 categories of
a few departments, and `interactions` e-commerce events over the last 120 days (70% Product Viewed, 20% Product
Added, 10% Order Completed with a products list and revenue). Tastes are planted: each person draws half their
events from one favourite category and 30% from a second, the rest anywhere; within a category a few items are
much more popular than the others; a few people are much more active than most.

Measured, each in this process (peak RSS covers them all):
  enrich_s   - computed traits and RFM for every profile (the clustering's features);
  cluster_s  - a clustering on four computed traits, k from 2 to 8, clusters saved as static segments;
  train_s    - a purchase-propensity model: features at two cutoffs, fitting, judging on the later holdout;
  score_s    - features as of now, scoring and writing the scores as a computed trait;
  recs_train_s - reading interactions, item neighbours, every person's top list, writing them; recs_evaluate_s
               the offline evaluation (with the `implicit` library's ALS as the outside reference);
  recs_p99_ms - GET /api/v1/profiles/{id}/recommendations/?k=10 on a real gunicorn, one request at a time.
"""
from __future__ import annotations

import http.client
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone

import numpy as np
import orjson
from django.conf import settings
from django.db import connection, transaction

from cdp.bench.cleanup import bench_cleanup
from cdp.bench.segments import reserve_ids
from cdp.bench.server import ServerError, free_port, stop, wait_ready
from profiles.models import Profile, Source
from profiles.services.tokens import api_token_create
from profiles.services.enrichment import profiles_enrich
from segments import recommender
from segments.models import ClusteringRun, Item, PredictiveModel, RecommenderRun, Segment
from segments.services.clustering import clustering_queue, clustering_run
from segments.services.prediction import model_create, model_delete, model_train
from segments.services.recommendations import recommendations_refresh

CATEGORIES = 200
DEPARTMENTS = ["Shoes", "Clothing", "Bags", "Home", "Outdoor", "Beauty", "Toys", "Books"]
BRANDS = 150
DAYS = 120
INSERT_CHUNK = 500_000
READS = 2_000


def _build(tag: str, source: Source, profiles: int, items: int, interactions: int, now: datetime,
           log: Callable) -> int:
    per_category = max(1, items // CATEGORIES)
    with connection.cursor() as cur:
        first_profile = reserve_ids(cur, "profiles_profile", profiles)
        first_event = reserve_ids(cur, "profiles_pendingevent", interactions)
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "INSERT INTO profiles_profile (id, created_at, updated_at, traits, trait_times, computed, event_count, "
            "event_counts, first_seen, last_seen, regime) SELECT %(first)s + g, %(now)s, %(now)s, "
            "'{\"country\": \"US\"}', '{}', '{}', 0, '{}', %(now)s - interval '120 days', %(now)s, 'ccpa' "
            "FROM generate_series(0, %(n)s - 1) g", {"first": first_profile, "now": now, "n": profiles})
        cur.execute(
            "INSERT INTO profiles_identifier (type, value, profile_id, first_seen) "
            "SELECT 'user_id', %(tag)s || '-u' || g, %(first)s + g, %(now)s FROM generate_series(0, %(n)s - 1) g",
            {"tag": tag, "first": first_profile, "now": now, "n": profiles})
        cur.execute(
            f"INSERT INTO {Item._meta.db_table} (item_id, name, category, brand, price, url, image_url, active, "
            "origin, updated_at) SELECT %(tag)s || '-i' || g, "
            "'Product ' || g || ' ' || (ARRAY['classic', 'sport', 'premium', 'light', 'eco'])[1 + g %% 5], "
            "(%(departments)s::text[])[1 + (g / %(per)s) %% %(d)s] || ' > Category ' || (g / %(per)s), "
            "'Brand ' || (g * 7) %% %(brands)s, 5 + (g * 37) %% 200, '', '', true, 'api', %(now)s "
            "FROM generate_series(0, %(items)s - 1) g",
            {"tag": tag, "departments": DEPARTMENTS, "per": per_category, "d": len(DEPARTMENTS),
             "brands": BRANDS, "now": now, "items": per_category * CATEGORIES})
    log(f"  {profiles:,} profiles and {per_category * CATEGORIES:,} items in {time.perf_counter() - started:.1f} s")
    with connection.cursor() as cur:
        cur.execute("SELECT setseed(0.42)")
    for start in range(0, interactions, INSERT_CHUNK):
        size = min(INSERT_CHUNK, interactions - start)
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(
                """INSERT INTO profiles_event (id, source_id, message_id, type, event, user_id, anonymous_id,
                       "timestamp", received_at, payload, profile_id, processed_at, error)
                SELECT %(first)s + k, %(source)s, %(tag)s || '-' || k, 'track', name, '', '', ts, %(now)s,
                       jsonb_build_object('type', 'track', 'event', name, 'properties',
                           CASE WHEN name = 'Order Completed' THEN jsonb_build_object(
                               'revenue', 5 + (item * 37) %% 200,
                               'products', jsonb_build_array(jsonb_build_object('product_id', %(tag)s || '-i' || item)))
                           ELSE jsonb_build_object('product_id', %(tag)s || '-i' || item) END),
                       %(first_profile)s + person, %(now)s, ''
                FROM (
                    SELECT k, person, ts,
                           CASE WHEN r_event < 0.7 THEN 'Product Viewed' WHEN r_event < 0.9 THEN 'Product Added'
                                ELSE 'Order Completed' END AS name,
                           (CASE WHEN r_taste < 0.5 THEN (person * 7919) %% %(categories)s
                                 WHEN r_taste < 0.8 THEN (person * 104729 + 17) %% %(categories)s
                                 ELSE floor(r_any * %(categories)s)::bigint END) * %(per)s
                           + floor(%(per)s * power(r_item, 2))::bigint AS item
                    FROM (
                        SELECT k, floor(%(profiles)s * power(random(), 1.6))::bigint AS person,
                               %(now)s - make_interval(secs => random() * %(days)s * 86400) AS ts,
                               random() AS r_event, random() AS r_taste, random() AS r_any, random() AS r_item
                        FROM generate_series(%(start)s::bigint, %(end)s::bigint) k) drawn) chosen""",
                {"first": first_event, "source": source.pk, "tag": tag, "now": now, "first_profile": first_profile,
                 "profiles": profiles, "categories": CATEGORIES, "per": per_category, "days": DAYS,
                 "start": start, "end": start + size - 1})
        log(f"  {start + size:,} events, {time.perf_counter() - started:.0f} s")
    with connection.cursor() as cur:
        cur.execute("ANALYZE profiles_profile, profiles_identifier, profiles_event, segments_item")
    return first_profile


def reference_als(train, rows: np.ndarray) -> np.ndarray:
    """The outside reference: the `implicit` library's ALS on the same confidence-scaled matrix, its usual
    settings (64 factors, 15 iterations, confidence 1 + 40 x weight as in Hu, Koren and Volinsky)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    confidence = recommender.confidence(train).tocsr()
    confidence.data *= 40
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=64, iterations=15, regularization=0.05, random_state=0)
        model.fit(confidence, show_progress=False)
        ids, _ = model.recommend(rows, confidence[rows], N=10, filter_already_liked_items=True)
    return ids


def _reads(token: str, people: list[int], log: Callable) -> dict:
    port = free_port()
    with tempfile.NamedTemporaryFile("w+", prefix="bench-gunicorn-", suffix=".log", delete=False) as glog:
        log_path = glog.name
    with open(log_path, "w") as glog:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "cdp.wsgi", "-w", "2", "-b", f"127.0.0.1:{port}",
             "--log-level", "warning"], cwd=str(settings.BASE_DIR), env=dict(os.environ), stdout=glog,
            stderr=subprocess.STDOUT)
    try:
        wait_ready(server, port, log_path)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Authorization": f"Bearer {token}"}
        rng = random.Random(5)
        latencies, bases = [], {}
        for n in range(READS + 200):
            person = rng.choice(people)
            started = time.perf_counter()
            conn.request("GET", f"/api/v1/profiles/{person}/recommendations/?k=10", headers=headers)
            response = conn.getresponse()
            body = response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != 200:
                raise RuntimeError(f"recommendations read answered {response.status}: {body[:300]!r}")
            if n >= 200:  # the first requests warm both workers' connections
                latencies.append(elapsed)
                basis = orjson.loads(body)["basis"]
                bases[basis] = bases.get(basis, 0) + 1
        conn.close()
    except ServerError as exc:
        raise RuntimeError(str(exc)) from exc
    finally:
        stop(server)
        os.unlink(log_path)
    latencies.sort()
    log(f"  {READS:,} reads: p50 {statistics.median(latencies):.2f} ms, "
        f"p99 {latencies[int(0.99 * len(latencies)) - 1]:.2f} ms ({bases})")
    return {"recs_p50_ms": round(statistics.median(latencies), 2),
            "recs_p99_ms": round(latencies[int(0.99 * len(latencies)) - 1], 2), "recs_read_basis": bases}


def bench_ml(*, profiles: int, items: int, interactions: int, keep: bool, log: Callable) -> dict:
    tag = "bm" + datetime.now(timezone.utc).strftime("%m%d%H%M%S")
    now = datetime.now(timezone.utc)
    others = Profile.objects.filter(merged_into__isnull=True).count()
    log(f"bench ml {tag}: {profiles:,} profiles, {items:,} items, {interactions:,} interactions")
    if others:
        log(f"  note: learning runs over every profile; the {others:,} already in this database are included")
    source = Source.objects.create(name=f"bench-{tag}")
    result: dict = {"profiles": profiles, "items": items, "interactions": interactions}
    cluster_run = model = None
    runs: list[int] = []
    try:
        first = _build(tag, source, profiles, items, interactions, now, log)

        started = time.perf_counter()
        profiles_enrich()
        result["enrich_s"] = round(time.perf_counter() - started, 2)
        log(f"  computed traits and RFM: {result['enrich_s']} s")

        started = time.perf_counter()
        cluster_run = clustering_queue(features=["recency_days", "frequency_orders", "monetary_value",
                                                 "engagement_score"], k_min=2, k_max=8)
        cluster_run = clustering_run(run_id=cluster_run.pk)
        result["cluster_s"] = round(time.perf_counter() - started, 2)
        result.update(cluster_k=cluster_run.k, silhouettes=cluster_run.silhouettes)
        log(f"  clustering: k = {cluster_run.k} in {result['cluster_s']} s ({cluster_run.silhouettes})")

        model = model_create(key=f"{tag}_propensity", target_event="Order Completed", horizon_days=30)
        version = model_train(model_id=model.pk)
        timings = version.timings
        result.update(train_s=round(timings["features_s"] + timings["fit_s"], 2),
                      score_s=round(timings["score_s"] + timings["write_s"], 2), model_timings=timings,
                      auc=version.auc, baseline_auc=version.baseline_auc, brier=version.brier,
                      base_rate=version.base_rate, algorithm=version.algorithm)
        log(f"  purchase propensity ({version.algorithm}): AUC {version.auc} vs recency alone "
            f"{version.baseline_auc}, Brier {version.brier}; train {result['train_s']} s, score {result['score_s']} s")

        run = recommendations_refresh(extra_methods={"reference_als": reference_als})
        runs.append(run.pk)
        timings = run.timings
        result.update(recs_train_s=round(timings["read_s"] + timings["train_s"] + timings["write_s"], 2),
                      recs_evaluate_s=timings["evaluate_s"], recs_timings=timings, evaluation=run.evaluation,
                      evaluated_people=run.evaluated_people,
                      hit_rate_at_10=run.evaluation["hybrid"]["hit_rate_at_10"],
                      popularity_hit_rate_at_10=run.evaluation["popularity"]["hit_rate_at_10"],
                      reference_als_hit_rate_at_10=run.evaluation["reference_als"]["hit_rate_at_10"])
        log(f"  recommendations: trained and written in {result['recs_train_s']} s, evaluated in "
            f"{timings['evaluate_s']} s on {run.evaluated_people:,} people")
        for method, metrics in run.evaluation.items():
            log(f"    {method:15} hit rate@10 {metrics['hit_rate_at_10']:.4f}  NDCG@10 {metrics['ndcg_at_10']:.4f}")

        token, key = api_token_create(name=f"{tag}-reader", role="marketer")
        try:
            result.update(_reads(key, list(range(first, first + profiles)), log))
        finally:
            token.user.delete()
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        log(f"  peak RSS {result['peak_rss_mb']} MB")
        return result
    finally:
        if not keep:
            log("cleaning up")
            _cleanup(tag, source, cluster_run, model, runs)


def _cleanup(tag: str, source: Source, cluster_run: ClusteringRun | None, model: PredictiveModel | None,
             runs: list[int]) -> None:
    if model is not None:
        model_delete(model=model)
    if cluster_run is not None:
        Segment.objects.filter(key__startswith=f"cluster-{cluster_run.pk}-").delete()
        cluster_run.delete()
    bench_cleanup(source)
    Item.objects.filter(item_id__startswith=f"{tag}-").delete()
    RecommenderRun.objects.filter(pk__in=runs).delete()
