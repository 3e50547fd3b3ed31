"""Celery tasks of the campaigns app (queue campaigns): they take nothing or ids and call a service."""
from celery import shared_task

from campaigns.services.exposures import RECORD_TASK, exposures_record_queued

# One run moves at most this many batches; the beat and the next decision's kick pick up the rest.
RECORD_ROUNDS = 20


@shared_task(name=RECORD_TASK, soft_time_limit=120, time_limit=150)
def record_exposures() -> int:
    """Idempotent: writing an exposure twice keeps one (its decision id is unique)."""
    moved = 0
    for _ in range(RECORD_ROUNDS):
        taken = exposures_record_queued()
        moved += taken
        if not taken:
            break
    return moved
