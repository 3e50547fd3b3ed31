"""Accepting collected messages: one INSERT per request, deduplicated by (source, messageId)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from profiles.messages import AcceptedMessage, Rejection, validate_message
from profiles.models import Source


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


_COLUMNS = ("source_id", "message_id", "type", "event", "user_id", "anonymous_id", "timestamp", "received_at", "payload")


def _insert(source_id: int, messages: list[AcceptedMessage], received_at: datetime) -> list[int]:
    """Stores messages in one statement; replays of a known messageId are skipped. Returns the new event ids."""
    if not messages:
        return []
    if connection.vendor == "postgresql":
        # One JSON parameter: psycopg adapts hundreds of separate parameters in Python, which costs more
        # than the insert itself; PostgreSQL unpacks the document natively.
        rows = orjson.dumps([
            {"m": m.message_id, "t": m.type, "e": m.event, "u": m.user_id, "a": m.anonymous_id,
             "ts": m.timestamp, "p": m.payload} for m in messages
        ]).decode()
        sql = (
            f"INSERT INTO profiles_event ({', '.join(_COLUMNS)}) "
            "SELECT %s, r.m, r.t, r.e, r.u, r.a, r.ts, %s, r.p FROM jsonb_to_recordset(%s::jsonb) "
            "AS r(m text, t text, e text, u text, a text, ts timestamptz, p jsonb) "
            "ON CONFLICT (source_id, message_id) DO NOTHING RETURNING id"
        )
        params = [source_id, received_at, rows]
    else:
        row = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
        params = []
        for m in messages:
            params += [source_id, m.message_id, m.type, m.event, m.user_id, m.anonymous_id, m.timestamp,
                       received_at, orjson.dumps(m.payload).decode()]
        sql = (
            f"INSERT INTO profiles_event ({', '.join(_COLUMNS)}) VALUES {', '.join([row] * len(messages))} "
            "ON CONFLICT (source_id, message_id) DO NOTHING RETURNING id"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [r[0] for r in cursor.fetchall()]


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
            from profiles.tasks import kick_pipeline

            transaction.on_commit(kick_pipeline)
    return result
