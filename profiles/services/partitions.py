"""Monthly partitions of the events table: create them ahead of time, adopt stray rows, expire old events.

Events land in the partition of their month (UTC) or, when it does not exist yet, in the default partition.
Creating a partition locks the whole events table (ACCESS EXCLUSIVE), so it never happens inside the
pipeline: the scheduled maintenance creates the coming months ahead and moves any rows the default partition
holds (historical imports, clients with wrong clocks) into partitions of their own, so that retention can
drop whole months.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

from django.db import connection, transaction

from profiles.models import Event

EVENTS = Event._meta.db_table
DEFAULT_PARTITION = f"{EVENTS}_default"
MONTHS_AHEAD = 2


@dataclass(frozen=True)
class Partition:
    name: str
    month: date
    rows: int | None = None


def month_start(day: date) -> date:
    return date(day.year, day.month, 1)


def add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def partition_name(month: date) -> str:
    return f"{EVENTS}_y{month.year:04d}m{month.month:02d}"


def _bound(month: date) -> str:
    return datetime(month.year, month.month, 1, tzinfo=timezone.utc).isoformat()


def event_partitions_list() -> list[Partition]:
    """The monthly partitions that exist, oldest first, with their approximate row counts."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, greatest(c.reltuples, 0)::bigint FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass AND c.relname <> %s "
            "ORDER BY c.relname", [EVENTS, DEFAULT_PARTITION])
        rows = cursor.fetchall()
    return [Partition(name, date(int(name[-7:-3]), int(name[-2:]), 1), count) for name, count in rows]


def _default_months() -> list[date]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT date_trunc('month', timestamp AT TIME ZONE 'UTC')::date "
                       f"FROM {DEFAULT_PARTITION}")
        return sorted(row[0] for row in cursor.fetchall())


def event_partitions_ensure(*, months: list[date]) -> list[str]:
    """Creates the missing monthly partitions for these months; rows of those months leave the default partition.

    One short transaction per partition (ACCESS EXCLUSIVE on the events table while it attaches). Idempotent.
    Returns the names of the partitions it created.
    """
    existing = {p.month for p in event_partitions_list()}
    created = []
    for month in sorted({month_start(m) for m in months} - existing):
        name, lower, upper = partition_name(month), _bound(month), _bound(add_months(month, 1))
        with transaction.atomic(), connection.cursor() as cursor:
            # Held until the partition is attached, so no row of its month lands in the default meanwhile.
            cursor.execute(f"LOCK TABLE {DEFAULT_PARTITION} IN SHARE ROW EXCLUSIVE MODE")
            cursor.execute(f"CREATE TABLE {name} (LIKE {EVENTS} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
            # The default partition may already hold rows of this month; attaching would fail while it does.
            cursor.execute(
                f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE timestamp >= %s AND timestamp < %s "
                f"RETURNING *) INSERT INTO {name} SELECT * FROM moved", [lower, upper])
            # Bounds are literals (DDL takes no parameters); both are ISO dates this module formats.
            cursor.execute(f"ALTER TABLE {EVENTS} ATTACH PARTITION {name} FOR VALUES FROM ('{lower}') TO ('{upper}')")
        created.append(name)
    return created


def event_partitions_maintain(*, today: date | None = None) -> list[str]:
    """The scheduled upkeep: partitions for this month and the next MONTHS_AHEAD, and for every month whose
    rows sit in the default partition. Returns the names of the partitions it created."""
    this_month = month_start(today or datetime.now(timezone.utc).date())
    months = [add_months(this_month, k) for k in range(MONTHS_AHEAD + 1)] + _default_months()
    return event_partitions_ensure(months=months)


def event_partitions_drop(*, before: date) -> list[Partition]:
    """Drops every monthly partition that ends on or before `before` (all its events expired); returns them.

    A partition drop is instant and leaves no dead rows, where deleting a month of events row by row would
    rewrite every index. Locks the events table briefly per partition, like creating one.
    """
    dropped = []
    for partition in event_partitions_list():
        if add_months(partition.month, 1) <= before:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE {partition.name}")
            dropped.append(partition)
    return dropped


# Rows per DELETE: each one is a short transaction, so ingestion is never held up behind a purge.
EXPIRE_CHUNK = 20_000


def events_delete_expired(*, cutoff: datetime, event_type: str | None = None, except_types: list[str] = (),
                          chunk: int = EXPIRE_CHUNK) -> int:
    """Deletes events older than the cutoff, of one type or (event_type None) of every type not in
    `except_types`, in short transactions of `chunk` rows; returns how many. Idempotent."""
    where = "type = %s" if event_type else "NOT (type = ANY(%s::text[]))"
    total = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {EVENTS} e USING (SELECT id, timestamp FROM {EVENTS} WHERE {where} "
                "AND timestamp < %s LIMIT %s) d WHERE e.id = d.id AND e.timestamp = d.timestamp",
                [event_type or "{" + ",".join(except_types) + "}", cutoff, chunk])
            total += cursor.rowcount
            if cursor.rowcount < chunk:
                return total
