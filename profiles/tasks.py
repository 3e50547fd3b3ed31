"""Celery tasks of the profiles app: enrichment and the events table's partitions."""
from celery import shared_task

from profiles.services.enrichment import profiles_enrich
from profiles.services.partitions import event_partitions_maintain


@shared_task(name="profiles.enrich_all", soft_time_limit=600, time_limit=660)
def enrich_all() -> int:
    return profiles_enrich()


@shared_task(name="profiles.maintain_event_partitions", soft_time_limit=1800, time_limit=1860)
def maintain_event_partitions() -> list[str]:
    return event_partitions_maintain()
