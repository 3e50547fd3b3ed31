"""Celery tasks of the profiles app: enrichment, the events table's partitions, the message keys' expiry."""
import logging

from celery import shared_task

from profiles.services.enrichment import profiles_enrich
from profiles.services.message_keys import message_keys_prune
from profiles.services.partitions import event_partitions_maintain


@shared_task(name="profiles.enrich_all", soft_time_limit=600, time_limit=660)
def enrich_all() -> int:
    return profiles_enrich()


@shared_task(name="profiles.maintain_event_partitions", soft_time_limit=1800, time_limit=1860)
def maintain_event_partitions() -> list[str]:
    return event_partitions_maintain()


# A run shares the ingest queue with the pipeline: it gives its worker back after a minute and queues the rest
# behind the pipeline's tasks. Well inside the soft time limit, as a run stops between chunks, never in one.
PRUNE_BUDGET_SECONDS = 60
# At about 700,000 keys/s, 100 runs of a minute each is billions of keys: past it something keeps adding them.
MAX_PRUNE_REQUEUES = 100
logger = logging.getLogger(__name__)


@shared_task(name="profiles.prune_message_keys", queue="ingest", soft_time_limit=120, time_limit=150)
def prune_message_keys(requeues: int = 0) -> int:
    """Forgets message keys past the dedupe window; re-queues itself while expired keys are left, a bounded number
    of times per run (the next scheduled run goes on)."""
    result = message_keys_prune(max_seconds=PRUNE_BUDGET_SECONDS)
    if not result.done:
        if requeues < MAX_PRUNE_REQUEUES:
            prune_message_keys.delay(requeues + 1)
        else:
            logger.warning("message key prune stopped after %s re-queues; the next scheduled run goes on",
                           MAX_PRUNE_REQUEUES)
    return result.deleted
