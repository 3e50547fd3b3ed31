"""Tasks that re-queue themselves do so a bounded number of times per run, and say so when they stop early."""
import logging

import pytest
import redis
from django.conf import settings

from cdp.tasks import MAX_DRAIN_REQUEUES, process_pending
from consent.services.background import MAX_ERASE_REQUEUES, erasure_queue
from profiles.models import PendingEvent


def _queued(queue: str) -> int:
    return redis.Redis.from_url(settings.REDIS_URL).llen(queue)


@pytest.fixture
def empty_broker():
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


def _fill_queue(post_collect, count: int) -> None:
    post_collect("batch", {"batch": [{"type": "track", "userId": f"u{i}", "event": "Seen", "messageId": f"m{i}"}
                                     for i in range(count)]})


@pytest.mark.django_db
def test_a_full_drain_requeues_itself_until_the_bound_then_stops_and_says_so(post_collect, empty_broker, caplog,
                                                                             settings):
    settings.PIPELINE_BATCH_SIZE = 1  # a drain of 50 batches takes 50 events: the queue stays full
    _fill_queue(post_collect, 120)
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # drop the accept's kick: only the drain's own re-queue

    assert process_pending(requeues=0) == 50
    assert _queued("ingest") == 1  # re-queued itself

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    with caplog.at_level(logging.WARNING, logger="cdp.tasks"):
        assert process_pending(requeues=MAX_DRAIN_REQUEUES) == 50
    assert _queued("ingest") == 0
    assert f"stopped after {MAX_DRAIN_REQUEUES} re-queues" in caplog.text
    assert PendingEvent.objects.count() == 20  # left for the periodic sweep


@pytest.mark.django_db
def test_an_erasure_stops_requeueing_past_its_bound(empty_broker, caplog, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        erasure_queue(request_id=7, requeues=MAX_ERASE_REQUEUES)
    assert _queued("privacy") == 1

    with caplog.at_level(logging.WARNING, logger="consent.services.background"), \
            django_capture_on_commit_callbacks(execute=True):
        erasure_queue(request_id=7, requeues=MAX_ERASE_REQUEUES + 1)
    assert _queued("privacy") == 1
    assert "erasure of request 7 stopped" in caplog.text
