"""The pipeline's Celery task, and the kick that queues it when the collection API has accepted events."""
import logging

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.core.cache import cache
from kombu.exceptions import OperationalError as BrokerError

from cdp.pipeline import pipeline_drain

# One task drains for at most this many batches, then re-queues itself so other queues get their turn.
DRAIN_BATCHES = 50
# A drain re-queues itself while the queue stays full; past this many in one run it stops and says so, and the
# beat sweep starts a new run. 200 runs of 50 batches of 2,000 events is 20 million events in one go.
MAX_DRAIN_REQUEUES = 200
PIPELINE_KICK_KEY = "pipeline:kick"
# Accepts within this long share one queued drain. Short, because a drain lost with a killed worker leaves the key
# behind: later accepts queue a fresh one once it expires.
KICK_DEBOUNCE_S = 5
logger = logging.getLogger(__name__)


def pipeline_kick() -> None:
    """Queues one pipeline drain unless one is already queued; the drain clears the key before it claims.

    Registered with profiles' ingestion at start-up (cdp/apps.py): profiles sits below the pipeline."""
    if cache.add(PIPELINE_KICK_KEY, 1, timeout=KICK_DEBOUNCE_S):
        try:
            process_pending.delay()
        except BrokerError:
            # The events are committed; the beat sweep processes them once the broker is back.
            cache.delete(PIPELINE_KICK_KEY)
            logger.warning("could not queue the pipeline; the periodic sweep will pick the events up")


@shared_task(name="cdp.process_pending", queue="ingest", acks_late=True, reject_on_worker_lost=True,
             soft_time_limit=300, time_limit=330)
def process_pending(requeues: int = 0) -> int:
    # Cleared before draining, so an event accepted while this drain runs queues a fresh one.
    cache.delete(PIPELINE_KICK_KEY)
    total = pipeline_drain(max_batches=DRAIN_BATCHES)
    if total >= DRAIN_BATCHES * settings.PIPELINE_BATCH_SIZE:
        if requeues < MAX_DRAIN_REQUEUES:
            process_pending.delay(requeues + 1)
        else:
            logger.warning("pipeline drain stopped after %s re-queues in one run; the periodic sweep continues",
                           MAX_DRAIN_REQUEUES)
    return total


@worker_ready.connect
def resume_pipeline_on_start(**kwargs) -> None:
    """A worker that starts drains whatever waits: a drain taken by a worker that was killed comes back from the
    broker only after its visibility timeout (an hour), and the debounce key it left may still hold."""
    cache.delete(PIPELINE_KICK_KEY)
    pipeline_kick()
