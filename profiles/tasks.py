"""Celery tasks of the profiles app: enrichment and the events table's partitions."""
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


@shared_task(name="profiles.prune_message_keys", queue="ingest", soft_time_limit=120, time_limit=150)
def prune_message_keys() -> int:
    """Forgets message keys past the dedupe window; re-queues itself while expired keys are left."""
    result = message_keys_prune(max_seconds=PRUNE_BUDGET_SECONDS)
    if not result.done:
        prune_message_keys.delay()
    return result.deleted
