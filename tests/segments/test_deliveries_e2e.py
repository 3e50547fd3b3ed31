"""Segment webhooks through a real Celery worker: queued after the recompute's commit, sent, failed, retried by the
periodic deliver_due once its backoff has passed, delivered; the receiver verifies every request."""
import time

import pytest
from django.db import transaction
from django.utils import timezone

from segments.models import Delivery
from segments.services.deliveries import deliveries_enqueue
from segments.tasks import deliver_due
from segments.webhooks import verify
from tests.segments.conftest import SECRET


@pytest.mark.django_db(transaction=True)
def test_a_worker_sends_retries_after_the_backoff_and_delivers(subprocess_env, start_celery_worker, segment,
                                                               make_profiles, receiver, wait_until):
    import redis

    [ann] = make_profiles("ann")
    redis.Redis.from_url(subprocess_env["REDIS_URL"]).flushdb()
    subprocess_env["DELIVERY_RETRY_BASE_SECONDS"] = "1"  # the worker's backoff: 1 to 1.25 s after the first failure
    start_celery_worker()
    receiver.answer(500)

    with transaction.atomic():  # as the recompute calls it, inside its transaction
        deliveries_enqueue(segment_id=segment.pk, entered=[ann], exited=[], occurred_at=timezone.now())
        assert receiver.received == []

    def failed_once():
        delivery = Delivery.objects.get()
        return delivery if delivery.status == "retrying" else None
    failed = wait_until(failed_once, seconds=60, what="the first try")
    assert (failed.attempts, failed.last_error) == (1, "HTTP 500 Internal Server Error")

    def delivered():
        deliver_due.delay()  # what the beat does every 30 s
        time.sleep(0.5)
        return Delivery.objects.get().status == "delivered"
    wait_until(delivered, seconds=60, what="the retry")

    delivery = Delivery.objects.get()
    assert (delivery.attempts, delivery.last_error) == (2, "")
    assert list(delivery.attempt_rows.order_by("at").values_list("status_code", flat=True)) == [500, 200]
    assert len(receiver.received) == 2
    assert [verify(SECRET, r.headers["x-cdp-timestamp"], r.headers["x-cdp-signature"], r.body)
            for r in receiver.received] == [True, True]
    assert {r.headers["x-cdp-delivery"] for r in receiver.received} == {str(delivery.delivery_id)}
    assert receiver.received[0].body == receiver.received[1].body
    # The second try waited at least the backoff.
    first, second = delivery.attempt_rows.order_by("at").values_list("at", flat=True)
    assert (second - first).total_seconds() >= 1
