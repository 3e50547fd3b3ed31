"""Identity resolution through the real accept and process path: attach, create, merge, refuse."""
import pytest
from hypothesis import given, settings as hsettings, strategies as st, HealthCheck

from profiles.models import Event, Identifier, MergeRecord, MessageKey, PendingEvent, Profile, TraitChange

pytestmark = pytest.mark.django_db


def live():
    return Profile.objects.filter(merged_into__isnull=True)


def test_anonymous_browsing_then_identify_is_one_profile(post_collect, drain):
    post_collect("page", {"anonymousId": "a1", "name": "Home", "messageId": "1"})
    drain()
    post_collect("identify", {"anonymousId": "a1", "userId": "u1", "traits": {"email": "x@y.com"}, "messageId": "2"})
    drain()
    profile = live().get()
    assert profile.event_count == 2
    assert set(profile.identifiers.values_list("type", flat=True)) == {"anonymous_id", "user_id", "email"}


def test_two_devices_merge_into_the_oldest_with_a_merge_record(post_collect, drain):
    post_collect("track", {"anonymousId": "phone-device", "event": "Viewed", "messageId": "1"})
    drain()
    post_collect("track", {"anonymousId": "laptop", "event": "Viewed", "messageId": "2"})
    drain()
    older, newer = Profile.objects.order_by("created_at", "id")
    post_collect("identify", {"anonymousId": "laptop", "userId": "u1", "messageId": "3"})
    post_collect("identify", {"anonymousId": "phone-device", "userId": "u1", "messageId": "4"})
    drain()
    survivor = live().get()
    assert survivor.pk == older.pk
    newer.refresh_from_db()
    assert newer.merged_into_id == older.pk
    assert survivor.event_count == 4
    assert Event.objects.filter(profile=survivor).count() == 4
    record = MergeRecord.objects.get(outcome="merged")
    assert (record.into_profile_id, record.other_profile_id) == (older.pk, newer.pk)
    # laptop's events 2 and 3 and identifiers laptop and u1, whether already stored or from this batch.
    assert record.message_id == "4" and record.moved_events == 2 and record.moved_identifiers == 2
    assert "user_id:u1" in record.linking_identifiers


def test_two_user_ids_never_merge_and_the_conflict_is_recorded(post_collect, drain):
    post_collect("identify", {"userId": "alice", "anonymousId": "shared-tablet", "messageId": "1"})
    drain()
    post_collect("identify", {"userId": "bob", "anonymousId": "shared-tablet", "messageId": "2"})
    drain()
    assert live().count() == 2
    bob = Identifier.objects.get(type="user_id", value="bob").profile
    assert Event.objects.get(message_id="2").profile == bob
    refusal = MergeRecord.objects.get(outcome="refused")
    assert refusal.into_profile == bob and "user_id limit 1" in refusal.reason


def test_alias_merges_previous_id_into_user(post_collect, drain):
    post_collect("track", {"anonymousId": "anon-9", "event": "Viewed", "messageId": "1"})
    post_collect("identify", {"userId": "u9", "messageId": "2"})
    drain()
    assert live().count() == 2
    post_collect("alias", {"previousId": "anon-9", "userId": "u9", "messageId": "3"})
    drain()
    assert live().count() == 1
    assert live().get().event_count == 3


def test_email_and_phone_are_normalised_and_link_profiles(post_collect, drain):
    post_collect("identify", {"userId": "u1", "traits": {"email": "ANN@x.com", "phone": "(415) 555-2671"}})
    post_collect("identify", {"anonymousId": "a7", "traits": {"phone": "+1 415 555 2671"}})
    drain()
    profile = live().get()
    assert set(profile.identifiers.values_list("type", "value")) >= {("email", "ann@x.com"), ("phone", "+14155552671")}


def test_external_ids_are_identifiers(post_collect, drain):
    post_collect("track", {"anonymousId": "a1", "event": "E", "context": {"externalIds": [
        {"id": "crm-42", "type": "salesforce_id", "collection": "users", "encoding": "none"}]}})
    post_collect("identify", {"userId": "u1", "context": {"externalIds": [{"id": "crm-42", "type": "salesforce_id"}]}})
    drain()
    assert live().count() == 1


def test_latest_trait_wins_by_message_time_with_history(post_collect, drain):
    post_collect("identify", {"userId": "u", "traits": {"plan": "pro"}, "timestamp": "2026-01-02T00:00:00Z",
                              "messageId": "new"})
    drain()
    post_collect("identify", {"userId": "u", "traits": {"plan": "free", "city": "Oslo"},
                              "timestamp": "2026-01-01T00:00:00Z", "messageId": "old"})
    drain()
    profile = live().get()
    assert profile.traits == {"plan": "pro", "city": "Oslo"}
    assert list(TraitChange.objects.filter(key="plan").values_list("new_value", flat=True)) == ["pro"]


def test_merge_combines_traits_latest_wins(post_collect, drain):
    post_collect("identify", {"anonymousId": "a", "traits": {"color": "red", "size": "M"},
                              "timestamp": "2026-01-03T00:00:00Z"})
    drain()
    post_collect("identify", {"userId": "u", "traits": {"color": "blue"}, "timestamp": "2026-01-01T00:00:00Z"})
    drain()
    post_collect("alias", {"previousId": "a", "userId": "u", "timestamp": "2026-01-05T00:00:00Z"})
    drain()
    assert live().get().traits == {"color": "red", "size": "M"}


def test_processing_is_idempotent_after_a_rolled_back_batch(post_collect, drain):
    from django.db import transaction

    from cdp.pipeline import pipeline_process_batch

    post_collect("identify", {"userId": "u", "anonymousId": "a", "messageId": "1"})

    class Crash(Exception):
        pass

    with pytest.raises(Crash), transaction.atomic():
        pipeline_process_batch()
        raise Crash  # a worker dying before commit
    assert PendingEvent.objects.count() == 1 and Event.objects.count() == 0
    assert drain() == 1 and drain() == 0
    assert live().count() == 1 and Identifier.objects.count() == 2


people = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=25)


@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=people, batch_size=st.sampled_from([1, 3, 1000]))
def test_profiles_match_connected_components_of_anonymous_ids(post_collect, drain, pairs, batch_size):
    """Reference: with only anonymous ids (no limits), profiles are the connected components of the links."""
    from cdp.pipeline import pipeline_process_batch

    for model in (MessageKey, PendingEvent, Event, Identifier):
        model.objects.all().delete()
    MergeRecord.objects.all().delete()
    Profile.objects.all().delete()
    for i, (a, b) in enumerate(pairs):
        post_collect("track", {"anonymousId": f"a{a}", "event": "E", "messageId": f"m{i}",
                               "context": {"externalIds": [{"id": f"a{b}", "type": "device"}]}})
    while pipeline_process_batch(batch_size=batch_size):
        pass
    parent = {}

    def find(x):
        while parent.get(x, x) != x:
            x = parent[x]
        return x
    for a, b in pairs:
        parent[find(("anonymous_id", f"a{a}"))] = find(("device", f"a{b}"))
    nodes = {("anonymous_id", f"a{a}") for a, _ in pairs} | {("device", f"a{b}") for _, b in pairs}
    expected = {frozenset(n for n in nodes if find(n) == root) for root in {find(n) for n in nodes}}
    got = {}
    for kind, value, pid in Identifier.objects.values_list("type", "value", "profile_id"):
        got.setdefault(pid, set()).add((kind, value))
    assert {frozenset(v) for v in got.values()} == expected
    assert live().count() == len(expected)
    assert sum(live().values_list("event_count", flat=True)) == len(pairs)


def test_merge_goes_ahead_when_only_a_new_identifier_would_not_fit(post_collect, drain):
    post_collect("identify", {"userId": "full", "traits": {}, "context": {"externalIds": [
        {"id": f"e{i}@x.com", "type": "email"} for i in range(5)]}})
    post_collect("track", {"anonymousId": "device", "event": "E"})
    drain()
    post_collect("identify", {"userId": "full", "anonymousId": "device", "traits": {"email": "sixth@x.com"}})
    drain()
    profile = live().get()
    assert profile.identifiers.filter(type="email").count() == 5
    assert not Identifier.objects.filter(value="sixth@x.com").exists()
    assert MergeRecord.objects.filter(outcome="merged").count() == 1
    refusal = MergeRecord.objects.get(outcome="refused")
    assert (refusal.into_profile, refusal.other_profile) == (profile, None)
    assert refusal.linking_identifiers == ["email:sixth@x.com"] and "email limit 5" in refusal.reason


def test_an_event_the_database_cannot_read_is_set_aside_not_blocking(post_collect, drain):
    from django.db import connection

    for i in range(5):
        post_collect("identify", {"userId": f"u{i}", "messageId": str(i)})
    bad = PendingEvent.objects.get(message_id="2")
    with connection.cursor() as cursor:  # a timestamp psycopg cannot turn into a Python datetime
        cursor.execute("UPDATE profiles_pendingevent SET timestamp = '0001-01-01 00:00:00+05' WHERE id = %s", [bad.pk])
    assert drain() == 5
    processed_at, profile_id, error = Event.objects.filter(pk=bad.pk).values_list(
        "processed_at", "profile_id", "error").get()
    assert processed_at is not None and profile_id is None and "DataError" in error
    assert live().count() == 4
    assert not PendingEvent.objects.exists() and Event.objects.count() == 5
