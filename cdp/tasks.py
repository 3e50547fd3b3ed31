"""The pipeline's Celery task: drain pending events batch by batch."""
from celery import shared_task
from django.core.cache import cache

from cdp.pipeline import pipeline_process_batch

# One task drains for at most this long, then re-queues itself so other queues get their turn.
DRAIN_BATCHES = 50


@shared_task(name="cdp.process_pending", acks_late=True, reject_on_worker_lost=True,
             soft_time_limit=300, time_limit=330)
def process_pending() -> int:
    from profiles.tasks import PIPELINE_KICK_KEY

    total = 0
    for _ in range(DRAIN_BATCHES):
        # Cleared before each claim, so an event accepted while this batch runs queues a fresh drain.
        cache.delete(PIPELINE_KICK_KEY)
        processed = pipeline_process_batch()
        total += processed
        if not processed:
            return total
    process_pending.delay()
    return total
