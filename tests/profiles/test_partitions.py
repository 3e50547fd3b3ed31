"""Monthly partitions of the events table: events land in their month, stray rows are adopted by upkeep."""
from datetime import date

import pytest
from django.db import connection

from profiles.models import Event
from profiles.services.partitions import (DEFAULT_PARTITION, add_months, event_partitions_list,
                                          event_partitions_maintain, partition_name)
from profiles.tasks import maintain_event_partitions

pytestmark = pytest.mark.django_db


def _rows_in(table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT message_id FROM {table} ORDER BY message_id")
        return [r[0] for r in cursor.fetchall()]


def _where(message_id: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM profiles_event WHERE message_id = %s", [message_id])
        return cursor.fetchone()[0]


def test_an_event_lands_in_the_partition_of_its_month(post_collect, drain):
    post_collect("track", {"userId": "u", "event": "E", "messageId": "now"})
    drain()
    assert _where("now") == partition_name(date.today().replace(day=1))


def test_upkeep_adopts_old_months_from_the_default_partition_and_is_idempotent(post_collect, drain):
    post_collect("batch", {"batch": [
        {"type": "track", "userId": "u", "event": "E", "messageId": "2019-a", "timestamp": "2019-03-05T10:00:00Z"},
        {"type": "track", "userId": "u", "event": "E", "messageId": "2019-b", "timestamp": "2019-03-31T23:59:59Z"},
        {"type": "track", "userId": "u", "event": "E", "messageId": "2019-c", "timestamp": "2019-04-01T00:00:00Z"},
    ]})
    assert drain() == 3
    assert _rows_in(DEFAULT_PARTITION) == ["2019-a", "2019-b", "2019-c"]

    today = date(2031, 6, 17)
    created = event_partitions_maintain(today=today)

    assert created == [partition_name(date(2019, 3, 1)), partition_name(date(2019, 4, 1)),
                       partition_name(date(2031, 6, 1)), partition_name(date(2031, 7, 1)),
                       partition_name(date(2031, 8, 1))]
    assert _rows_in(DEFAULT_PARTITION) == []
    assert _rows_in(partition_name(date(2019, 3, 1))) == ["2019-a", "2019-b"]
    assert _rows_in(partition_name(date(2019, 4, 1))) == ["2019-c"]
    # Still one table to every reader, indexes included: the profile timeline finds them.
    assert list(Event.objects.filter(profile__isnull=False).order_by("-timestamp")
                .values_list("message_id", flat=True)) == ["2019-c", "2019-b", "2019-a"]
    assert event_partitions_maintain(today=today) == []
    months = [p.month for p in event_partitions_list()]
    assert months == sorted(months) and date(2031, 8, 1) in months


def test_the_scheduled_task_creates_the_coming_months():
    in_two_months = add_months(date.today().replace(day=1), 2)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {partition_name(in_two_months)}")

    assert maintain_event_partitions() == [partition_name(in_two_months)]
    assert maintain_event_partitions() == []
    assert in_two_months in {p.month for p in event_partitions_list()}


def test_add_months_crosses_years():
    assert add_months(date(2026, 11, 1), 2) == date(2027, 1, 1)
    assert add_months(date(2026, 1, 1), -1) == date(2025, 12, 1)
