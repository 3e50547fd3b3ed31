"""Clustering runs: features read with one set-based query, K-Means (segments.clustering), and each cluster
saved as a static segment of its members' identifiers, so rules and campaigns use it like any other."""
from __future__ import annotations

import logging
import time

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from profiles.common.queueing import enqueue_after_commit
from segments import clustering, rules
from segments.models import Cluster, ClusteringRun, Segment, StaticMember
from segments.services.membership import segment_recompute

logger = logging.getLogger(__name__)

RUN_TASK = "segments.learn_clustering"
EVENT_FEATURE = "events."
# Past this many features a run says nothing a person could read; K-Means also degrades in high dimensions.
MAX_FEATURES = 12
# The identifier a cluster's static list names a member by: the most stable one it holds.
_IDENTIFIER_ORDER = "CASE i.type WHEN 'user_id' THEN 0 WHEN 'anonymous_id' THEN 1 WHEN 'email' THEN 2 ELSE 3 END"


def _feature_sql(feature: str) -> tuple[str, list]:
    """A numeric SQL expression over profile p for one feature: a computed trait or `events.<name>`."""
    if feature.startswith(EVENT_FEATURE):
        return "coalesce((p.event_counts ->> %s)::float8, 0)", [feature[len(EVENT_FEATURE):]]
    return "CASE WHEN jsonb_typeof(p.computed -> %s) = 'number' THEN (p.computed ->> %s)::float8 END", [feature, feature]


def clustering_check(*, features: object, k_min: object, k_max: object) -> tuple[list[str], int, int]:
    """Raises rules.DefinitionError (message and field) for a bad request; returns the checked values."""
    if not isinstance(features, list) or not features or not all(isinstance(f, str) and f for f in features):
        raise rules.DefinitionError("features is a non-empty list of computed trait keys or \"events.<name>\"",
                                    "features")
    if len(features) > MAX_FEATURES:
        raise rules.DefinitionError(f"at most {MAX_FEATURES} features", "features")
    if len(set(features)) != len(features):
        raise rules.DefinitionError("a feature is named twice", "features")
    for name, value in (("k_min", k_min), ("k_max", k_max)):
        if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= 20:
            raise rules.DefinitionError(f"{name} is a whole number from 2 to 20", name)
    if k_min > k_max:
        raise rules.DefinitionError("k_min is at most k_max", "k_min")
    computed = [f for f in features if not f.startswith(EVENT_FEATURE)]
    if computed:
        with connection.cursor() as cursor:
            cursor.execute("SELECT k FROM unnest(%s::text[]) AS k WHERE NOT EXISTS (SELECT 1 FROM profiles_profile p "
                           "WHERE p.merged_into_id IS NULL AND jsonb_typeof(p.computed -> k) = 'number')", [computed])
            missing = [row[0] for row in cursor.fetchall()]
        if missing:
            raise rules.DefinitionError(f'no profile has a number as computed trait "{missing[0]}"',
                                        f"features[{features.index(missing[0])}]")
    return features, k_min, k_max


@transaction.atomic
def clustering_queue(*, features: list[str], k_min: int = 2, k_max: int = 8) -> ClusteringRun:
    """Checks the request (rules.DefinitionError on a bad one), saves the run and queues it after commit."""
    features, k_min, k_max = clustering_check(features=features, k_min=k_min, k_max=k_max)
    run = ClusteringRun.objects.create(features=features, k_min=k_min, k_max=k_max)
    enqueue_after_commit(RUN_TASK, run.pk)
    return run


def _features(features: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """Live profiles' ids and feature matrix (those with every feature), and how many lacked one."""
    parts = [_feature_sql(f) for f in features]
    columns = ", ".join(sql for sql, _ in parts)
    params = [p for _, ps in parts for p in ps]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT p.id, {columns} FROM profiles_profile p WHERE p.merged_into_id IS NULL", params)
        rows = cursor.fetchall()
    if not rows:
        return np.empty(0, dtype=np.int64), np.empty((0, len(features))), 0
    table = np.array(rows, dtype=np.float64)
    complete = ~np.isnan(table[:, 1:]).any(axis=1)
    return table[complete, 0].astype(np.int64), table[complete, 1:], int((~complete).sum())


def clustering_run(*, run_id: int) -> ClusteringRun | None:
    """Runs a queued clustering; idempotent (a run already started or finished is left alone). Each cluster
    becomes the static segment `cluster-<run>-<n>`, computed before the run is marked ready."""
    if not ClusteringRun.objects.filter(pk=run_id, status=ClusteringRun.Status.QUEUED).update(
            status=ClusteringRun.Status.RUNNING):
        return None
    run = ClusteringRun.objects.get(pk=run_id)
    started = time.monotonic()
    try:
        ids, x, skipped = _features(run.features)
        result = clustering.cluster(x, k_min=run.k_min, k_max=run.k_max)
        segment_ids = _save(run, ids, x, result, skipped)
        for segment_id in segment_ids:
            segment_recompute(segment_id=segment_id)
    except Exception as exc:
        # Whatever stopped it, the run says so: a run left "running" would never be retried nor explained.
        ClusteringRun.objects.filter(pk=run_id).update(
            status=ClusteringRun.Status.FAILED, error=str(exc) if isinstance(exc, ValueError)
            else f"{type(exc).__name__}: {exc}", finished_at=timezone.now(), duration_s=time.monotonic() - started)
        if not isinstance(exc, ValueError):
            raise
        logger.warning("clustering %s failed: %s", run_id, exc)
        return ClusteringRun.objects.get(pk=run_id)
    ClusteringRun.objects.filter(pk=run_id).update(status=ClusteringRun.Status.READY, finished_at=timezone.now(),
                                                    duration_s=round(time.monotonic() - started, 3))
    return ClusteringRun.objects.get(pk=run_id)


@transaction.atomic
def _save(run: ClusteringRun, ids: np.ndarray, x: np.ndarray, result: clustering.Clustering,
          skipped: int) -> list[int]:
    segment_ids = []
    for number in range(result.k):
        members = result.labels == number
        description = clustering.describe(result.centroids[number], run.features, x)
        segment = Segment.objects.create(
            key=f"cluster-{run.pk}-{number + 1}", name=f"Cluster {number + 1} of clustering {run.pk}: {description}",
            mode=Segment.Mode.STATIC,
            description=f"K-Means on {', '.join(run.features)} (k = {result.k}); {description}.")
        Cluster.objects.create(run=run, number=number + 1, segment=segment, size=int(members.sum()),
                               centroid={f: round(float(v), 4) for f, v in zip(run.features, result.centroids[number])},
                               description=description)
        with connection.cursor() as cursor:
            # The members are locked against an erasure first (FOR KEY SHARE waits for one that holds them, and
            # keeps one from starting), so no identifier of a person being erased is listed after the erasure
            # has looked for the lists that name them. Identifier types longer than a list's column are skipped.
            cursor.execute(
                f"WITH members AS (SELECT id FROM profiles_profile WHERE id = ANY(%s::bigint[]) "
                f"AND merged_into_id IS NULL ORDER BY id FOR KEY SHARE) "
                f"INSERT INTO {StaticMember._meta.db_table} (segment_id, identifier_type, value, added_at) "
                f"SELECT DISTINCT ON (i.profile_id) %s, i.type, i.value, now() "
                f"FROM profiles_identifier i JOIN members m ON m.id = i.profile_id "
                f"WHERE length(i.type) <= {StaticMember._meta.get_field('identifier_type').max_length} "
                f"ORDER BY i.profile_id, {_IDENTIFIER_ORDER}, i.id ON CONFLICT DO NOTHING",
                [ids[members].tolist(), segment.pk])
        segment_ids.append(segment.pk)
    ClusteringRun.objects.filter(pk=run.pk).update(
        k=result.k, silhouettes={str(k): v for k, v in result.silhouettes.items()}, profiles=len(ids),
        skipped=skipped, silhouette_sample=result.sample)
    return segment_ids
