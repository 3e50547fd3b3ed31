"""Celery tasks of the segments app: they take ids and call a service. The deliver* tasks run on the webhooks
queue (CELERY_TASK_ROUTES): they wait on other people's servers."""
from celery import shared_task
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from segments.selectors import segments_due
from segments.services.deliveries import DELIVER_TASK, deliveries_send, deliveries_send_due
from segments.services.clustering import RUN_TASK as CLUSTERING_TASK
from segments.services.clustering import clustering_run
from segments.services.membership import segment_recompute
from segments.services.prediction import TRAIN_TASK as MODEL_TASK
from segments.services.prediction import model_train, models_due, models_score
from segments.services.recommendations import REFRESH_TASK, recommendations_refresh

RECOMPUTE = "segments.recompute"


@shared_task(name=RECOMPUTE, acks_late=True, reject_on_worker_lost=True, soft_time_limit=600, time_limit=660,
             autoretry_for=(OperationalError,),
             retry_backoff=True, max_retries=5)
def recompute(segment_id: int) -> int | None:
    """Idempotent: recomputing twice gives the same memberships (the second finds no difference)."""
    diff = segment_recompute(segment_id=segment_id)
    return None if diff is None else len(diff.entered) + len(diff.exited)


@shared_task(name="segments.recompute_due", soft_time_limit=60, time_limit=90)
def recompute_due() -> int:
    """The schedule: realtime segments are swept (members leave when a window passes) and batch segments
    recomputed when their interval has passed; each in its own task."""
    due = segments_due(now=timezone.now(), realtime_every=settings.SEGMENT_SWEEP_SECONDS,
                       batch_every=settings.SEGMENT_BATCH_SECONDS)
    for segment_id in due:
        recompute.delay(segment_id)
    return len(due)


# The beat runs deliver_due every 30 s; one run sends for at most this long, then leaves the rest to the next.
DUE_BUDGET_S = 25.0


# A batch is TASK_BATCH deliveries at up to 13 s each (the request timeouts): 260 s at worst. Past the soft limit
# the delivery being sent stays due, and deliver_due picks up what the task did not reach.
@shared_task(name=DELIVER_TASK, acks_late=True, reject_on_worker_lost=True, soft_time_limit=300, time_limit=330)
def deliver(delivery_ids: list[int]) -> dict[str, int]:
    """Idempotent: a delivery already delivered, dead, or waiting for its retry is left alone."""
    return deliveries_send(delivery_ids=delivery_ids)


@shared_task(name="segments.deliver_due", soft_time_limit=60, time_limit=90)
def deliver_due() -> dict[str, int]:
    """Sends retries whose time has come, and deliveries whose task was lost (a worker restart)."""
    return deliveries_send_due(budget_s=DUE_BUDGET_S)


# What segments learn from profiles: on the learning queue (CELERY_TASK_ROUTES), a core for a minute or more each.


@shared_task(name=CLUSTERING_TASK, acks_late=True, reject_on_worker_lost=True, soft_time_limit=1800,
             time_limit=1860)
def learn_clustering(run_id: int) -> str | None:
    """Idempotent: a run already started or finished is left alone."""
    run = clustering_run(run_id=run_id)
    return None if run is None else run.status


@shared_task(name=MODEL_TASK, acks_late=True, reject_on_worker_lost=True, soft_time_limit=1800, time_limit=1860)
def learn_model(model_id: int) -> int | None:
    """Trains a new version; a second task for the same model while one trains returns at once."""
    version = model_train(model_id=model_id)
    return None if version is None else version.version


@shared_task(name="segments.learn_models_due", soft_time_limit=60, time_limit=90)
def learn_models_due() -> int:
    due = models_due()
    for model_id in due:
        learn_model.delay(model_id)
    return len(due)


@shared_task(name="segments.learn_scores", acks_late=True, reject_on_worker_lost=True, soft_time_limit=1800,
             time_limit=1860)
def learn_scores() -> dict[str, int]:
    """Idempotent: scoring again with the same version and features writes the same scores."""
    return models_score()


@shared_task(name=REFRESH_TASK, acks_late=True, reject_on_worker_lost=True,
             soft_time_limit=3600, time_limit=3660)
def learn_recommendations() -> int | None:
    """Refreshes every top list; a second refresh while one runs returns at once."""
    run = recommendations_refresh()
    return None if run is None else run.pk
