"""Celery tasks of the profiles app, and the kick that wakes the pipeline after an accept."""
import logging

from celery import current_app, shared_task
from django.core.cache import cache
from kombu.exceptions import OperationalError as BrokerError

from profiles.services.enrichment import profiles_enrich
from profiles.services.message_keys import message_keys_prune
from profiles.services.partitions import event_partitions_maintain

PIPELINE_KICK_KEY = "pipeline:kick"
logger = logging.getLogger(__name__)


def kick_pipeline() -> None:
    """Queues one pipeline drain unless one is already queued; the drain clears the key before each claim.

    The pipeline task belongs to cdp, which sits above this app, so it is looked up by name.
    """
    if cache.add(PIPELINE_KICK_KEY, 1, timeout=30):
        try:
            current_app.tasks["cdp.process_pending"].delay()
        except BrokerError:
            # The events are committed; the beat sweep processes them once the broker is back.
            cache.delete(PIPELINE_KICK_KEY)
            logger.warning("could not queue the pipeline; the periodic sweep will pick the events up")


@shared_task(name="profiles.enrich_all", soft_time_limit=600, time_limit=660)
def enrich_all() -> int:
    return profiles_enrich()


@shared_task(name="profiles.maintain_event_partitions", soft_time_limit=1800, time_limit=1860)
def maintain_event_partitions() -> list[str]:
    return event_partitions_maintain()


# A run shares the ingest queue with the pipeline: it gives its worker back after a minute and queues the rest
# behind the pipeline's tasks. Well inside the soft time limit, as a run stops between chunks, never in one.
PRUNE_BUDGET_SECONDS = 60


@shared_task(name="profiles.prune_message_keys", queue="ingest", soft_time_limit=120, time_limit=150)
def prune_message_keys() -> int:
    """Forgets message keys past the dedupe window; re-queues itself while expired keys are left."""
    result = message_keys_prune(max_seconds=PRUNE_BUDGET_SECONDS)
    if not result.done:
        prune_message_keys.delay()
    return result.deleted
