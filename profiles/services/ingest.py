"""Accepting collected messages: one statement per request queues the new ones, deduplicated by (source, messageId)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from profiles.messages import AcceptedMessage, Rejection, validate_message
from profiles.models import PendingEvent, Source


@dataclass
class AcceptResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    event_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "success": True,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": [r.as_dict() for r in self.rejected],
        }


_COLUMNS = ("source_id", "message_id", "type", "event", "user_id", "anonymous_id", "timestamp", "received_at",
            "payload")


def _insert(source_id: int, messages: list[AcceptedMessage], received_at: datetime) -> list[int]:
    """Queues messages whose (source, messageId) is new; replays are skipped. Returns the new queue ids."""
    if not messages:
        return []
    # One JSON parameter: psycopg adapts hundreds of separate parameters in Python, which costs more than the
    # insert itself; PostgreSQL unpacks the document natively. The key insert decides which messages are new, so
    # two requests racing with one messageId queue it once.
    rows = orjson.dumps([
        {"m": m.message_id, "t": m.type, "e": m.event, "u": m.user_id, "a": m.anonymous_id,
         "ts": m.timestamp, "p": m.payload} for m in messages
    ]).decode()
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH r AS (SELECT * FROM jsonb_to_recordset(%s::jsonb) "
            "AS r(m text, t text, e text, u text, a text, ts timestamptz, p jsonb)), "
            "fresh AS (INSERT INTO profiles_messagekey (source_id, message_id, received_at) "
            "SELECT %s, m, %s FROM r ON CONFLICT DO NOTHING RETURNING message_id) "
            f"INSERT INTO profiles_pendingevent ({', '.join(_COLUMNS)}) "
            "SELECT %s, r.m, r.t, r.e, r.u, r.a, r.ts, %s, r.p FROM r JOIN fresh ON fresh.message_id = r.m "
            "RETURNING id",
            [rows, source_id, received_at, source_id, received_at],
        )
        return [r[0] for r in cursor.fetchall()]


_events_queued_callbacks: list[Callable[[], None]] = []


def events_queued_subscribe(callback: Callable[[], None]) -> None:
    """Registers what to call once newly accepted events are committed to the queue (the pipeline, which sits
    above this app, registers its kick at start-up). Registering twice is harmless."""
    if callback not in _events_queued_callbacks:
        _events_queued_callbacks.append(callback)


def _events_queued() -> None:
    for callback in _events_queued_callbacks:
        callback()


def events_discard(*, event_ids: list[int]) -> int:
    """Removes queued events without processing them (the consent gate's drop); returns how many."""
    deleted, _ = PendingEvent.objects.filter(id__in=event_ids).delete()
    return deleted


def events_accept(*, source: Source, messages: list, default_type: str | None = None,
                  received_at: datetime | None = None) -> AcceptResult:
    """Validates and durably stores messages; invalid ones are reported by index, valid ones kept.

    Queues the pipeline after commit. Idempotent: a replayed messageId is counted as a duplicate.
    """
    received_at = received_at or timezone.now()
    result = AcceptResult()
    valid: dict[str, AcceptedMessage] = {}
    for index, message in enumerate(messages):
        checked = validate_message(message, index=index, received_at=received_at, default_type=default_type,
                                   max_bytes=settings.COLLECT_MAX_MESSAGE_BYTES)
        if isinstance(checked, Rejection):
            result.rejected.append(checked)
        elif checked.message_id in valid:
            result.duplicates += 1
        else:
            valid[checked.message_id] = checked
    with transaction.atomic():
        result.event_ids = _insert(source.pk, list(valid.values()), received_at)
        result.accepted = len(result.event_ids)
        result.duplicates += len(valid) - result.accepted
        if result.accepted:
            transaction.on_commit(_events_queued)
    return result
