"""Forgetting the (source, messageId) keys of accepted messages once they are past the dedupe window.

Each key makes a replay of its message a duplicate; without an end the table grows with every message ever
accepted. A key is kept for MESSAGE_DEDUPE_DAYS after it was received, and past that for as long as its message
is still queued, so a replay can never queue a second copy beside the first. After that a replay is accepted as
a new message.

Why a chunked delete and not daily partitions of the key table dropped whole: PostgreSQL enforces a unique key
on a partitioned table only when the key contains the partition column, so the key would become (source,
messageId, day). A replay on another day than the original would then no longer conflict, and `INSERT ... ON
CONFLICT` could not stop it: a message accepted at 23:59 would be forgotten a minute later, and a check of
older partitions before the insert would race with a concurrent replay. One unique key and a delete keep
"duplicate" meaning the same thing whatever the day. What that costs the accept path is an index entry per
message on received_at, which only grows (accept writes the time of the request), so each insert lands on the
index's rightmost page, always in memory; it replaced the index on source_id alone, which the primary key made
redundant, so a message costs as many index entries as before.

The delete never holds up the accept path: it takes the oldest keys a chunk at a time, each chunk its own short
transaction that skips rows another prune holds (SKIP LOCKED). The only insert that can wait on it is a replay
of a key in the chunk being deleted, for the few milliseconds until that chunk commits; it is then accepted as
new, as it would have been a moment later.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Min
from django.utils import timezone

from profiles.models import MessageKey, PendingEvent

KEYS = MessageKey._meta.db_table
# Keys per transaction: about 15 ms of work (700,000 keys/s on the 2-core development machine), so a replay
# that waits on a chunk waits no longer than that.
CHUNK = 10_000


@dataclass(frozen=True)
class MessageKeysPruned:
    deleted: int
    # Keys received before this were forgotten: the window's start, or the oldest queued message's receipt.
    cutoff: datetime
    # False when the time budget ran out with expired keys left.
    done: bool


def message_keys_cutoff(*, now: datetime | None = None) -> datetime:
    """Keys received before this moment may be forgotten.

    The start of the dedupe window, moved back to the oldest message still queued: a key and its queued message
    are written by one statement with the same received_at, so every queued message's key is at or after it.
    A message accepted later is received after the window's start, so its key is safe without being seen here.
    The queue is read once per prune (a scan of a table that stays small, and that the dashboard reads the same
    way); a backlog older than the window holds the keys back until the pipeline has moved it.
    """
    cutoff = (now or timezone.now()) - timedelta(days=settings.MESSAGE_DEDUPE_DAYS)
    oldest_queued = PendingEvent.objects.aggregate(oldest=Min("received_at"))["oldest"]
    return min(cutoff, oldest_queued) if oldest_queued is not None else cutoff


def message_keys_prune(*, now: datetime | None = None, max_seconds: float | None = None,
                       chunk: int = CHUNK) -> MessageKeysPruned:
    """Deletes the message keys received before `message_keys_cutoff`, oldest first, `chunk` per transaction.

    Not one transaction: each chunk commits on its own, so an interrupted prune keeps what it did and the next
    run goes on from there. Stops when no expired key is left, or after `max_seconds` (then `done` is False).
    Idempotent; concurrent prunes skip each other's rows.
    """
    cutoff = message_keys_cutoff(now=now)
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    # Each chunk starts where the last one ended, so it does not walk again over the index entries of keys just
    # deleted (they stay in the index until vacuum). Not past it: keys of one request share a received_at.
    after, deleted = None, 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            # By ctid: the rows are locked, so their ctids hold; the delete then visits only the heap pages the
            # index scan just read, where a join on the primary key would probe its random (source, messageId)
            # pages.
            since = "" if after is None else "received_at >= %s AND "
            cursor.execute(
                f"WITH gone AS (DELETE FROM {KEYS} WHERE ctid = ANY(ARRAY("
                f"SELECT ctid FROM {KEYS} WHERE {since}received_at < %s "
                "ORDER BY received_at LIMIT %s FOR UPDATE SKIP LOCKED)) RETURNING received_at) "
                "SELECT count(*), max(received_at) FROM gone",
                [*([] if after is None else [after]), cutoff, chunk])
            count, last = cursor.fetchone()
        deleted += count
        if count < chunk:
            return MessageKeysPruned(deleted=deleted, cutoff=cutoff, done=True)
        after = last
        if deadline is not None and time.monotonic() >= deadline:
            return MessageKeysPruned(deleted=deleted, cutoff=cutoff, done=False)
