"""The collection API: Segment Spec messages in, a 200 and stored events out; bad input named and refused."""
import gzip

import orjson
import pytest

from profiles.models import Event, Identifier, MessageKey, PendingEvent, Profile

pytestmark = pytest.mark.django_db


def test_identify_then_track_builds_one_profile(post_collect, drain):
    r = post_collect("identify", {"userId": "u1", "anonymousId": None, "traits": {"email": " Ann@Example.COM ",
                                  "name": "Ann"}, "messageId": "m1"})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    post_collect("track", {"userId": "u1", "event": "Order Completed", "properties": {"revenue": 12.5},
                           "messageId": "m2"})
    assert drain() == 2
    profile = Profile.objects.get()
    assert profile.traits == {"email": " Ann@Example.COM ", "name": "Ann"}
    assert profile.event_count == 2 and profile.event_counts == {"identify": 1, "track": 1}
    assert set(profile.identifiers.values_list("type", "value")) == {("user_id", "u1"), ("email", "ann@example.com")}


def test_batch_rejects_bad_messages_by_index_and_keeps_the_rest(post_collect):
    r = post_collect("batch", {"batch": [
        {"type": "track", "userId": "u1", "event": "Viewed", "messageId": "a"},
        {"type": "track", "event": "No identity", "messageId": "b"},
        {"type": "explode", "userId": "u1", "messageId": "c"},
        {"type": "track", "userId": "u1", "messageId": "d"},
        {"type": "page", "anonymousId": "x", "messageId": "e", "timestamp": "not a date"},
    ]})
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 1
    assert [(x["index"], x["code"]) for x in body["rejected"]] == [
        (1, "missing_identity"), (2, "unknown_type"), (3, "missing_field"), (4, "invalid_timestamp")]
    assert list(PendingEvent.objects.values_list("message_id", flat=True)) == ["a"]


def test_replayed_batch_creates_nothing_new(post_collect, drain):
    batch = {"batch": [{"type": "track", "userId": f"u{i}", "event": "E", "messageId": f"m{i}"} for i in range(5)]}
    assert post_collect("batch", batch).json()["accepted"] == 5
    drain()
    again = post_collect("batch", batch).json()
    assert again["accepted"] == 0 and again["duplicates"] == 5
    assert drain() == 0
    assert Event.objects.count() == 5 and Profile.objects.count() == 5 and MessageKey.objects.count() == 5


def test_replay_while_still_queued_is_a_duplicate_too(post_collect, drain):
    message = {"userId": "u", "event": "E", "messageId": "once"}
    assert post_collect("track", message).json()["accepted"] == 1
    assert post_collect("track", message).json() == {"success": True, "accepted": 0, "duplicates": 1, "rejected": []}
    assert PendingEvent.objects.count() == 1
    assert drain() == 1 and Event.objects.get().message_id == "once"


def test_bad_write_key_is_401_and_stores_nothing(post_collect):
    r = post_collect("track", {"userId": "u", "event": "E"}, write_key="nope")
    assert r.status_code == 401 and r.json()["code"] == "invalid_write_key"
    assert PendingEvent.objects.count() == 0 and MessageKey.objects.count() == 0


def test_write_key_in_body_is_accepted(client, source):
    r = client.post("/v1/track", data=orjson.dumps({"writeKey": source.write_key, "userId": "u", "event": "E"}),
                    content_type="application/json")
    assert r.status_code == 200
    assert "writeKey" not in PendingEvent.objects.get().payload


def test_malformed_json_is_400(post_collect):
    r = post_collect("track", None, raw=b"{not json")
    assert r.status_code == 400 and r.json()["code"] == "malformed_json"


def test_oversized_message_is_413_and_oversized_batch_is_413(post_collect):
    big = {"userId": "u", "event": "E", "properties": {"blob": "x" * 33_000}}
    assert post_collect("track", big).status_code == 413
    batch = {"batch": [{"type": "track", "userId": "u", "event": "E", "properties": {"b": "x" * 30_000},
                        "messageId": str(i)} for i in range(18)]}
    assert post_collect("batch", batch).status_code == 413
    assert PendingEvent.objects.count() == 0


def test_gzip_body_is_accepted(post_collect):
    body = gzip.compress(orjson.dumps({"batch": [{"type": "identify", "userId": "g", "messageId": "1"}]}))
    r = post_collect("batch", None, raw=body, headers={"HTTP_CONTENT_ENCODING": "gzip"})
    assert r.status_code == 200 and r.json()["accepted"] == 1


def test_clock_skew_is_corrected_with_sent_at(post_collect):
    post_collect("track", {"userId": "u", "event": "E", "timestamp": "2020-01-01T00:00:00Z",
                           "sentAt": "2020-01-01T00:00:10Z"})
    event = PendingEvent.objects.get()
    assert (event.received_at - event.timestamp).total_seconds() == pytest.approx(10, abs=0.001)


def test_blocked_identifier_values_are_ignored(post_collect, drain):
    post_collect("identify", {"userId": "undefined", "anonymousId": "a1", "traits": {"email": "test@example.com"}})
    post_collect("identify", {"userId": "undefined", "anonymousId": "a2"})
    drain()
    assert Profile.objects.count() == 2
    assert not Identifier.objects.filter(value__in=["undefined", "test@example.com"]).exists()


def test_odd_input_is_refused_per_message_never_a_500(post_collect):
    r = post_collect("batch", {"context": {"app": {"name": "shop"}}, "batch": [
        {"type": "track", "userId": "u\u0000x", "event": "E", "messageId": "nul"},
        {"type": "track", "userId": "u", "event": "E", "timestamp": "0001-01-01T00:00:00+05:00", "messageId": "old"},
        {"type": "track", "userId": "u", "event": "E", "timestamp": "9999-12-31T00:00:00Z",
         "sentAt": "0001-01-01T00:00:00Z", "messageId": "skew"},
        {"type": "track", "userId": "u", "event": "E", "context": [1], "messageId": "ctx"},
        {"type": "track", "userId": "u", "event": "E", "messageId": "ok"},
    ]})
    assert r.status_code == 200
    assert [(x["index"], x["code"]) for x in r.json()["rejected"]] == [
        (0, "invalid_character"), (1, "invalid_timestamp"), (2, "invalid_timestamp"), (3, "invalid_field")]
    assert PendingEvent.objects.get().payload["context"] == {"app": {"name": "shop"}}


def test_batch_level_sent_at_corrects_clock_skew(post_collect):
    post_collect("batch", {"sentAt": "2020-01-01T00:01:00Z", "batch": [
        {"type": "track", "userId": "u", "event": "E", "timestamp": "2020-01-01T00:00:00Z"}]})
    event = PendingEvent.objects.get()
    assert (event.received_at - event.timestamp).total_seconds() == pytest.approx(60, abs=0.001)


def test_messages_without_message_id_are_each_kept(post_collect):
    for _ in range(2):
        assert post_collect("track", {"userId": "u", "event": "Click"}).json()["accepted"] == 1
    assert PendingEvent.objects.count() == 2


def test_values_that_cannot_be_stored_are_refused_per_message_and_the_rest_kept(post_collect):
    import json

    deep = {"type": "track", "userId": "u1", "event": "Deep", "messageId": "deep", "properties": {}}
    node = deep["properties"]
    for _ in range(600):  # deeper than the event store takes, shallower than the body parser's limit
        node["x"] = {}
        node = node["x"]
    raw = json.dumps({"batch": [
        {"type": "track", "userId": "u1", "event": "Before", "messageId": "before"}, deep,
        {"type": "track", "userId": "u1", "event": "Ids", "messageId": "ids",
         "properties": {"order_id": "1234567890123456789012", "max": 18446744073709551615,
                        "min": -9223372036854775808}},
        {"type": "track", "userId": "u1", "event": "Text", "messageId": "text", "properties": {"note": "\\u0000 as text"}},
        {"type": "track", "userId": "u1", "event": "Nul", "messageId": "nul", "properties": {"note": "a\x00b"}},
        {"type": "track", "userId": "u1", "event": "Huge", "messageId": "huge",
         "properties": {"items": [{"qty": 1}, {"qty": 123456789012345678901234567890}]}},
    ]}).encode()

    r = post_collect("batch", None, raw=raw)

    assert r.status_code == 200
    assert [(x["index"], x["code"], x.get("field")) for x in r.json()["rejected"]] == [
        (1, "too_deep", "properties" + ".x" * 254), (4, "invalid_character", None),
        (5, "number_out_of_range", "properties.items[1].qty")]
    kept = {e.message_id: e.payload for e in PendingEvent.objects.all()}
    assert sorted(kept) == ["before", "ids", "text"]
    assert kept["ids"]["properties"] == {"order_id": "1234567890123456789012", "max": 18446744073709551615,
                                         "min": -9223372036854775808}
    assert kept["text"]["properties"]["note"] == "\\u0000 as text"


def test_a_body_deeper_than_the_parser_takes_is_a_clear_400(post_collect):
    r = post_collect("track", None, raw=b'{"userId": "u1", "event": "E", "properties": ' + b"[" * 1100 + b"]" * 1100
                     + b"}")

    assert r.status_code == 400 and r.json()["code"] == "malformed_json"
    assert not PendingEvent.objects.exists()


def test_a_write_key_with_a_nul_or_a_timestamp_offset_past_15_59_is_no_server_error(post_collect, client, source):
    refused = post_collect("track", {"userId": "u1", "event": "E"}, write_key="bad\x00key")
    in_body = client.post("/v1/track", data=orjson.dumps({"writeKey": "bad\x00key", "userId": "u1", "event": "E"}),
                          content_type="application/json")
    odd_offset = post_collect("track", {"userId": "u1", "event": "E", "messageId": "o",
                                        "timestamp": "2026-01-01T00:30:00-23:29"})

    assert refused.status_code == in_body.status_code == 401
    assert odd_offset.status_code == 200 and odd_offset.json()["accepted"] == 1
    assert PendingEvent.objects.get().timestamp.isoformat() == "2026-01-01T23:59:00+00:00"
