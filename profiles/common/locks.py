"""The registry of PostgreSQL advisory-lock keys: every app declares its key space here, so two apps can never
pick the same key and serialise each other (or worse, think they hold a lock another app holds).

Keys use PostgreSQL's two-integer form, (space, key): the space is the registered number below.
"""
from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import connection


@dataclass(frozen=True)
class LockSpace:
    name: str
    number: int
    # Keys are 0 <= key < size.
    size: int


_spaces: dict[int, LockSpace] = {}


def lock_space(name: str, *, number: int, size: int = 1) -> LockSpace:
    """Declares a key space; raises when its number is another space's."""
    taken = _spaces.get(number)
    if taken is not None and taken.name != name:
        raise ValueError(f"advisory lock space {number} is {taken.name!r}; {name!r} needs a number of its own")
    _spaces[number] = space = LockSpace(name, number, size)
    return space


# One line per space, for every app.
# Identifiers hash into buckets; bounded so that two or three workers stay inside PostgreSQL's shared lock table
# (max_locks_per_transaction x max_connections = 6,400 by default).
IDENTITY_BUCKETS = lock_space("profiles.identity_buckets", number=71, size=1024)
AUDIT_CHAIN = lock_space("consent.audit_chain", number=72)
# One key per segment id: two recomputes of one segment never run at once.
SEGMENT_RECOMPUTE = lock_space("segments.recompute", number=73, size=2**31 - 1)
# One key: one recorder at a time moves queued exposures into PostgreSQL (it reads, inserts, then trims the queue).
EXPOSURE_RECORDER = lock_space("campaigns.exposure_recorder", number=74)
# One key: a pipeline batch attributing goal events holds it shared until it commits, the recorder exclusively while
# it writes exposures and attributes to them, so each sees what the other committed and no conversion falls between.
CONVERSION_ATTRIBUTION = lock_space("campaigns.conversion_attribution", number=75)
# Key 0: one refresh of the recommendations at a time; key N: one training of predictive model N at a time.
LEARNING = lock_space("segments.learning", number=76, size=2**31 - 1)


def xact_lock(space: LockSpace, keys: Iterable[int] = (0,), *, shared: bool = False) -> None:
    """Takes transaction-level locks on these keys of the space, in sorted order (so two transactions locking
    overlapping sets never wait on each other in a cycle); they are released at commit or rollback. Shared locks
    keep out only the exclusive ones."""
    ordered = sorted(set(keys))
    if any(not 0 <= key < space.size for key in ordered):
        raise ValueError(f"key outside advisory lock space {space.name} (0..{space.size - 1})")
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count({function}(%s, k)) FROM unnest(%s::int[]) AS k",
                       [space.number, "{" + ",".join(map(str, ordered)) + "}"])


@contextmanager
def session_try_lock(space: LockSpace, key: int = 0):
    """Holds a session-level lock on the key for the block, across commits, if nobody else holds it; yields
    whether it got it. For work that must commit before a step outside the database (trimming a Redis queue) and
    still keep others out until that step is done."""
    if not 0 <= key < space.size:
        raise ValueError(f"key outside advisory lock space {space.name} (0..{space.size - 1})")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [space.number, key])
        held = cursor.fetchone()[0]
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [space.number, key])

