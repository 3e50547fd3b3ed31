"""Retention: events older than their type's period are purged, whole months by dropping their partition."""
from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from consent.models import RetentionRule
from consent.services.audit import audit_record
from profiles.services.partitions import event_partitions_drop, events_delete_expired

DEFAULT = "*"


def retention_purge(*, now: datetime | None = None) -> dict:
    """Applies every retention rule; returns what it removed. Idempotent."""
    now = now or timezone.now()
    rules = {r.event_type: r.days for r in RetentionRule.objects.all()}
    if not rules:
        return {"partitions_dropped": [], "events_deleted": {}}
    # A month no rule keeps anything of goes as a whole: it ended before the longest period began. Only with a
    # default rule: without one, events of the other types are kept forever, whatever the month.
    longest = now - timedelta(days=max(rules.values()))
    dropped = [p.name for p in event_partitions_drop(before=longest.date())] if DEFAULT in rules else []
    deleted = {}
    typed = sorted(t for t in rules if t != DEFAULT)
    for event_type in typed:
        deleted[event_type] = events_delete_expired(event_type=event_type,
                                                    cutoff=now - timedelta(days=rules[event_type]))
    if DEFAULT in rules:
        deleted[DEFAULT] = events_delete_expired(except_types=typed, cutoff=now - timedelta(days=rules[DEFAULT]))
    result = {"partitions_dropped": dropped, "events_deleted": deleted}
    if dropped or any(deleted.values()):
        audit_record(actor="retention", action="retention.purge", target_type="events", details=result)
    return result
