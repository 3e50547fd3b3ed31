"""Celery tasks of the segments app: they take segment ids and call a service."""
from celery import shared_task
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from segments.selectors import segments_due
from segments.services.membership import segment_recompute

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
