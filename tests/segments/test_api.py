"""The segments API: create and check definitions, preview, members, refresh, history, a person's segments."""
import orjson
import pytest

from profiles.models import Identifier
from segments.models import Segment
from segments.services.membership import segment_recompute
from tests.factories import ApiTokenFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def call(client):
    keys = {}

    def request(method, path, body=None, *, role="Marketer"):
        if role not in keys:
            keys[role] = f"cdp_key_{len(keys)}"
            ApiTokenFactory(user=UserFactory(groups=[role] if role else []), key=keys[role])
        kwargs = {"HTTP_AUTHORIZATION": f"Bearer {keys[role]}"}
        if body is not None:
            kwargs.update(data=orjson.dumps(body), content_type="application/json")
        return getattr(client, method)(path, **kwargs)
    return request


@pytest.fixture
def people(post_collect, drain):
    for n, (user, plan) in enumerate([("ann", "pro"), ("bo", "free"), ("cy", "pro")]):
        post_collect("identify", {"userId": user, "traits": {"plan": plan, "email": f"{user}@example.com"},
                                  "messageId": f"i{n}"})
    drain()


def pid(user):
    return Identifier.objects.get(type="user_id", value=user).profile_id


def test_a_bad_definition_is_refused_with_the_path_of_the_first_bad_place(call):
    response = call("post", "/api/v1/segments/", {"key": "x", "name": "X", "mode": "batch", "definition": {
        "all": [{"trait": "plan", "op": "eq", "value": "pro"}, {"identifier": "email"},
                {"trait": "age", "op": "gte=", "value": 3}]}})
    assert response.status_code == 400
    assert response.json() == {"code": "invalid_definition", "message": 'unknown operator "gte="',
                               "field": "definition.all[2].op"}
    assert not Segment.objects.exists()
    preview = call("post", "/api/v1/segments/preview/", {"definition": {"any": []}})
    assert preview.status_code == 400 and preview.json()["field"].startswith("definition.any")


def test_a_marketer_creates_previews_and_reads_a_segment(call, people):
    definition = {"trait": "plan", "op": "eq", "value": "pro"}
    preview = call("post", "/api/v1/segments/preview/", {"definition": definition})
    assert preview.status_code == 200
    assert preview.json() == {"count": 2, "sample": sorted([pid("ann"), pid("cy")]), "estimated": False, "margin": 0}
    assert not Segment.objects.exists()  # a preview saves nothing

    created = call("post", "/api/v1/segments/", {"key": "pro", "name": "Pro", "mode": "batch",
                                                 "definition": definition})
    assert created.status_code == 201, created.content
    segment_id = created.json()["id"]
    assert created.json()["status"] == "pending"
    segment_recompute(segment_id=segment_id)  # what the queued task does
    read = call("get", f"/api/v1/segments/{segment_id}/").json()
    assert read["size"] == 2 and read["status"] == "ready" and read["definition"] == definition

    members = call("get", f"/api/v1/segments/{segment_id}/members/").json()
    assert {m["profile_id"] for m in members["results"]} == {pid("ann"), pid("cy")}
    history = call("get", f"/api/v1/segments/{segment_id}/history/").json()
    assert [(p["size"], p["entered"]) for p in history] == [(2, 2)]
    assert call("post", f"/api/v1/segments/{segment_id}/refresh/").status_code == 202

    mine = call("get", f"/api/v1/profiles/{pid('ann')}/segments/").json()
    assert [(m["key"], m["reasons"][0]["value"], m["reasons"][0]["held"]) for m in mine] == [("pro", "pro", True)]


def test_reasons_are_masked_for_roles_without_personal_data(call, people):
    segment_id = call("post", "/api/v1/segments/", {"key": "mail", "name": "Mail", "mode": "batch", "definition": {
        "trait": "email", "op": "contains", "value": "ann@"}}).json()["id"]
    segment_recompute(segment_id=segment_id)
    [membership] = call("get", f"/api/v1/profiles/{pid('ann')}/segments/").json()
    assert "ann@example.com" not in orjson.dumps(membership).decode()


def test_a_user_without_a_role_may_not_write_segments(call):
    response = call("post", "/api/v1/segments/", {"key": "x", "name": "X", "mode": "static"}, role=None)
    assert response.status_code == 403 and not Segment.objects.exists()


def test_a_segment_in_use_cannot_be_deleted(call, people):
    call("post", "/api/v1/segments/", {"key": "pro", "name": "Pro", "mode": "batch",
                                       "definition": {"trait": "plan", "op": "eq", "value": "pro"}})
    call("post", "/api/v1/segments/", {"key": "fans", "name": "Fans", "mode": "batch",
                                       "definition": {"segment": "pro"}})
    pro = Segment.objects.get(key="pro")
    response = call("delete", f"/api/v1/segments/{pro.pk}/")
    assert response.status_code == 409 and response.json()["code"] == "segment_in_use"
    assert call("delete", f"/api/v1/segments/{Segment.objects.get(key='fans').pk}/").status_code == 204
    assert call("delete", f"/api/v1/segments/{pro.pk}/").status_code == 204


def test_static_members_are_posted_through_the_api(call, people):
    segment_id = call("post", "/api/v1/segments/", {"key": "vip", "name": "VIP", "mode": "static"}).json()["id"]
    posted = call("post", f"/api/v1/segments/{segment_id}/static-members/",
                  {"identifiers": [{"type": "email", "value": "BO@example.com"}]})
    assert posted.status_code == 200 and posted.json() == {"changed": 1}
    segment_recompute(segment_id=segment_id)
    assert call("get", f"/api/v1/segments/{segment_id}/").json()["size"] == 1
    not_static = call("post", "/api/v1/segments/", {"key": "b", "name": "B", "mode": "batch",
                                                    "definition": {"identifier": "email"}}).json()["id"]
    refused = call("post", f"/api/v1/segments/{not_static}/static-members/",
                   {"identifiers": [{"type": "email", "value": "x@example.com"}]})
    assert refused.status_code == 409


def test_a_preview_past_the_exact_limit_is_estimated_from_a_sample(call, people, monkeypatch):
    from segments import selectors

    definition = {"trait": "plan", "op": "eq", "value": "pro"}
    monkeypatch.setattr(selectors, "PREVIEW_EXACT_UP_TO", 0)
    # A sample as large as the table takes every page: the estimate is then the exact count.
    monkeypatch.setattr(selectors, "PREVIEW_SAMPLE_PROFILES", 10_000)
    body = call("post", "/api/v1/segments/preview/", {"definition": definition}).json()
    assert body == {"count": 2, "sample": sorted([pid("ann"), pid("cy")]), "estimated": True, "margin": 0}
