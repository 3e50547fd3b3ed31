"""Computed traits: recency, frequency, monetary value and engagement, from real ingested events."""
from datetime import timedelta

import pytest
from django.utils import timezone

from profiles.models import Profile
from profiles.services.enrichment import profiles_enrich
from profiles.tasks import enrich_all

pytestmark = pytest.mark.django_db


def iso(days_ago):
    return (timezone.now() - timedelta(days=days_ago)).isoformat()


def test_rfm_and_engagement(post_collect, drain):
    post_collect("track", {"userId": "buyer", "event": "Order Completed", "properties": {"revenue": 30.5},
                           "timestamp": iso(40)})
    post_collect("track", {"userId": "buyer", "event": "Order Completed", "properties": {"total": 9.5},
                           "timestamp": iso(3)})
    post_collect("track", {"userId": "buyer", "event": "Order Completed", "properties": {"revenue": "bad"},
                           "timestamp": iso(2)})
    post_collect("page", {"userId": "buyer", "timestamp": iso(1)})
    post_collect("page", {"userId": "browser", "timestamp": iso(10)})
    drain()
    assert enrich_all() == 2
    buyer = Profile.objects.get(identifiers__value="buyer").computed
    assert (buyer["recency_days"], buyer["frequency_orders"], buyer["monetary_value"]) == (1, 3, 40)
    assert buyer["engagement_score"] == 35  # round(25 * ln(1 + 3 recent events))
    browser = Profile.objects.get(identifiers__value="browser").computed
    assert (browser["recency_days"], browser["frequency_orders"], browser["monetary_value"]) == (10, 0, 0)
    assert browser["engagement_score"] == 17


def test_enrichment_can_target_profiles(post_collect, drain):
    post_collect("page", {"userId": "a"})
    post_collect("page", {"userId": "b"})
    drain()
    a = Profile.objects.get(identifiers__value="a")
    assert profiles_enrich(profile_ids=[a.pk]) == 1
    assert Profile.objects.get(identifiers__value="b").computed == {}


def test_process_pending_task_twice_is_harmless(post_collect):
    from cdp.tasks import process_pending

    post_collect("identify", {"userId": "t", "anonymousId": "x", "messageId": "1"})
    # The accept queued a drain after commit; here the task body runs in this process, twice.
    assert process_pending() == 1
    assert process_pending() == 0  # nothing left: the second run changes nothing
    assert Profile.objects.get().event_count == 1
