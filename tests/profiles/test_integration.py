"""Across process boundaries: the official Segment client against gunicorn, a real Celery worker on Redis,
and two worker processes racing on shared identifiers."""
import subprocess
import sys

import pytest

from profiles.models import Event, Identifier, PendingEvent, Profile, Source


def live_profiles():
    return Profile.objects.filter(merged_into__isnull=True)


@pytest.mark.django_db(transaction=True)
def test_segment_python_client_through_gunicorn_and_celery(gunicorn_server, celery_worker_process, wait_until):
    import segment.analytics as analytics

    source = Source.objects.create(name="backend")
    analytics.write_key = source.write_key
    analytics.host = gunicorn_server
    analytics.sync_mode = True
    errors = []
    analytics.on_error = lambda error, items: errors.append(error)
    analytics.track(anonymous_id="anon-77", event="Product Viewed", properties={"sku": "A1"})
    analytics.identify(user_id="user-77", traits={"email": "Seven@Example.com", "name": "Seven"},
                       anonymous_id="anon-78")
    analytics.alias(previous_id="anon-77", user_id="user-77")
    analytics.flush()
    assert errors == []

    wait_until(lambda: Event.objects.count() == 3 and not PendingEvent.objects.exists(),
               seconds=30, what="the worker to process the events")
    profile = live_profiles().get()
    assert profile.traits == {"email": "Seven@Example.com", "name": "Seven"}
    assert set(profile.identifiers.values_list("type", "value")) == {
        ("anonymous_id", "anon-77"), ("anonymous_id", "anon-78"), ("user_id", "user-77"),
        ("email", "seven@example.com")}
    assert profile.event_count == 3


@pytest.mark.django_db(transaction=True)
def test_rudderstack_client_gzip_batches_are_accepted(gunicorn_server, subprocess_env):
    import rudderstack.analytics as rudder

    source = Source.objects.create(name="rudder")
    rudder.write_key = source.write_key
    rudder.dataPlaneUrl = gunicorn_server
    rudder.sync_mode = True
    errors = []
    rudder.on_error = lambda error, items: errors.append(error)
    rudder.identify(user_id="r1", traits={"email": "r1@example.com"})
    rudder.track(user_id="r1", event="Signed Up")
    rudder.flush()
    assert errors == []
    assert sorted(PendingEvent.objects.values_list("type", flat=True)) == ["identify", "track"]


@pytest.mark.django_db(transaction=True)
def test_two_worker_processes_make_one_profile_per_person(subprocess_env, client):
    from profiles.services.ingest import events_accept

    source = Source.objects.create(name="race")
    people = 150
    messages = []
    # Each person shows up on three devices and an email, spread so that neighbouring batches share people.
    for round_ in range(3):
        for p in range(people):
            messages.append({"type": "track", "anonymousId": f"p{p}-d{round_}", "event": "Viewed",
                             "messageId": f"{p}-{round_}-t"})
            messages.append({"type": "identify", "anonymousId": f"p{p}-d{round_}",
                             "traits": {"email": f"person{p}@example.com"}, "messageId": f"{p}-{round_}-i"})
    for start in range(0, len(messages), 500):
        events_accept(source=source, messages=messages[start:start + 500])
    assert PendingEvent.objects.count() == len(messages)

    command = [sys.executable, "manage.py", "process_events", "--batch-size", "7"]
    workers = [subprocess.Popen(command, env=subprocess_env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0]
    processed = [int(out.split()[1]) for out in outputs]
    assert sum(processed) == len(messages) and all(processed), processed

    assert live_profiles().count() == people
    assert Identifier.objects.filter(type="email").count() == people
    for email_profile, count in Identifier.objects.values_list("profile_id").annotate(
            n=__import__("django.db.models", fromlist=["Count"]).Count("id")):
        assert count == 4  # three devices and one email
    assert not Identifier.objects.filter(profile__merged_into__isnull=False).exists()
    assert Event.objects.filter(profile__merged_into__isnull=False).count() == 0
    assert sum(live_profiles().values_list("event_count", flat=True)) == len(messages)


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_batch_loses_nothing(subprocess_env):
    from profiles.services.ingest import events_accept

    source = Source.objects.create(name="crash")
    events_accept(source=source, messages=[{"type": "identify", "userId": f"u{i}", "anonymousId": f"a{i}",
                                            "messageId": str(i)} for i in range(300)])
    # The worker takes the lock, resolves the batch, then dies before it commits.
    code = ("import django, os; django.setup(); from django.db import transaction; "
            "from cdp.pipeline import pipeline_process_batch\n"
            "with transaction.atomic():\n    pipeline_process_batch()\n    os._exit(9)")
    crashed = subprocess.run([sys.executable, "-c", code], env={**subprocess_env,
                             "DJANGO_SETTINGS_MODULE": "cdp.settings"})
    assert crashed.returncode == 9
    assert PendingEvent.objects.count() == 300 and Profile.objects.count() == 0
    subprocess.run([sys.executable, "manage.py", "process_events"], env=subprocess_env, check=True)
    assert live_profiles().count() == 300
    assert not PendingEvent.objects.exists() and Event.objects.count() == 300


@pytest.mark.django_db(transaction=True)
def test_a_merge_committed_by_another_process_between_lookup_and_lock_is_followed(subprocess_env, monkeypatch):
    """Worker A finds anonymous id a3 on profile Q; before A locks Q, another process merges Q into P (through
    a1 and a2, which are not A's identifiers, so it does not wait for A). A must follow a3 to P."""
    from cdp.pipeline import pipeline_process_batch
    from profiles.services import identity
    from profiles.services.ingest import events_accept

    source = Source.objects.create(name="interleave")
    keys = [("anonymous_id", "a1"), ("anonymous_id", "a2"), ("anonymous_id", "a3")]
    assert len({identity._bucket(k) for k in keys}) == 3  # the other process must not wait for A's lock
    events_accept(source=source, messages=[{"type": "track", "anonymousId": "a1", "event": "E", "messageId": "p"}])
    pipeline_process_batch()
    events_accept(source=source, messages=[
        {"type": "track", "anonymousId": "a2", "event": "E", "messageId": "q",
         "context": {"externalIds": [{"type": "anonymous_id", "id": "a3"}]}}])
    pipeline_process_batch()
    older, newer = Profile.objects.order_by("id")
    events_accept(source=source, messages=[
        {"type": "track", "anonymousId": "a3", "event": "A", "messageId": "a"},
        {"type": "track", "anonymousId": "a1", "event": "B", "messageId": "b",
         "context": {"externalIds": [{"type": "anonymous_id", "id": "a2"}]}}])

    real_lookup = identity._lookup
    merged_meanwhile = []

    def lookup_then_let_the_other_process_merge(found_keys):
        owned = real_lookup(found_keys)
        if not merged_meanwhile:
            assert owned[("anonymous_id", "a3")][1] == newer.id
            run = subprocess.run([sys.executable, "manage.py", "process_events"], env=subprocess_env,
                                 capture_output=True, text=True, timeout=120)
            merged_meanwhile.append(run.stdout)
        return owned

    monkeypatch.setattr(identity, "_lookup", lookup_then_let_the_other_process_merge)
    assert pipeline_process_batch(batch_size=1) == 1

    assert merged_meanwhile == ["processed 1 events\n"]
    newer.refresh_from_db()
    assert newer.merged_into_id == older.id
    assert Event.objects.get(message_id="a").profile_id == older.id
    assert live_profiles().get().event_count == 4
    assert not Identifier.objects.exclude(profile_id=older.id).exists()


@pytest.mark.django_db(transaction=True)
def test_a_new_worker_resumes_the_queue_within_seconds_after_kill_9(subprocess_env, start_celery_worker,
                                                                     wait_until):
    """The only worker is killed mid-drain (its drain is stuck in the broker until the visibility timeout);
    a new worker processes every accepted event exactly once without beat's sweep."""
    import signal

    import redis

    from profiles.services.ingest import events_accept

    redis.Redis.from_url(subprocess_env["REDIS_URL"]).flushdb()
    source = Source.objects.create(name="killed")
    total = 40_000
    for start in range(0, total, 1000):
        events_accept(source=source, messages=[{"type": "track", "userId": f"u{i % 500}", "event": "Seen",
                                                "messageId": str(i)} for i in range(start, start + 1000)])
    first = start_celery_worker()
    wait_until(lambda: 0 < Event.objects.count() < total, seconds=60, what="the first worker to be mid-drain")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    left = PendingEvent.objects.count()
    assert left > 0

    start_celery_worker()

    wait_until(lambda: not PendingEvent.objects.exists(), seconds=20, what="the new worker to drain the queue")
    assert Event.objects.count() == total
    assert sum(live_profiles().values_list("event_count", flat=True)) == total
    assert live_profiles().count() == 500
