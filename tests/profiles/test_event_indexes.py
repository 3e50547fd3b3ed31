"""Events set aside without a profile are found by partial indexes on every partition, not by a scan of them all."""
from datetime import date

import orjson
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from profiles.services.erasure import set_aside_events_discard
from profiles.models import Event
from profiles.services.partitions import EVENTS, event_partitions_ensure, partition_name

pytestmark = pytest.mark.django_db

SET_ASIDE = {"event_set_aside_user": "user_id", "event_set_aside_anonymous": "anonymous_id"}


def _partitions() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = %s::regclass", [EVENTS])
        return {row[0] for row in cursor.fetchall()}


def _attached(index: str) -> dict[str, str]:
    """Each partition's index attached to the parent's `index`, by partition: its definition."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT x.indrelid::regclass::text, pg_get_indexdef(x.indexrelid) FROM pg_inherits i "
            "JOIN pg_index x ON x.indexrelid = i.inhrelid WHERE i.inhparent = %s::regclass", [index])
        return dict(cursor.fetchall())


def test_every_partition_has_the_set_aside_indexes_also_one_created_later():
    later = partition_name(date(2040, 2, 1))
    assert event_partitions_ensure(months=[date(2040, 2, 1)]) == [later]

    partitions = _partitions()
    assert later in partitions and f"{EVENTS}_default" in partitions
    for index, column in SET_ASIDE.items():
        attached = _attached(index)
        assert set(attached) == partitions
        assert all(d.endswith(f"USING btree ({column}) WHERE (profile_id IS NULL)") for d in attached.values())
        with connection.cursor() as cursor:
            cursor.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", [index])
            assert cursor.fetchone() == (True,)


def _plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def test_the_erasure_finds_set_aside_events_through_the_indexes_not_a_scan(source):
    # A month of events of 10,000 people, all on profiles, and three set aside without one.
    now = timezone.now()
    month = partition_name(now.date().replace(day=1))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {EVENTS} (id, source_id, message_id, type, event, user_id, anonymous_id, timestamp, "
            "received_at, payload, profile_id, processed_at) "
            "SELECT g, %s, 'm' || g, 'track', 'Viewed', 'u' || (g %% 10000), 'a' || g, %s, %s, '{}', "
            "1 + g %% 10000, %s FROM generate_series(1, 100000) AS g", [source.pk, now, now, now])
    for i, (user_id, anonymous_id) in enumerate([("zoe", ""), ("", "zoe-phone"), ("max", "max-laptop")]):
        Event.objects.create(id=10**9 + i, source=source, message_id=f"aside-{i}", type="track", user_id=user_id,
                             anonymous_id=anonymous_id, timestamp=now, received_at=now, processed_at=now,
                             error="DataError", payload={})
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {EVENTS}")

    with CaptureQueriesContext(connection) as captured:
        deleted = set_aside_events_discard(identifiers=[("user_id", "zoe"), ("anonymous_id", "zoe-phone"),
                                                        ("email", "zoe@example.org")])

    assert deleted == 2
    assert list(Event.objects.filter(profile__isnull=True).values_list("message_id", flat=True)) == ["aside-2"]
    assert Event.objects.filter(profile__isnull=False).count() == 100_000
    [query] = captured.captured_queries
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + query["sql"])
        explained = cursor.fetchone()[0]
    plan = (orjson.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]
    nodes = list(_plan_nodes(plan))
    on_month = [n for n in nodes if n.get("Relation Name") == month]
    assert on_month and all(n["Node Type"] != "Seq Scan" for n in on_month), query["sql"]
    # Without the partial indexes the planner reads every event without a profile, everyone's, through the
    # NULL entries of the timeline index (profile_id, timestamp, id) and filters them: this tells the two apart.
    used = {n["Index Name"] for n in nodes if n.get("Index Name", "").startswith(month)}
    assert used and used <= {f"{month}_set_aside_user", f"{month}_set_aside_anonymous"}
