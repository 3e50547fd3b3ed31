"""Retention: per-type periods and a default; months nobody keeps are dropped as whole partitions."""
from datetime import date, datetime, timedelta, timezone

import pytest

from consent.models import AuditEntry, RetentionRule
from consent.services.retention import retention_purge
from profiles.models import Event
from profiles.services.partitions import event_partitions_list, event_partitions_maintain, partition_name

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)


def ago(days: int) -> str:
    return (NOW - timedelta(days=days)).isoformat()


@pytest.fixture
def history(post_collect, drain):
    post_collect("batch", {"batch": [
        {"type": "page", "userId": "u", "name": "Old page", "messageId": "page-60", "timestamp": ago(60)},
        {"type": "page", "userId": "u", "name": "New page", "messageId": "page-10", "timestamp": ago(10)},
        {"type": "identify", "userId": "u", "messageId": "identify-400", "timestamp": ago(400)},
        {"type": "identify", "userId": "u", "messageId": "identify-100", "timestamp": ago(100)},
        {"type": "track", "userId": "u", "event": "E", "messageId": "track-400", "timestamp": ago(400)},
    ]})
    drain()
    event_partitions_maintain(today=NOW.date())  # old months get partitions of their own


def kept() -> list[str]:
    return sorted(Event.objects.values_list("message_id", flat=True))


def test_each_type_keeps_its_own_period_and_the_rest_the_default(history):
    RetentionRule.objects.filter(event_type="*").update(days=365)
    RetentionRule.objects.create(event_type="page", days=30)
    RetentionRule.objects.create(event_type="track", days=3000)

    result = retention_purge(now=NOW)

    assert kept() == ["identify-100", "page-10", "track-400"]
    assert result == {"partitions_dropped": [], "events_deleted": {"page": 1, "track": 0, "*": 1}}
    assert AuditEntry.objects.get(action="retention.purge").details == result
    assert retention_purge(now=NOW)["events_deleted"] == {"page": 0, "track": 0, "*": 0}


def test_a_month_every_rule_has_expired_is_dropped_as_a_partition(history):
    RetentionRule.objects.filter(event_type="*").update(days=365)
    old_month = date(2025, 10, 1)  # 400 days before NOW
    assert old_month in {p.month for p in event_partitions_list()}

    result = retention_purge(now=NOW)

    assert partition_name(old_month) in result["partitions_dropped"]
    assert old_month not in {p.month for p in event_partitions_list()}
    assert kept() == ["identify-100", "page-10", "page-60"]


def test_without_a_default_rule_no_month_is_dropped_and_other_types_stay(history):
    RetentionRule.objects.filter(event_type="*").delete()
    RetentionRule.objects.create(event_type="track", days=30)

    result = retention_purge(now=NOW)

    assert result["partitions_dropped"] == [] and result["events_deleted"] == {"track": 1}
    assert kept() == ["identify-100", "identify-400", "page-10", "page-60"]
