"""Who else learns that people entered a segment. An app above segments (campaigns' triggered actions) registers a
listener when it starts; segments calls every listener inside the transaction that recorded the entries, so what
a listener writes commits, or rolls back, with them. Segments never imports its listeners."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

# listener(segment_id=..., profile_ids=[...], occurred_at=...): the profiles that have just entered, each with a
# new open membership row.
EntryListener = Callable[..., None]
_listeners: list[EntryListener] = []


def on_segment_entries(listener: EntryListener) -> None:
    """Registers a listener once (an app's ready() may run twice in tests)."""
    if listener not in _listeners:
        _listeners.append(listener)


def segment_entries_notify(*, segment_id: int, profile_ids: list[int], occurred_at: datetime) -> None:
    if not profile_ids:
        return
    for listener in _listeners:
        listener(segment_id=segment_id, profile_ids=profile_ids, occurred_at=occurred_at)
