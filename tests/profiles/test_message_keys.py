"""The dedupe window: message keys are forgotten after MESSAGE_DEDUPE_DAYS, never while their message is queued."""
from datetime import timedelta

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from profiles.models import Event, Identifier, MergeRecord, MessageKey, PendingEvent, Profile, TraitChange
from profiles.services.ingest import events_accept
from profiles.services.message_keys import message_keys_cutoff, message_keys_prune
from profiles.tasks import prune_message_keys

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def accept(source, *message_ids, received_at):
    messages = [{"type": "track", "anonymousId": f"a-{m}", "event": "E", "messageId": m} for m in message_ids]
    return events_accept(source=source, messages=messages, received_at=received_at)


def keys() -> list[str]:
    return sorted(MessageKey.objects.values_list("message_id", flat=True))


def test_the_window_is_a_week_by_default():
    assert settings.MESSAGE_DEDUPE_DAYS == 7


def test_a_replay_within_the_window_is_a_duplicate_whether_still_queued_or_long_processed(source, drain):
    now = timezone.now()
    accept(source, "processed", received_at=now - 6 * DAY)
    assert drain() == 1
    accept(source, "queued", received_at=now - 6 * DAY)

    pruned = message_keys_prune(now=now)

    assert (pruned.deleted, pruned.done) == (0, True)
    assert keys() == ["processed", "queued"]
    replay = accept(source, "processed", "queued", received_at=now)
    assert (replay.accepted, replay.duplicates) == (0, 2)
    assert list(PendingEvent.objects.values_list("message_id", flat=True)) == ["queued"]
    assert list(Event.objects.values_list("message_id", flat=True)) == ["processed"]


def test_a_key_past_the_window_is_forgotten_and_a_replay_then_is_a_new_message(source, drain):
    now = timezone.now()
    accept(source, "old", received_at=now - 7 * DAY - timedelta(seconds=1))
    accept(source, "edge", received_at=now - 7 * DAY)
    accept(source, "recent", received_at=now - DAY)
    assert drain() == 3

    pruned = message_keys_prune(now=now)

    assert (pruned.deleted, pruned.cutoff, pruned.done) == (1, now - 7 * DAY, True)
    assert keys() == ["edge", "recent"]
    replay = accept(source, "old", "edge", "recent", received_at=now)
    assert (replay.accepted, replay.duplicates) == (1, 2)
    assert drain() == 1
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["edge", "old", "old", "recent"]
    assert keys() == ["edge", "old", "recent"]


def test_a_message_queued_past_the_window_keeps_its_key_and_every_later_one(source, drain):
    now = timezone.now()
    accept(source, "done-40d", received_at=now - 40 * DAY)
    accept(source, "done-25d", received_at=now - 25 * DAY)
    accept(source, "done-10d", received_at=now - 10 * DAY)
    assert drain() == 3
    # The pipeline was down: this one has waited in the queue for a month.
    accept(source, "stuck", received_at=now - 30 * DAY)

    assert message_keys_cutoff(now=now) == now - 30 * DAY
    pruned = message_keys_prune(now=now)

    assert (pruned.deleted, pruned.cutoff) == (1, now - 30 * DAY)
    assert keys() == ["done-10d", "done-25d", "stuck"]
    replay = accept(source, "stuck", received_at=now)
    assert (replay.accepted, replay.duplicates) == (0, 1)
    assert PendingEvent.objects.count() == 1

    # Once processed, its key goes with the window like any other.
    assert drain() == 1
    assert message_keys_prune(now=now).deleted == 3
    assert keys() == []
    assert accept(source, "stuck", received_at=now).accepted == 1


def test_the_prune_goes_chunk_by_chunk_across_keys_that_share_a_time_and_resumes_after_its_budget(source, drain):
    now = timezone.now()
    accept(source, "a1", "a2", "a3", "a4", "a5", received_at=now - 8 * DAY)  # one request: one received_at
    accept(source, "b1", "b2", received_at=now - 9 * DAY)
    accept(source, "kept", received_at=now - 6 * DAY)
    assert drain() == 8

    first = message_keys_prune(now=now, chunk=2, max_seconds=0)
    assert (first.deleted, first.done) == (2, False)
    assert keys() == ["a1", "a2", "a3", "a4", "a5", "kept"]  # the oldest went first

    runs = [message_keys_prune(now=now, chunk=2, max_seconds=0) for _ in range(3)]
    assert [(r.deleted, r.done) for r in runs] == [(2, False), (2, False), (1, True)]
    assert keys() == ["kept"]

    again = message_keys_prune(now=now, chunk=2)
    assert (again.deleted, again.done) == (0, True)
    assert keys() == ["kept"]


def test_the_task_twice(source):
    now = timezone.now()
    accept(source, "old-1", "old-2", received_at=now - 8 * DAY)
    accept(source, "new", received_at=now)
    PendingEvent.objects.filter(message_id__startswith="old").delete()  # processed or dropped by the consent gate

    assert prune_message_keys() == 2
    assert prune_message_keys() == 0
    assert keys() == ["new"]
    assert list(PendingEvent.objects.values_list("message_id", flat=True)) == ["new"]


def test_the_task_is_scheduled_on_the_ingest_queue():
    entry = settings.CELERY_BEAT_SCHEDULE["message-keys"]
    assert entry == {"task": "profiles.prune_message_keys", "schedule": 600.0}
    assert prune_message_keys.name == "profiles.prune_message_keys" and prune_message_keys.queue == "ingest"


@pytest.mark.django_db(transaction=True)
def test_a_prune_skips_keys_another_prune_holds_instead_of_waiting(source, drain):
    now = timezone.now()
    accept(source, "held", received_at=now - 9 * DAY)
    accept(source, "free-1", "free-2", received_at=now - 8 * DAY)
    assert drain() == 3
    s = connection.settings_dict
    with psycopg.connect(dbname=s["NAME"], user=s["USER"], host=s["HOST"], port=s["PORT"] or 5432,
                         password=s["PASSWORD"] or None) as other:
        other.execute("SELECT 1 FROM profiles_messagekey WHERE message_id = 'held' FOR UPDATE")
        with connection.cursor() as cursor:
            # Were it to wait for the other transaction, this would fail the test instead of hanging it.
            cursor.execute("SET lock_timeout = '2s'")
        try:
            pruned = message_keys_prune(now=now)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
        assert (pruned.deleted, pruned.done) == (2, True)
        assert keys() == ["held"]
        other.rollback()
    assert message_keys_prune(now=now).deleted == 1
    assert keys() == []


_offsets = st.lists(st.integers(min_value=0, max_value=30 * 24), max_size=6)  # hours before now


@hsettings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(processed=_offsets, queued=_offsets, chunk=st.sampled_from([1, 2, 10_000]))
def test_prune_matches_the_reference(source, drain, processed, queued, chunk):
    """Reference: a key stays when it is in the window or not older than the oldest queued message."""
    for model in (Event, PendingEvent, MessageKey, TraitChange, MergeRecord, Identifier):
        model.objects.all().delete()
    Profile.objects.all().delete()
    now = timezone.now()
    received = {}
    for i, hours in enumerate(processed):
        received[f"p{i}"] = now - timedelta(hours=hours)
        accept(source, f"p{i}", received_at=received[f"p{i}"])
    drain()
    for i, hours in enumerate(queued):
        received[f"q{i}"] = now - timedelta(hours=hours)
        accept(source, f"q{i}", received_at=received[f"q{i}"])

    pruned = message_keys_prune(now=now, chunk=chunk)

    cutoff = min([now - timedelta(days=7)] + [received[f"q{i}"] for i in range(len(queued))])
    assert pruned.cutoff == cutoff and pruned.done
    assert keys() == sorted(m for m, at in received.items() if at >= cutoff)
    assert pruned.deleted == len(received) - len(keys())
    assert {f"q{i}" for i in range(len(queued))} <= set(keys())


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_scheduled_prune_from_the_ingest_queue(source, celery_worker_process, wait_until):
    now = timezone.now()
    accept(source, "old", received_at=now - 8 * DAY)
    accept(source, "new", received_at=now)
    # The accept queued the pipeline on the broker; the worker moves both out of the queue.
    wait_until(lambda: not PendingEvent.objects.exists(), seconds=60, what="the pipeline")

    prune_message_keys.delay()

    wait_until(lambda: keys() == ["new"], seconds=60, what="the prune")
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["new", "old"]
