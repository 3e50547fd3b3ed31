"""Triggered actions: entering a segment sends the campaign's content to a real HTTP receiver, signed and
templated, at most once per entry, respecting consent, caps, quiet hours in the person's time zone, the segment
still holding them, control and holdout; retried with backoff; never twice when workers race."""
import threading
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.db import connection
from django.utils import timezone

from campaigns import selectors
from campaigns.models import Exposure, TriggeredSend
from campaigns.services import definitions
from campaigns.services.erasure import campaign_data_erase, campaign_data_export
from campaigns import rules
from campaigns.services import triggers
from campaigns.services.triggers import SENDING_LEASE, triggered_sends_due
from consent.services.ledger import ConsentChoice, consent_record
from profiles.models import Identifier
from segments.models import Destination, Segment
from segments.services.definitions import segment_create
from segments.services.deliveries import retry_delay
from segments.webhooks import verify
from tests.segments.conftest import SECRET, Receiver

PAYLOAD = {"to": "{{ profile.email }}", "subject": "{{ content.subject }}",
           "greeting": "Hi {{ profile.traits.first_name }}!", "variant": "{{ variant }}", "id": "{{ send_id }}"}


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def setup(db, receiver):
    """A realtime segment of open carts, an email placement, a destination, and a factory of triggered
    campaigns on them (active, the snapshot reloaded as a new process would)."""
    segment_create(key="open-cart", name="Open cart", mode=Segment.Mode.REALTIME,
                   definition={"trait": "cart", "op": "eq", "value": "open"})
    destination = Destination.objects.create(name="mailer", url=receiver.url, secret=SECRET)
    placement = definitions.placement_save(key="email_cart", name="Cart email", channel="email",
                                           default_content={})

    def triggered(key="cart-reminder", *, control_share=0.0, trigger=None, **fields):
        campaign = definitions.campaign_save(
            key=key, name=key, placements=[placement], control_share=control_share,
            variants=[{"key": "A", "weight": 100, "content": {"subject": "You left something"}}],
            trigger={"segment": "open-cart", "placement": "email_cart", "destination": destination.pk,
                     "payload": PAYLOAD, **(trigger or {})}, **fields)
        definitions.campaign_transition(campaign=campaign, action="activate")
        selectors._local.snapshot = None
        return campaign
    return triggered


@pytest.fixture
def person(post_collect, drain):
    """identify with traits through the pipeline (which moves the realtime segment); returns the profile id."""
    calls = []

    def identify(user_id, consent=True, **traits):
        calls.append(user_id)
        post_collect("identify", {"userId": user_id, "messageId": f"{user_id}-{len(calls)}",
                                  "traits": {"email": f"{user_id}@example.com", "country": "DE", **traits}})
        drain()
        profile_id = Identifier.objects.get(type="user_id", value=user_id).profile_id
        consent_record(choices=[ConsentChoice(profile_id=profile_id, purpose="marketing_email", granted=consent,
                                              source="api", recorded_at=timezone.now())])
        return profile_id
    return identify


def soon(minutes=1):
    return timezone.now() + timedelta(minutes=minutes)


def test_an_entry_sends_the_templated_payload_signed_once_and_records_the_exposure(setup, person, receiver):
    campaign = setup()
    ann = person("ann", cart="open", first_name="Ann")
    send = TriggeredSend.objects.get()
    assert (send.campaign_id, send.profile_id, send.status) == (campaign.pk, ann, "pending")
    at = soon()
    assert triggered_sends_due(now=at) == {"sent": 1}
    [request] = receiver.received
    assert request.json == {"to": "ann@example.com", "subject": "You left something", "greeting": "Hi Ann!",
                            "variant": "A", "id": str(send.send_id)}
    assert request.headers["x-cdp-delivery"] == request.headers["idempotency-key"] == str(send.send_id)
    assert verify(SECRET, request.headers["x-cdp-timestamp"], request.headers["x-cdp-signature"], request.body,
                  now=at.timestamp())
    send.refresh_from_db()
    assert (send.status, send.variant, send.attempts, send.sent_at) == ("sent", "A", 1, at)
    exposure = Exposure.objects.get()
    assert (exposure.decision_id, exposure.campaign_id, exposure.profile_id, exposure.variant,
            exposure.channel) == (send.send_id, campaign.pk, ann, "A", "email")

    # Again, and after the same person is seen again while still in the segment: nothing more is sent.
    assert triggered_sends_due(now=soon(2)) == {}
    person("ann", cart="open", first_name="Ann")
    assert triggered_sends_due(now=soon(3)) == {}
    assert len(receiver.received) == 1 and TriggeredSend.objects.count() == 1


def test_leaving_and_entering_again_is_a_new_entry_and_leaving_before_the_send_cancels_it(setup, person, receiver):
    setup(trigger={"delay": "1h"})
    person("ann", cart="open")
    assert triggered_sends_due(now=soon()) == {}  # not due for an hour
    person("ann", cart="closed")
    assert triggered_sends_due(now=soon(61)) == {"skipped": 1}
    assert TriggeredSend.objects.get().reason == "left_segment" and not receiver.received
    person("ann", cart="open")
    assert TriggeredSend.objects.count() == 2
    assert triggered_sends_due(now=soon(122)) == {"sent": 1}
    assert len(receiver.received) == 1


def test_no_consent_no_send_and_no_exposure(setup, person, receiver):
    setup()
    person("ann", consent=False, cart="open")
    assert triggered_sends_due(now=soon()) == {"skipped": 1}
    assert TriggeredSend.objects.get().reason == "no_consent"
    assert not receiver.received and not Exposure.objects.exists()


def test_quiet_hours_wait_for_the_morning_in_the_persons_time_zone_else_the_setting(setup, person, receiver,
                                                                                      settings):
    settings.CAMPAIGNS_TIME_ZONE = "Europe/Berlin"
    setup(trigger={"quiet_hours": {"start": "21:00", "end": "08:00"}})
    ann = person("ann", cart="open", timezone="America/New_York")
    bob = person("bob", cart="open")  # no time zone: Berlin's
    ada = person("ada", cart="open", timezone="no such zone")  # not a time zone: Berlin's too
    # 04:00 UTC: 23:00 in New York (EST) and 05:00 in Berlin (CET), both quiet.
    night = datetime(2030, 1, 10, 4, 0, tzinfo=dt_timezone.utc)
    assert triggered_sends_due(now=night) == {"pending": 3}
    due = {s.profile_id: s.due_at for s in TriggeredSend.objects.all()}
    assert due[ann] == datetime(2030, 1, 10, 13, 0, tzinfo=dt_timezone.utc)  # 08:00 in New York
    assert due[bob] == due[ada] == datetime(2030, 1, 10, 7, 0, tzinfo=dt_timezone.utc)  # 08:00 in Berlin
    assert not receiver.received
    assert triggered_sends_due(now=datetime(2030, 1, 10, 7, 0, tzinfo=dt_timezone.utc)) == {"sent": 2}
    assert triggered_sends_due(now=datetime(2030, 1, 10, 13, 0, tzinfo=dt_timezone.utc)) == {"sent": 1}
    assert TriggeredSend.objects.filter(status="sent", attempts=1).count() == 3


def test_caps_hold_across_triggered_campaigns_sent_in_one_batch(setup, person, receiver):
    definitions.programme_settings_save(channel_caps={"email": {"count": 1, "per": "week"}})
    setup("first", priority=2)
    setup("second", priority=1)
    person("ann", cart="open")
    assert triggered_sends_due(now=soon()) == {"sent": 1, "skipped": 1}
    assert TriggeredSend.objects.get(status="skipped").reason == "frequency_cap"
    assert len(receiver.received) == 1


def test_control_and_holdout_people_are_recorded_and_sent_nothing(setup, person, receiver):
    campaign = setup(control_share=1.0)
    person("ann", cart="open")
    assert triggered_sends_due(now=soon()) == {"skipped": 1}
    send = TriggeredSend.objects.get()
    assert (send.reason, send.variant) == ("control", "control")
    assert Exposure.objects.get().variant == "control" and Exposure.objects.get().campaign_id == campaign.pk
    definitions.programme_settings_save(holdout_share=1.0)
    selectors._local.snapshot = None
    person("bob", cart="open")
    assert triggered_sends_due(now=soon(2)) == {"skipped": 1}
    assert TriggeredSend.objects.get(reason="global_holdout").variant == "holdout"
    assert Exposure.objects.filter(campaign__isnull=True, variant="holdout").count() == 1
    assert not receiver.received


def test_a_failed_try_is_retried_with_backoff_under_the_same_id_and_a_refusal_is_final(setup, person, receiver):
    setup()
    person("ann", cart="open")
    receiver.answer(503)
    first = soon()
    assert triggered_sends_due(now=first) == {"retrying": 1}
    send = TriggeredSend.objects.get()
    wait = retry_delay(attempt=1, key=str(send.send_id))
    assert send.due_at == first + timedelta(seconds=wait) and send.last_status_code == 503
    assert triggered_sends_due(now=first + timedelta(seconds=wait - 1)) == {}
    assert triggered_sends_due(now=first + timedelta(seconds=wait)) == {"sent": 1}
    assert [r.headers["x-cdp-delivery"] for r in receiver.received] == [str(send.send_id)] * 2
    assert TriggeredSend.objects.get().attempts == 2 and Exposure.objects.count() == 1

    person("bob", cart="open")
    receiver.answer(422)
    assert triggered_sends_due(now=soon(2)) == {"failed": 1}
    # Bob was assigned his variant as the first try was decided: results compare people as assigned, whatever
    # the receiver did with them.
    assert TriggeredSend.objects.get(status="failed").reason == "refused" and Exposure.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_senders_at_once_post_each_send_once_and_an_abandoned_one_is_never_sent(setup, person, receiver,
                                                                                      monkeypatch):
    # One send per claim: the senders take turns on the three sends instead of the first claiming them all.
    monkeypatch.setattr(triggers, "CLAIM_BATCH", 1)
    setup()
    for user in ("ann", "bob", "cy"):
        person(user, cart="open")
    receiver.hold()
    outcomes = []

    def sender():
        try:
            outcomes.append(triggered_sends_due(now=soon()))
        finally:
            connection.close()
    senders = [threading.Thread(target=sender) for _ in range(3)]
    for sender in senders:
        sender.start()
    assert receiver.arrived.wait(10)
    receiver.release()
    for sender in senders:
        sender.join(30)
    assert sum(o.get("sent", 0) for o in outcomes) == 3
    assert sorted(r.json["to"] for r in receiver.received) == ["ann@example.com", "bob@example.com",
                                                               "cy@example.com"]
    # A sender that stopped mid-request left its send in flight: past the lease it is unknown, never resent.
    person("dee", cart="open")
    TriggeredSend.objects.filter(status="pending").update(status="sending",
                                                           claimed_at=timezone.now() - SENDING_LEASE)
    assert triggered_sends_due(now=soon()) == {}
    assert TriggeredSend.objects.get(status="unknown").reason == "sender_stopped"
    assert len(receiver.received) == 3


def test_a_triggered_campaign_answers_no_decision_and_its_definition_is_checked(setup, call, decide, person):
    setup()
    person("ann", cart="open")
    answer = decide({"userId": "ann", "placement": "email_cart"})
    assert answer.json()["reason"] == "no_eligible_campaign"
    body = {"key": "bad", "name": "Bad", "placements": ["email_cart"],
            "variants": [{"key": "A", "weight": 100, "content": {}}]}
    destination = Destination.objects.get().pk
    for trigger, field in [
        ({"segment": "nobody", "placement": "email_cart", "destination": destination}, "trigger.segment"),
        ({"segment": "open-cart", "placement": "elsewhere", "destination": destination}, "trigger.placement"),
        ({"segment": "open-cart", "placement": "email_cart", "destination": 999}, "trigger.destination"),
        ({"segment": "open-cart", "placement": "email_cart", "destination": destination,
          "payload": {"to": "{{ password }}"}}, "trigger.payload.to"),
        ({"segment": "open-cart", "placement": "email_cart", "destination": destination,
          "quiet_hours": {"start": "25:00", "end": "08:00"}}, "trigger.quiet_hours.start"),
        ({"segment": "open-cart", "placement": "email_cart", "destination": destination, "delay": "90d"},
         "trigger.delay"),
    ]:
        refused = call("post", "/api/v1/campaigns/", {**body, "trigger": trigger})
        assert refused.status_code == 400 and refused.json()["field"] == field, (field, refused.json())


def test_erasure_takes_the_sends_and_export_lists_them(setup, person, receiver):
    setup()
    ann = person("ann", cart="open")
    triggered_sends_due(now=soon())
    exported = campaign_data_export(profile_ids=[ann])
    assert [s["status"] for s in exported["campaign_triggered_sends"]] == ["sent"]
    erased = campaign_data_erase(profile_ids=[ann], limit=1000)
    assert erased["campaign_triggered_sends"] == 1 and erased["campaign_exposures"] == 1
    assert not TriggeredSend.objects.exists() and not Exposure.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_sends_on_entry_without_anyone_calling_the_sender(setup, post_collect, receiver,
                                                                          celery_worker_process, wait_until):
    """Collection, the pipeline, the realtime segment, the entry, the send task on the webhooks queue: all in the
    worker, as in production."""
    setup()
    post_collect("identify", {"userId": "ann", "messageId": "ann-1", "context": {"consent": {"categoryPreferences": {
        "Email": True}}}, "traits": {"email": "ann@example.com", "country": "DE", "cart": "open"}})
    wait_until(lambda: receiver.received, seconds=60, what="the triggered send")
    assert receiver.received[0].json["to"] == "ann@example.com"
    wait_until(lambda: TriggeredSend.objects.filter(status="sent").exists(), seconds=30, what="the send's outcome")


def refuse_sharing(profile_id: int) -> None:
    consent_record(choices=[ConsentChoice(profile_id=profile_id, purpose="sale_sharing", granted=False,
                                          source="api", recorded_at=timezone.now())])


def test_a_person_who_refused_sale_or_sharing_is_sent_nothing(setup, person, receiver):
    setup()
    refuse_sharing(person("ann", cart="open"))
    person("bob", cart="open")  # a GDPR person who never chose: sale/sharing is not granted, nor refused
    assert triggered_sends_due(now=soon()) == {"skipped": 1, "sent": 1}
    assert TriggeredSend.objects.get(status="skipped").reason == "no_consent"
    assert [r.json["to"] for r in receiver.received] == ["bob@example.com"]


@pytest.mark.django_db(transaction=True)
def test_consent_is_read_again_just_before_each_post(setup, person, receiver):
    setup()
    person("ann", cart="open")
    bob = person("bob", cart="open")
    receiver.hold()
    outcome = []
    sender = threading.Thread(target=lambda: (outcome.append(triggered_sends_due(now=soon())), connection.close()))
    sender.start()
    # Both were decided together; while Ann's post is under way, Bob objects.
    assert receiver.arrived.wait(10)
    refuse_sharing(bob)
    receiver.release()
    sender.join(30)
    assert outcome == [{"sent": 1, "skipped": 1}]
    assert TriggeredSend.objects.get(profile_id=bob).reason == "no_consent"
    assert [r.json["to"] for r in receiver.received] == ["ann@example.com"]


def test_the_holdout_and_variants_of_triggered_sends_hash_the_persons_user_id_as_decisions_do(
        setup, person, receiver):
    definitions.programme_settings_save(holdout_share=0.5)
    setup(control_share=0.5)
    people = {f"u{n}": person(f"u{n}", cart="open") for n in range(12)}
    triggered_sends_due(now=soon())
    sends = {s.profile_id: s for s in TriggeredSend.objects.all()}
    for user_id, profile_id in people.items():
        unit = rules.allocation_unit(user_id=user_id)
        expected = "holdout" if rules.bucket("holdout", unit) < 0.5 else (
            "control" if rules.bucket(f"campaign:{sends[profile_id].campaign_id}", unit) < 0.5 else "A")
        assert sends[profile_id].variant == expected, user_id
    assert {s.variant for s in sends.values()} == {"holdout", "control", "A"}


def test_a_web_campaign_exclusive_with_a_triggered_one_is_not_shown_to_who_got_that(setup, call, decide, person,
                                                                                      receiver):
    cart = setup()
    ann = person("ann", cart="open")
    consent_record(choices=[ConsentChoice(profile_id=ann, purpose="personalization", granted=True, source="api",
                                          recorded_at=timezone.now())])
    assert call("post", "/api/v1/placements/", {"key": "banner", "channel": "web"}).status_code == 201
    web = call("post", "/api/v1/campaigns/", {
        "key": "web-offer", "name": "Web offer", "placements": ["banner"], "exclusive_with": [cart.key],
        "variants": [{"key": "A", "weight": 100, "content": {}}]})
    assert web.status_code == 201, web.json()
    assert call("post", f"/api/v1/campaigns/{web.json()['id']}/activate/").status_code == 200
    assert decide({"userId": "ann", "placement": "banner"}).json()["reason"] == "matched"
    Exposure.objects.all().delete()
    assert triggered_sends_due(now=soon()) == {"sent": 1}
    assert decide({"userId": "ann", "placement": "banner"}).json()["reason"] == "no_eligible_campaign"


def test_a_send_another_sender_holds_in_flight_counts_for_the_caps(setup, person, receiver):
    definitions.programme_settings_save(channel_caps={"email": {"count": 1, "per": "week"}})
    setup("first")
    setup("second")
    person("ann", cart="open")
    older, newer = TriggeredSend.objects.order_by("id")
    # Another worker claimed the older send a moment ago and has not decided it yet.
    TriggeredSend.objects.filter(pk=older.pk).update(status="sending", claimed_at=timezone.now())
    assert triggered_sends_due(now=soon()) == {"skipped": 1}
    assert TriggeredSend.objects.get(pk=newer.pk).reason == "frequency_cap" and not receiver.received


def test_two_senders_deciding_one_persons_sends_at_once_let_the_older_one_go(setup, person, receiver):
    definitions.programme_settings_save(channel_caps={"email": {"count": 1, "per": "week"}})
    setup("first")
    setup("second")
    person("ann", cart="open")
    at = soon()
    older, newer = selectors.triggered_sends_claimed(send_ids=triggers._claim(at, 20))
    live = selectors.snapshot()
    # Each sender holds one and has not decided it when the other decides.
    (of_newer,), _ = triggers._decide([newer], live, at)
    (of_older,), _ = triggers._decide([older], live, at)
    assert (of_older.status, of_newer.status, of_newer.reason) == ("sending", "skipped", "frequency_cap")


def test_sends_not_posted_when_the_runs_time_is_up_wait_for_the_next_run(setup, person, receiver):
    setup()
    for user in ("ann", "bob", "cy"):
        person(user, cart="open")
    receiver.hold()
    threading.Timer(1.0, receiver.release).start()
    # The first post outlasts the run's budget: the other two are handed back, not left in flight.
    assert triggered_sends_due(now=soon(), budget_s=0.5) == {"sent": 1}
    waiting = TriggeredSend.objects.exclude(status="sent")
    assert [(s.status, s.claimed_at) for s in waiting] == [("pending", None)] * 2
    assert triggered_sends_due(now=soon(2)) == {"sent": 2}
    assert len(receiver.received) == 3 and Exposure.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_sender_that_stalled_past_the_lease_still_records_what_became_of_its_post(setup, person, receiver):
    setup()
    person("ann", cart="open")
    receiver.hold()
    sender = threading.Thread(target=lambda: (triggered_sends_due(now=soon()), connection.close()))
    sender.start()
    assert receiver.arrived.wait(10)
    # Another run, past the lease, gives the send up as unknown while its post is still under way.
    assert triggers._expire_abandoned(timezone.now() + 2 * SENDING_LEASE) == 1
    receiver.release()
    sender.join(30)
    assert TriggeredSend.objects.get().status == "sent" and len(receiver.received) == 1
