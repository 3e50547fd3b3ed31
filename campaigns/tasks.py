"""Celery tasks of the campaigns app (queue campaigns): they take nothing or ids and call a service."""
from celery import shared_task

from campaigns.services.exposures import RECORD_TASK, exposures_record_queued
from campaigns.services.triggers import SEND_TASK, triggered_sends_due

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


@shared_task(name=SEND_TASK, soft_time_limit=60, time_limit=90)
def send_triggered() -> dict:
    """Idempotent: each send is claimed before it is posted, so a repeated or concurrent run posts nothing twice."""
    return triggered_sends_due()
