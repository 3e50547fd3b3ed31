"""The pipeline's Celery task: drain pending events batch by batch."""
from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from cdp.pipeline import pipeline_drain

# One task drains for at most this long, then re-queues itself so other queues get their turn.
DRAIN_BATCHES = 50


@shared_task(name="cdp.process_pending", acks_late=True, reject_on_worker_lost=True,
             soft_time_limit=300, time_limit=330)
def process_pending() -> int:
    from profiles.tasks import PIPELINE_KICK_KEY

    # Cleared before draining, so an event accepted while this drain runs queues a fresh one.
    cache.delete(PIPELINE_KICK_KEY)
    total = pipeline_drain(max_batches=DRAIN_BATCHES)
    if total >= DRAIN_BATCHES * settings.PIPELINE_BATCH_SIZE:
        process_pending.delay()
    return total
