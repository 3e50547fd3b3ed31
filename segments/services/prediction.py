"""Predictive models: features as of a cutoff built in one set-based query, training and judging
(segments.prediction), versions, promotion only when not worse, and the scores written as a computed trait."""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from profiles.common.locks import LEARNING, session_try_lock
from profiles.common.queueing import enqueue_after_commit
from profiles.services.enrichment import ORDER_REVENUE_SQL, profiles_computed_remove, profiles_computed_set
from segments import prediction, rules
from segments.models import ModelVersion, PredictiveModel
from segments.services.memory import learning_work_mem
from segments.stopwatch import Stopwatch

logger = logging.getLogger(__name__)

TRAIN_TASK = "segments.learn_model"
# Keys that are the product's own computed traits: a model may not overwrite them.
RESERVED_KEYS = {"recency_days", "frequency_orders", "monetary_value", "engagement_score", "computed_at",
                 "rfm_recency", "rfm_frequency", "rfm_monetary", "rfm_score", "rfm_group"}
# A new version may replace the scores when its holdout AUC is at least the incumbent's on the same holdout,
# less this much (the noise of re-fitting on the same data).
NOT_WORSE_BY = 0.005
# When a person never did the target event, days since it read as this (longer than any real gap).
NEVER = 3650

_FEATURES_SQL = f"""
    SELECT e.profile_id,
        extract(epoch FROM (%(cut)s - max(e.timestamp) FILTER (WHERE past))) / 86400,
        extract(epoch FROM (%(cut)s - min(e.timestamp) FILTER (WHERE past))) / 86400,
        count(*) FILTER (WHERE past AND e.timestamp > %(cut)s - interval '7 days'),
        count(*) FILTER (WHERE past AND e.timestamp > %(cut)s - interval '30 days'),
        count(*) FILTER (WHERE past AND e.timestamp > %(cut)s - interval '90 days'),
        count(DISTINCT date_trunc('day', e.timestamp))
            FILTER (WHERE past AND e.timestamp > %(cut)s - interval '30 days'),
        count(*) FILTER (WHERE past AND target AND e.timestamp > %(cut)s - interval '30 days'),
        count(*) FILTER (WHERE past AND target AND e.timestamp > %(cut)s - interval '90 days'),
        count(*) FILTER (WHERE past AND target),
        coalesce(extract(epoch FROM (%(cut)s - max(e.timestamp) FILTER (WHERE past AND target))) / 86400,
                 {NEVER}),
        count(*) FILTER (WHERE past AND e.revenue IS NOT NULL),
        coalesce(sum(e.revenue) FILTER (WHERE past), 0),
        count(DISTINCT e.event) FILTER (WHERE past AND e.timestamp > %(cut)s - interval '90 days'),
        bool_or(target AND NOT past)
    FROM (SELECT e.profile_id, e.timestamp, e.event, e.timestamp <= %(cut)s AS past,
                 (e.type = 'track' AND e.event = %(target)s) AS target,
                 CASE WHEN e.type = 'track' AND e.event = 'Order Completed' THEN {ORDER_REVENUE_SQL} END AS revenue
          FROM profiles_event e
          WHERE e.timestamp <= %(until)s AND e.profile_id IS NOT NULL) e
    JOIN profiles_profile p ON p.id = e.profile_id AND p.merged_into_id IS NULL
    GROUP BY e.profile_id
    HAVING bool_or(past)
"""


def model_check(*, key: object, target_event: object, horizon_days: object, algorithm: object) -> None:
    """Raises rules.DefinitionError (message and field) for a bad definition."""
    if not isinstance(key, str) or not _valid_key(key):
        raise rules.DefinitionError("key is letters, digits, _ or -, at most 100", "key")
    if key in RESERVED_KEYS:
        raise rules.DefinitionError(f'"{key}" is a computed trait of the product itself', "key")
    if not isinstance(target_event, str) or not target_event.strip():
        raise rules.DefinitionError("target_event names a track event", "target_event")
    if not isinstance(horizon_days, int) or isinstance(horizon_days, bool) or not 1 <= horizon_days <= 365:
        raise rules.DefinitionError("horizon_days is a whole number of days from 1 to 365", "horizon_days")
    if algorithm not in PredictiveModel.Algorithm.values:
        raise rules.DefinitionError(f"algorithm is one of {', '.join(PredictiveModel.Algorithm.values)}", "algorithm")


def _valid_key(key: str) -> bool:
    return 0 < len(key) <= 100 and all(c.isalnum() or c in "_-" for c in key) and key.isascii()


@transaction.atomic
def model_create(*, key: str, target_event: str, horizon_days: int = 30, negate: bool = False, name: str = "",
                 algorithm: str = PredictiveModel.Algorithm.AUTO, retrain_every_days: int = 7) -> PredictiveModel:
    """Saves a model and queues its first training. Raises rules.DefinitionError on a bad definition."""
    model_check(key=key, target_event=target_event, horizon_days=horizon_days, algorithm=algorithm)
    model = PredictiveModel.objects.create(
        key=key, name=name or key.replace("_", " ").capitalize(), target_event=target_event,
        horizon_days=horizon_days, negate=negate, algorithm=algorithm, retrain_every_days=retrain_every_days)
    enqueue_after_commit(TRAIN_TASK, model.pk)
    return model


@transaction.atomic
def model_delete(*, model: PredictiveModel) -> None:
    """Deletes the model, its versions and its computed trait."""
    profiles_computed_remove(key=model.key)
    model.delete()


def model_retrain(*, model: PredictiveModel) -> None:
    PredictiveModel.objects.filter(pk=model.pk).exclude(status=PredictiveModel.Status.TRAINING).update(
        status=PredictiveModel.Status.QUEUED)
    enqueue_after_commit(TRAIN_TASK, model.pk)


def features_at(*, cut: datetime, target_event: str, horizon_days: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Profile ids, features (prediction.FEATURES) as of `cut`, and whether each did the target event in the
    `horizon_days` after it: one pass over the events up to the horizon's end."""
    with connection.cursor() as cursor:
        cursor.execute(_FEATURES_SQL, {"cut": cut, "until": cut + timedelta(days=horizon_days),
                                       "target": target_event})
        rows = cursor.fetchall()
    if not rows:
        return np.empty(0, dtype=np.int64), np.empty((0, len(prediction.FEATURES))), np.empty(0, dtype=bool)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    x = np.array([r[1:-1] for r in rows], dtype=np.float64)
    y = np.fromiter((bool(r[-1]) for r in rows), dtype=bool, count=len(rows))
    return ids, np.maximum(x, 0), y


def models_due(*, now: datetime | None = None) -> list[int]:
    """Models whose retraining is due: never trained, or trained longer ago than they ask."""
    now = now or timezone.now()
    # A model still marked training is included: if its worker died, nothing else would ever train it again,
    # and if it is really training, the new task returns at once (model_train's lock).
    return [m.pk for m in PredictiveModel.objects.all()
            if m.last_trained_at is None or m.last_trained_at + timedelta(days=m.retrain_every_days) <= now]


def model_train(*, model_id: int, now: datetime | None = None) -> ModelVersion | None:
    """Trains a new version: features as of now - 2 x horizon with labels from the horizon after it; judged
    on features as of now - horizon with labels up to now. It replaces the scores if its holdout AUC is not
    worse than the promoted version's on the same holdout; otherwise the promoted version scores again.
    Returns the version, or None when another training of the model runs or the model is gone. A model that
    cannot learn (too few people, one outcome) is marked failed with the reason."""
    with session_try_lock(LEARNING, model_id) as held, learning_work_mem():
        if not held:
            return None
        model = PredictiveModel.objects.filter(pk=model_id).first()
        if model is None:
            return None
        PredictiveModel.objects.filter(pk=model_id).update(status=PredictiveModel.Status.TRAINING, last_error="")
        try:
            return _train(model, now or timezone.now())
        except prediction.NotLearnable as exc:
            PredictiveModel.objects.filter(pk=model_id).update(status=PredictiveModel.Status.FAILED,
                                                               last_error=str(exc), last_trained_at=timezone.now())
            logger.warning("model %s cannot learn: %s", model.key, exc)
            return None
        except Exception as exc:
            PredictiveModel.objects.filter(pk=model_id).update(status=PredictiveModel.Status.FAILED,
                                                               last_error=f"{type(exc).__name__}: {exc}")
            raise


def _labels(model: PredictiveModel, did: np.ndarray) -> np.ndarray:
    return (~did if model.negate else did).astype(np.int8)


def _train(model: PredictiveModel, now: datetime) -> ModelVersion:
    started = time.monotonic()
    clock = Stopwatch()
    horizon = timedelta(days=model.horizon_days)
    train_cut, holdout_cut = now - 2 * horizon, now - horizon
    _, train_x, train_did = features_at(cut=train_cut, target_event=model.target_event,
                                        horizon_days=model.horizon_days)
    _, holdout_x, holdout_did = features_at(cut=holdout_cut, target_event=model.target_event,
                                            horizon_days=model.horizon_days)
    clock.lap("features_s")
    holdout_y = _labels(model, holdout_did)
    trained = prediction.train(train_x=train_x, train_y=_labels(model, train_did), holdout_x=holdout_x,
                               holdout_y=holdout_y, algorithm=model.algorithm)
    incumbent = model.versions.filter(promoted=True).order_by("-version").first()
    incumbent_auc = (prediction.auc_of(prediction.loads(incumbent.artifact), holdout_x, holdout_y)
                     if incumbent else None)
    promoted = incumbent_auc is None or trained.auc >= incumbent_auc - NOT_WORSE_BY
    clock.lap("fit_s")
    scorer = trained.estimator if promoted else prediction.loads(incumbent.artifact)
    ids, x, _ = features_at(cut=now, target_event=model.target_event)
    scores = prediction.score(scorer, x)
    clock.lap("score_s")
    with transaction.atomic():
        number = (model.versions.order_by("-version").values_list("version", flat=True).first() or 0) + 1
        version = ModelVersion.objects.create(
            model=model, version=number, trained_at=timezone.now(), algorithm=trained.algorithm,
            train_cutoff=train_cut, holdout_cutoff=holdout_cut, train_rows=len(train_x), holdout_rows=len(holdout_x),
            auc=round(trained.auc, 4), brier=round(trained.brier, 4), base_rate=round(trained.base_rate, 4),
            baseline_auc=round(trained.baseline_auc, 4),
            incumbent_auc=None if incumbent_auc is None else round(incumbent_auc, 4),
            feature_importances=trained.importances, score_histogram=prediction.histogram(scores),
            promoted=promoted, scored=len(ids), scored_by=number if promoted else incumbent.version,
            artifact=prediction.dumps(trained.estimator))
        profiles_computed_set(key=model.key, values=dict(zip(ids.tolist(), np.round(scores, 4).tolist())))
        clock.lap("write_s")
        ModelVersion.objects.filter(pk=version.pk).update(duration_s=round(time.monotonic() - started, 3),
                                                          timings=clock.laps)
        PredictiveModel.objects.filter(pk=model.pk).update(status=PredictiveModel.Status.READY, last_error="",
                                                           last_trained_at=version.trained_at)
    logger.info("model %s version %s: auc %.3f (baseline %.3f, incumbent %s), %s", model.key, number, trained.auc,
                trained.baseline_auc, incumbent_auc, "promoted" if promoted else "kept the incumbent")
    version.refresh_from_db()
    return version


def models_score(*, now: datetime | None = None) -> dict[str, int]:
    """Scores everyone again with each model's version in use, on features as of now (recency changes every
    day, retraining only every few): a model being trained is left to its training. Returns people scored per
    model key."""
    scored = {}
    for model in PredictiveModel.objects.filter(versions__promoted=True).distinct():
        with session_try_lock(LEARNING, model.pk) as held, learning_work_mem():
            version = model.versions.filter(promoted=True).order_by("-version").first() if held else None
            if version is None:
                continue
            ids, x, _ = features_at(cut=now or timezone.now(), target_event=model.target_event)
            scores = prediction.score(prediction.loads(version.artifact), x)
            scored[model.key] = profiles_computed_set(
                key=model.key, values=dict(zip(ids.tolist(), np.round(scores, 4).tolist())))
    return scored
