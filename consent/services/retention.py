"""Retention: events older than their type's period are purged, whole months by dropping their partition."""
from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from consent.models import RetentionRule
from consent.services.audit import audit_record
from profiles.models import Event
from profiles.services.partitions import event_partitions_drop

DEFAULT = "*"
# Rows per DELETE: each one is a short transaction, so ingestion is never held up behind a purge.
CHUNK = 20_000


def _delete_expired(event_type: str | None, excluded: list[str], cutoff: datetime) -> int:
    """Deletes events of a type (or, for the default, of every type not in `excluded`) older than the cutoff."""
    if connection.vendor != "postgresql":
        expired = Event.objects.filter(timestamp__lt=cutoff)
        expired = expired.filter(type=event_type) if event_type else expired.exclude(type__in=excluded)
        return expired.delete()[0]
    where = "type = %s" if event_type else "NOT (type = ANY(%s::text[]))"
    total = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM profiles_event e USING (SELECT id, timestamp FROM profiles_event WHERE {where} "
                "AND timestamp < %s LIMIT %s) d WHERE e.id = d.id AND e.timestamp = d.timestamp",
                [event_type or "{" + ",".join(excluded) + "}", cutoff, CHUNK])
            total += cursor.rowcount
            if cursor.rowcount < CHUNK:
                return total


def retention_purge(*, now: datetime | None = None) -> dict:
    """Applies every retention rule; returns what it removed. Idempotent."""
    now = now or timezone.now()
    rules = {r.event_type: r.days for r in RetentionRule.objects.all()}
    if not rules:
        return {"partitions_dropped": [], "events_deleted": {}}
    # A month no rule keeps anything of goes as a whole: it ended before the longest period began. Only with a
    # default rule: without one, events of the other types are kept forever, whatever the month.
    longest = now - timedelta(days=max(rules.values()))
    dropped = []
    if connection.vendor == "postgresql" and DEFAULT in rules:
        dropped = [p.name for p in event_partitions_drop(before=longest.date())]
    deleted = {}
    typed = sorted(t for t in rules if t != DEFAULT)
    for event_type in typed:
        deleted[event_type] = _delete_expired(event_type, [], now - timedelta(days=rules[event_type]))
    if DEFAULT in rules:
        deleted[DEFAULT] = _delete_expired(None, typed, now - timedelta(days=rules[DEFAULT]))
    result = {"partitions_dropped": dropped, "events_deleted": deleted}
    if dropped or any(deleted.values()):
        audit_record(actor="retention", action="retention.purge", target_type="events", details=result)
    return result
