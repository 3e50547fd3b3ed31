"""Segment webhooks: the set-based enqueue and its body, signed sending to a real HTTP receiver, retries with
backoff on a fixed clock, the dead letter and resending, consent at enqueue and at send time, erasure."""
import math
import threading
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from consent.models import ConsentSource
from consent.registry import handlers
from consent.services.erasure import privacy_erase_step
from consent.services.ledger import ConsentChoice, consent_record
from consent.services.privacy import privacy_request_create, privacy_request_execute, privacy_request_verify
from profiles.models import Identifier, Profile
from segments.models import Delivery, DeliveryAttempt, Destination, Segment
from segments.services.deliveries import (RETRY_CAP_S, TASK_BATCH, deliveries_enqueue, deliveries_send,
                                          deliveries_send_due, delivery_data_export, delivery_resend, retry_delay)
from segments.webhooks import verify
from tests.segments.conftest import SECRET

OCCURRED = datetime(2025, 3, 1, 12, 30, 15, 250000, tzinfo=dt_timezone.utc)


def later(minutes: int = 1) -> datetime:
    """A fixed clock after the deliveries were created (they are due from their creation)."""
    return timezone.now() + timedelta(minutes=minutes)


def opt_out(profile_id: int) -> None:
    consent_record(choices=[ConsentChoice(profile_id=profile_id, purpose="sale_sharing", granted=False,
                                          source=ConsentSource.API, recorded_at=timezone.now())])


def enqueue(segment, entered=(), exited=()) -> list[Delivery]:
    deliveries_enqueue(segment_id=segment.pk, entered=list(entered), exited=list(exited), occurred_at=OCCURRED)
    return list(Delivery.objects.order_by("id"))


def verified(request, at: datetime) -> bool:
    return verify(SECRET, request.headers["x-cdp-timestamp"], request.headers["x-cdp-signature"], request.body,
                  now=at.timestamp())


# --- enqueue ----------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_enqueue_creates_one_delivery_per_active_destination_and_person_with_the_body_as_snapshot(
        segment, make_profiles, post_collect, drain, django_capture_on_commit_callbacks):
    ann, bob = make_profiles("ann", "bob")
    # Ann gets a second, later email: the body names her earliest one.
    post_collect("identify", {"userId": "ann", "messageId": "ann-2", "traits": {"email": "ann.new@example.com"}})
    drain()
    second = Destination.objects.create(name="ads", url="http://127.0.0.1:9/x", secret="another-secret-value")
    paused = Destination.objects.create(name="paused", url="http://127.0.0.1:9/y", secret="s" * 16, active=False)
    segment.destinations.add(second, paused)
    Segment.objects.create(key="other", name="Other").destinations.add(second)

    with django_capture_on_commit_callbacks() as queued:
        created = deliveries_enqueue(segment_id=segment.pk, entered=[ann], exited=[bob], occurred_at=OCCURRED)

    rows = list(Delivery.objects.order_by("destination_id", "profile_id"))
    assert created == 4
    assert [(d.destination.name, d.profile_id, d.type, d.status, d.attempts) for d in rows] == [
        ("crm", ann, "segment.entered", "pending", 0), ("crm", bob, "segment.exited", "pending", 0),
        ("ads", ann, "segment.entered", "pending", 0), ("ads", bob, "segment.exited", "pending", 0)]
    assert Identifier.objects.filter(profile_id=ann, type="email").count() == 2
    first = rows[0]
    assert first.payload == {
        "type": "segment.entered", "delivery_id": str(first.delivery_id), "occurred_at": "2025-03-01T12:30:15.250000Z",
        "segment": {"id": segment.pk, "key": "vip"},
        "profile": {"id": ann, "user_id": "ann", "email": "ann@example.com",
                    "traits": Profile.objects.get(pk=ann).traits}}
    assert first.payload["profile"]["traits"] == {"country": "US", "email": "ann.new@example.com"}
    assert rows[1].payload["type"] == "segment.exited" and rows[1].payload["profile"]["user_id"] == "bob"
    assert len({d.delivery_id for d in rows}) == 4
    assert all(d.occurred_at == OCCURRED and d.next_attempt_at == d.created_at for d in rows)
    assert len(queued) == 1  # one task for the batch


@pytest.mark.django_db
def test_a_profile_without_user_id_or_email_is_sent_with_nulls(segment, post_collect, drain):
    post_collect("identify", {"anonymousId": "anon-7", "messageId": "a7", "traits": {"country": "US", "plan": "pro"}})
    drain()
    anon = Identifier.objects.get(type="anonymous_id", value="anon-7").profile_id
    [delivery] = enqueue(segment, entered=[anon])
    assert delivery.payload["profile"] == {"id": anon, "user_id": None, "email": None,
                                           "traits": {"country": "US", "plan": "pro"}}


@pytest.mark.django_db
def test_enqueue_costs_the_same_few_queries_for_1_and_for_50_people_and_queues_one_task_per_batch(
        segment, make_profiles, django_capture_on_commit_callbacks):
    segment.destinations.add(Destination.objects.create(name="ads", url="http://127.0.0.1:9/", secret="x" * 16))
    people = make_profiles(*[f"p{i}" for i in range(51)])
    counts = []
    for entered in ([people[0]], people[1:]):
        with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks() as queued:
            created = deliveries_enqueue(segment_id=segment.pk, entered=entered, exited=[], occurred_at=OCCURRED)
        counts.append((len(queries), created, len(queued)))
    # The purpose's rule, then one INSERT ... SELECT: whatever the number of people.
    assert counts == [(2, 2, 1), (2, 100, math.ceil(100 / TASK_BATCH))]
    assert Delivery.objects.count() == 102


@pytest.mark.django_db
def test_enqueue_queues_the_sending_on_the_webhooks_queue_after_commit(segment, make_profiles,
                                                                       django_capture_on_commit_callbacks):
    broker = redis.Redis.from_url(django_settings.REDIS_URL)
    people = make_profiles(*[f"q{i}" for i in range(TASK_BATCH + 1)])
    broker.flushdb()
    with django_capture_on_commit_callbacks(execute=False) as queued:
        deliveries_enqueue(segment_id=segment.pk, entered=people, exited=[], occurred_at=OCCURRED)
    assert broker.llen("webhooks") == 0  # nothing before the commit
    for callback in queued:
        callback()
    assert broker.llen("webhooks") == 2


@pytest.mark.django_db
def test_nothing_is_created_for_no_moves_or_no_active_destination(segment, make_profiles):
    [ann] = make_profiles("ann")
    assert deliveries_enqueue(segment_id=segment.pk, entered=[], exited=[], occurred_at=OCCURRED) == 0
    Destination.objects.update(active=False)
    assert deliveries_enqueue(segment_id=segment.pk, entered=[ann], exited=[], occurred_at=OCCURRED) == 0
    assert not Delivery.objects.exists()


# --- consent ----------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_person_who_may_not_be_shared_is_never_sent(segment, make_profiles, receiver):
    ann, bob, cat = make_profiles("ann", "bob", "cat")
    [eve] = make_profiles("eve", traits={"country": "DE"})  # GDPR: sharing needs a grant, and there is none
    opt_out(cat)  # before the enqueue: no delivery at all
    deliveries = enqueue(segment, entered=[ann, bob, cat, eve])
    assert [d.profile_id for d in deliveries] == [ann, bob]
    opt_out(bob)  # after the enqueue: skipped at send time

    assert deliveries_send(delivery_ids=[d.pk for d in deliveries], now=later()) == {"delivered": 1, "skipped": 1}

    assert [r.json["profile"]["user_id"] for r in receiver.received] == ["ann"]
    skipped = Delivery.objects.get(profile_id=bob)
    assert (skipped.status, skipped.attempts, skipped.next_attempt_at) == ("skipped", 0, None)
    assert not skipped.attempt_rows.exists()
    # Resent, it is checked again: still not sent.
    delivery_resend(delivery_id=skipped.pk)
    assert deliveries_send(delivery_ids=[skipped.pk], now=later(2)) == {"skipped": 1}
    assert len(receiver.received) == 1


@pytest.mark.django_db
def test_a_merged_person_is_checked_through_the_profile_it_was_merged_into(segment, post_collect, drain, receiver):
    post_collect("identify", {"anonymousId": "dev-1", "messageId": "m1", "traits": {"country": "US"}})
    post_collect("identify", {"userId": "zed", "messageId": "m2", "traits": {"country": "US"}})
    drain()
    both = [Identifier.objects.get(value=v).profile_id for v in ("dev-1", "zed")]
    deliveries = enqueue(segment, entered=both)
    post_collect("identify", {"userId": "zed", "anonymousId": "dev-1", "messageId": "m3"})
    drain()
    merged = Profile.objects.get(pk__in=both, merged_into__isnull=False)
    # Emptied by the merge, the tombstone alone would fall under the default regime (GDPR: no sharing without a
    # grant); its survivor is a US profile, which allows it.
    assert (merged.regime, django_settings.CONSENT_DEFAULT_REGIME) == ("", "gdpr")
    [delivery] = [d for d in deliveries if d.profile_id == merged.pk]

    assert deliveries_send(delivery_ids=[delivery.pk], now=later()) == {"delivered": 1}
    opt_out(merged.merged_into_id)
    delivery_resend(delivery_id=delivery.pk)
    assert deliveries_send(delivery_ids=[delivery.pk], now=later(2)) == {"skipped": 1}
    assert len(receiver.received) == 1


# --- sending ----------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_delivery_is_sent_signed_once_and_never_again(segment, make_profiles, receiver):
    [ann] = make_profiles("ann")
    [delivery] = enqueue(segment, entered=[ann])
    at = later()

    assert deliveries_send(delivery_ids=[delivery.pk], now=at) == {"delivered": 1}
    assert deliveries_send(delivery_ids=[delivery.pk], now=later(5)) == {}
    assert deliveries_send_due(now=later(5)) == {}

    [request] = receiver.received
    assert request.path == "/hooks"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "cdp-webhooks/1.0"
    assert request.headers["x-cdp-delivery"] == str(delivery.delivery_id)
    assert request.headers["x-cdp-timestamp"] == str(int(at.timestamp()))
    assert verified(request, at)
    assert not verify("not-the-secret-at-all", request.headers["x-cdp-timestamp"],
                      request.headers["x-cdp-signature"], request.body, now=at.timestamp())
    assert request.json == delivery.payload
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.delivered_at, delivery.next_attempt_at,
            delivery.last_error) == ("delivered", 1, at, None, "")
    assert list(delivery.attempt_rows.values_list("at", "status_code", "error")) == [(at, 200, "")]


@pytest.mark.django_db
def test_a_failed_try_is_retried_after_its_backoff_and_not_before(segment, make_profiles, receiver):
    [ann] = make_profiles("ann")
    [delivery] = enqueue(segment, entered=[ann])
    receiver.answer(500)
    t0 = later()

    assert deliveries_send(delivery_ids=[delivery.pk], now=t0) == {"retrying": 1}
    delivery.refresh_from_db()
    wait = retry_delay(attempt=1, key=str(delivery.delivery_id))
    assert 30 <= wait <= 37.5
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at, delivery.last_error) == (
        "retrying", 1, t0 + timedelta(seconds=wait), "HTTP 500 Internal Server Error")

    early = delivery.next_attempt_at - timedelta(microseconds=1)
    assert deliveries_send(delivery_ids=[delivery.pk], now=early) == {}
    assert deliveries_send_due(now=early) == {}
    assert len(receiver.received) == 1

    assert deliveries_send_due(now=delivery.next_attempt_at) == {"delivered": 1}
    first, second = receiver.received
    assert first.body == second.body and first.headers["x-cdp-delivery"] == second.headers["x-cdp-delivery"]
    assert verified(first, t0) and verified(second, delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("delivered", 2, "")
    assert list(delivery.attempt_rows.order_by("at").values_list("status_code", flat=True)) == [500, 200]


def test_the_wait_doubles_per_try_with_up_to_a_quarter_more_and_is_capped(settings):
    settings.DELIVERY_RETRY_BASE_SECONDS = 30
    for key in ("a", "b", "c"):
        for attempt in range(1, 15):
            base = 30 * 2 ** (attempt - 1)
            wait = retry_delay(attempt=attempt, key=key)
            assert min(base, RETRY_CAP_S) <= wait <= min(base * 1.25, RETRY_CAP_S), (key, attempt, wait)
            assert wait == retry_delay(attempt=attempt, key=key)
    assert retry_delay(attempt=20, key="a") == RETRY_CAP_S
    # Deliveries that failed together spread out.
    assert len({retry_delay(attempt=1, key=f"d{i}") for i in range(20)}) == 20


@pytest.mark.django_db
@pytest.mark.parametrize("code, status", [(400, "dead"), (404, "dead"), (410, "dead"), (408, "retrying"),
                                          (429, "retrying"), (503, "retrying"), (302, "retrying")])
def test_a_4xx_is_never_retried_except_408_and_429(segment, make_profiles, receiver, code, status):
    [ann] = make_profiles("ann")
    [delivery] = enqueue(segment, entered=[ann])
    receiver.answer(code)
    deliveries_send(delivery_ids=[delivery.pk], now=later())
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at is None) == (status, 1, status == "dead")
    assert len(receiver.received) == 1


@pytest.mark.django_db
def test_retry_after_lengthens_the_wait(segment, make_profiles, receiver):
    [ann] = make_profiles("ann")
    [delivery] = enqueue(segment, entered=[ann])
    receiver.answer((429, {"Retry-After": "600"}))
    t0 = later()
    deliveries_send(delivery_ids=[delivery.pk], now=t0)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.next_attempt_at) == ("retrying", t0 + timedelta(seconds=600))


@pytest.mark.django_db
def test_a_receiver_that_cannot_be_reached_is_retried(segment, make_profiles, receiver):
    [ann] = make_profiles("ann")
    port = receiver.server.server_address[1]
    receiver.stop()  # nothing listens on the port any more
    [delivery] = enqueue(segment, entered=[ann])
    deliveries_send(delivery_ids=[delivery.pk], now=later())
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("retrying", 1)
    assert delivery.last_error.startswith("ConnectionError: ") and str(port) in delivery.last_error
    [attempt] = delivery.attempt_rows.all()
    assert (attempt.status_code, attempt.error) == (None, delivery.last_error)


@pytest.mark.django_db
def test_the_last_failed_try_makes_a_dead_letter_which_a_resend_delivers_as_it_was(
        segment, make_profiles, receiver, settings, django_capture_on_commit_callbacks):
    settings.DELIVERY_MAX_ATTEMPTS = 3
    [ann] = make_profiles("ann")
    [delivery] = enqueue(segment, entered=[ann])
    receiver.answer(500, 502, 500)
    at = later()
    for _ in range(3):
        deliveries_send_due(now=at)
        delivery.refresh_from_db()
        at = delivery.next_attempt_at or at
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at, delivery.last_error) == (
        "dead", 3, None, "HTTP 500 Internal Server Error")
    assert deliveries_send_due(now=later(24 * 60)) == {}
    assert len(receiver.received) == 3

    with django_capture_on_commit_callbacks() as queued:
        resent = delivery_resend(delivery_id=delivery.pk)
    assert (resent.status, resent.attempts, resent.last_error, resent.delivery_id) == (
        "pending", 0, "", delivery.delivery_id)
    assert len(queued) == 1
    assert deliveries_send(delivery_ids=[delivery.pk], now=later(2)) == {"delivered": 1}
    assert len({r.body for r in receiver.received}) == 1
    assert {r.headers["x-cdp-delivery"] for r in receiver.received} == {str(delivery.delivery_id)}
    assert delivery.attempt_rows.count() == 4
    # A delivered one may be resent too; one still pending may not.
    delivery_resend(delivery_id=delivery.pk)
    from segments.services.deliveries import DeliveryStateError
    with pytest.raises(DeliveryStateError):
        delivery_resend(delivery_id=delivery.pk)


@pytest.mark.django_db
def test_deliver_due_sends_only_what_is_due(segment, make_profiles, receiver):
    ann, bob, cat = make_profiles("ann", "bob", "cat")
    deliveries = enqueue(segment, entered=[ann, bob, cat])
    t0 = later()
    Delivery.objects.filter(profile_id=bob).update(status="retrying", next_attempt_at=t0 + timedelta(minutes=5))
    Delivery.objects.filter(profile_id=cat).update(status="delivered", next_attempt_at=None)

    assert deliveries_send_due(now=t0) == {"delivered": 1}
    assert deliveries_send_due(now=t0 + timedelta(minutes=5)) == {"delivered": 1}
    assert deliveries_send_due(now=t0 + timedelta(hours=5)) == {}
    assert [r.json["profile"]["user_id"] for r in receiver.received] == ["ann", "bob"]
    assert len(deliveries) == 3


@pytest.mark.django_db
def test_a_destination_made_inactive_gets_nothing_and_its_deliveries_become_dead_letters(segment, make_profiles,
                                                                                       receiver):
    [ann] = make_profiles("ann")
    [delivery] = enqueue(segment, entered=[ann])
    Destination.objects.update(active=False)
    assert deliveries_send(delivery_ids=[delivery.pk], now=later()) == {"dead": 1}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("dead", 0)
    assert "inactive" in delivery.last_error
    assert receiver.received == []


@pytest.mark.django_db(transaction=True)
def test_a_delivery_being_sent_is_not_sent_again_by_another_worker(segment, make_profiles, receiver):
    [ann] = make_profiles("ann")
    [delivery] = enqueue(segment, entered=[ann])
    receiver.hold()  # the first request waits for an answer, holding the delivery's row lock
    outcome = {}

    def first_worker():
        try:
            outcome["first"] = deliveries_send(delivery_ids=[delivery.pk], now=later())
        finally:
            connection.close()

    thread = threading.Thread(target=first_worker)
    thread.start()
    assert receiver.arrived.wait(20)
    assert deliveries_send(delivery_ids=[delivery.pk], now=later()) == {}
    assert deliveries_send_due(now=later()) == {}
    receiver.release()
    thread.join(30)

    assert outcome["first"] == {"delivered": 1}
    assert len(receiver.received) == 1
    assert Delivery.objects.get().status == "delivered"


# --- erasure ----------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_erasure_removes_the_subjects_deliveries_and_their_attempts(segment, make_profiles, receiver):
    ann, bob = make_profiles("ann", "bob")
    enqueue(segment, entered=[ann, bob])
    receiver.answer(500)
    deliveries_send_due(now=later())
    assert DeliveryAttempt.objects.filter(delivery__profile_id=ann).count() == 1
    exported = delivery_data_export(profile_ids=[ann])["segment_deliveries"]
    assert [(d["destination__name"], d["type"], d["payload"]["profile"]["email"]) for d in exported] == [
        ("crm", "segment.entered", "ann@example.com")]
    assert [h.name for h in handlers() if Delivery in h.models and DeliveryAttempt in h.models] == [
        "segment_deliveries"]

    request = privacy_request_create(kind="deletion", regime="ccpa", identifiers=[{"type": "user_id",
                                                                                   "value": "ann"}])
    privacy_request_verify(request_id=request.pk)
    privacy_request_execute(request_id=request.pk)
    while not privacy_erase_step(request_id=request.pk, chunk=1):
        pass

    assert list(Delivery.objects.values_list("payload__profile__user_id", flat=True)) == ["bob"]
    assert not Delivery.objects.filter(payload__profile__email="ann@example.com").exists()
    assert list(DeliveryAttempt.objects.values_list("delivery__profile_id", flat=True)) == [bob]
    request.refresh_from_db()
    assert request.receipt["erased"]["segment_deliveries"] == 1


@pytest.mark.django_db
def test_a_connection_that_reaches_a_private_address_is_refused_whatever_the_name_said(
        segment, make_profiles, receiver, settings):
    # Saved while private networks were allowed, or a public name that now resolves to a private address (DNS
    # rebinding): the address actually connected to is what is checked.
    settings.DESTINATIONS_ALLOW_PRIVATE_NETWORKS = False
    [ann] = make_profiles("ann")
    [delivery] = enqueue(segment, entered=[ann])
    assert deliveries_send(delivery_ids=[delivery.pk], now=later()) == {"retrying": 1}
    delivery.refresh_from_db()
    assert delivery.last_error.startswith("AddressRefused: refused to connect to 127.0.0.1: a loopback address")
    assert not receiver.received
