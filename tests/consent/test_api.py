"""The consent API: current state per profile, recording a choice, the ledger, and who may do what."""
import orjson
import pytest

from consent.models import ConsentEntry
from profiles.models import Identifier
from tests.factories import ApiTokenFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def keys():
    out = {}
    for role in ("Marketer", "Privacy officer"):
        out[role] = f"cdp_{role.replace(' ', '_').lower()}"
        ApiTokenFactory(user=UserFactory(groups=[role]), key=out[role])
    return out


@pytest.fixture
def call(client, keys):
    def request(method, path, role, body=None, **params):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {keys[role]}"}
        if method == "get":
            return client.get(path, params, **headers)
        return client.post(path, orjson.dumps(body), content_type="application/json", **headers)
    return request


@pytest.fixture
def ann(post_collect, drain):
    post_collect("identify", {"userId": "ann", "traits": {"email": "ann@example.com", "country": "FR"},
                              "messageId": "1"})
    drain()
    return Identifier.objects.get(value="ann").profile


def test_a_profile_shows_every_purpose_with_the_defaults_of_its_regime(call, ann):
    response = call("get", f"/api/v1/profiles/{ann.pk}/consent", "Marketer")
    assert response.status_code == 200
    body = response.json()
    assert body["profile_id"] == ann.pk and body["regime"] == "gdpr"
    assert {p["purpose"]: (p["granted"], p["explicit"], p["source"]) for p in body["purposes"]} == {
        key: (False, False, "default") for key in ("advertising", "analytics", "marketing_email", "marketing_sms",
                                                   "personalization", "sale_sharing")}


def test_a_privacy_officer_records_a_choice_by_identifier_and_the_state_follows(call, ann):
    response = call("post", "/api/v1/consents/", "Privacy officer", {
        "identifier": {"type": "email", "value": " ANN@example.com"}, "purpose": "marketing_email", "granted": True,
        "policy_version": "2026-01", "ip": "203.0.113.5", "recorded_at": "2026-02-01T10:00:00Z"})
    assert response.status_code == 201, response.json()
    entry = response.json()
    assert entry["profile_id"] == ann.pk and entry["source"] == "api" and entry["granted"] is True
    assert entry["policy_version"] == "2026-01" and len(entry["ip_hash"]) == 64
    state = {p["purpose"]: p for p in call("get", f"/api/v1/profiles/{ann.pk}/consent", "Marketer").json()["purposes"]}
    assert state["marketing_email"]["granted"] is True and state["marketing_email"]["explicit"] is True


def test_a_marketer_may_read_state_but_not_record_or_read_the_ledger(call, ann):
    body = {"profile_id": ann.pk, "purpose": "analytics", "granted": True}
    assert call("post", "/api/v1/consents/", "Marketer", body).status_code == 403
    assert call("get", "/api/v1/consents/", "Marketer").status_code == 403
    assert not ConsentEntry.objects.exists()


@pytest.mark.parametrize(("body", "field"), [
    ({"purpose": "analytics", "granted": True}, "profile_id"),
    ({"profile_id": 1, "identifier": {"type": "email", "value": "x@y.z"}, "purpose": "analytics", "granted": True},
     "profile_id"),
    ({"profile_id": None, "purpose": "analytics", "granted": "maybe"}, "granted"),
    ({"profile_id": None, "purpose": "analytics", "granted": True, "policy_version": "  "}, "policy_version"),
    ({"profile_id": None, "purpose": "analytics", "granted": True, "ip": "somewhere"}, "ip"),
    ({"identifier": {"type": "email", "value": " "}, "purpose": "analytics", "granted": True}, "identifier.value"),
])
def test_bad_choices_are_400_naming_the_field_and_record_nothing(call, ann, body, field):
    if body.get("profile_id", 0) is None:
        body["profile_id"] = ann.pk
    response = call("post", "/api/v1/consents/", "Privacy officer", body)
    assert response.status_code == 400 and response.json()["field"] == field
    assert not ConsentEntry.objects.exists()


def test_an_unknown_subject_is_404(call, ann):
    response = call("post", "/api/v1/consents/", "Privacy officer",
                    {"identifier": {"type": "email", "value": "nobody@example.com"}, "purpose": "analytics",
                     "granted": True})
    assert response.status_code == 404


def test_an_unknown_purpose_is_404_like_an_unknown_subject(call, ann):
    # Purposes are rows an admin adds, so the schema cannot list them: a valid-looking key that names none is
    # not found rather than malformed.
    response = call("post", "/api/v1/consents/", "Privacy officer",
                    {"profile_id": ann.pk, "purpose": "newsletter", "granted": True})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found" and "newsletter" in response.json()["message"]
    assert not ConsentEntry.objects.exists()


def test_the_ledger_of_a_profile_includes_the_profiles_merged_into_it(call, post_collect, drain):
    post_collect("track", {"userId": "u", "event": "E", "messageId": "1",
                           "context": {"consent": {"categoryPreferences": {"Analytics": True}}}})
    drain()
    post_collect("track", {"anonymousId": "a", "event": "E", "messageId": "2",
                           "context": {"consent": {"categoryPreferences": {"Advertising": False}}}})
    drain()
    post_collect("identify", {"userId": "u", "anonymousId": "a", "messageId": "3"})
    drain()
    survivor = Identifier.objects.get(value="u").profile

    page = call("get", "/api/v1/consents/", "Privacy officer", profile_id=survivor.pk).json()
    # The merged profile's own denial, and the entry that carried it over to the survivor.
    assert sorted((e["purpose"], e["granted"], e["source"], e["message_id"]) for e in page["results"]) == [
        ("advertising", False, "collection", "2"), ("advertising", False, "merge", ""),
        ("analytics", True, "collection", "1")]
    only = call("get", "/api/v1/consents/", "Privacy officer", profile_id=survivor.pk, purpose="analytics").json()
    assert [e["purpose"] for e in only["results"]] == ["analytics"]
