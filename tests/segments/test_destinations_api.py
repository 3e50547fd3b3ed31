"""The destinations API: CRUD with a write-only secret, roles, a destination's deliveries, resending one."""
import pytest
from django.utils import timezone

from segments.models import Delivery, Destination, Segment
from segments.services.deliveries import deliveries_enqueue, deliveries_send
from tests.factories import ApiTokenFactory, UserFactory

pytestmark = pytest.mark.django_db

SECRET_VALUE = "the-very-secret-key-42"


@pytest.fixture
def api(client):
    keys = {}

    def call(method, path, body=None, role="Marketer"):
        if role not in keys:
            keys[role] = f"cdp_{role.lower().replace(' ', '_')}_key"
            ApiTokenFactory(user=UserFactory(groups=[role]), key=keys[role])
        return getattr(client, method)(path, body, content_type="application/json",
                                       HTTP_AUTHORIZATION=f"Bearer {keys[role]}")
    return call


def create(api, **fields):
    body = {"name": "CRM", "url": "https://hooks.example.com/cdp?team=7", "secret": SECRET_VALUE, **fields}
    return api("post", "/api/v1/destinations/", body)


def test_a_marketer_creates_reads_updates_and_deletes_a_destination_and_never_sees_the_secret(api):
    created = create(api)
    assert created.status_code == 201
    body = created.json()
    pk = body["id"]
    assert body == {"id": pk, "name": "CRM", "url": "https://hooks.example.com/cdp?team=7", "active": True,
                    "created_at": body["created_at"]}
    assert Destination.objects.get(pk=pk).secret == SECRET_VALUE

    listed = api("get", "/api/v1/destinations/")
    one = api("get", f"/api/v1/destinations/{pk}/")
    patched = api("patch", f"/api/v1/destinations/{pk}/", {"active": False})
    assert (listed.status_code, one.status_code, patched.status_code) == (200, 200, 200)
    assert listed.json()["results"] == [body]
    assert one.json() == body
    assert patched.json() == {**body, "active": False}
    for response in (created, listed, one, patched):
        assert SECRET_VALUE.encode() not in response.content and b"secret" not in response.content
    assert Destination.objects.get(pk=pk).secret == SECRET_VALUE  # unchanged when not given

    put = api("put", f"/api/v1/destinations/{pk}/", {"name": "CRM 2", "url": "http://10.0.0.7:8080/in",
                                                     "secret": "a-brand-new-secret-value"})
    assert put.status_code == 200
    assert put.json() == {**body, "name": "CRM 2", "url": "http://10.0.0.7:8080/in", "active": False}
    assert b"a-brand-new-secret-value" not in put.content
    assert Destination.objects.get(pk=pk).secret == "a-brand-new-secret-value"

    assert api("delete", f"/api/v1/destinations/{pk}/").status_code == 204
    assert not Destination.objects.exists()
    assert api("get", f"/api/v1/destinations/{pk}/").status_code == 404


@pytest.mark.parametrize("fields, field", [
    ({"url": "ftp://hooks.example.com/"}, "url"), ({"url": "https://exa mple.com/"}, "url"),
    ({"url": "hooks.example.com/in"}, "url"), ({"secret": "too-short"}, "secret"), ({"name": "  "}, "name")])
def test_an_invalid_destination_is_refused_and_nothing_is_created(api, fields, field):
    response = create(api, **fields)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert not Destination.objects.exists()


def test_a_missing_secret_is_refused_on_create(api):
    response = api("post", "/api/v1/destinations/", {"name": "CRM", "url": "https://hooks.example.com/"})
    assert (response.status_code, response.json()["field"], response.json()["code"]) == (400, "secret", "required")


def test_a_privacy_officer_reads_destinations_but_may_not_change_them(api):
    pk = create(api).json()["id"]
    assert api("get", f"/api/v1/destinations/{pk}/", role="Privacy officer").status_code == 200
    for method, path, body in [("post", "/api/v1/destinations/", {"name": "x", "url": "https://a.b/",
                                                                   "secret": SECRET_VALUE}),
                               ("patch", f"/api/v1/destinations/{pk}/", {"active": False}),
                               ("delete", f"/api/v1/destinations/{pk}/", None)]:
        response = api(method, path, body, role="Privacy officer")
        assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    assert Destination.objects.get().active is True
    assert Destination.objects.count() == 1


def _deliveries(make_profiles, destination_id: int, count: int) -> list[int]:
    segment = Segment.objects.create(key="vip", name="VIP")
    segment.destinations.add(destination_id)
    people = make_profiles(*[f"u{i}" for i in range(count)])
    deliveries_enqueue(segment_id=segment.pk, entered=people, exited=[], occurred_at=timezone.now())
    return people


def test_a_destinations_deliveries_newest_first_in_pages_with_a_bounded_number_of_queries(
        api, make_profiles, django_assert_num_queries):
    pk = create(api, url="http://127.0.0.1:9/closed").json()["id"]
    people = _deliveries(make_profiles, pk, 5)
    Delivery.objects.filter(profile_id=people[0]).update(created_at=timezone.now() + timezone.timedelta(hours=1))
    api("get", "/api/v1/destinations/")  # the token is created outside the counted requests

    # The token with its role's permissions, the destination, the page.
    with django_assert_num_queries(3):
        first = api("get", f"/api/v1/destinations/{pk}/deliveries/?page_size=3")
    assert first.status_code == 200
    page = first.json()
    with django_assert_num_queries(3):
        rest = api("get", page["next"]).json()
    rows = page["results"] + rest["results"]
    assert [r["profile_id"] for r in rows] == [people[0], *reversed(people[1:])]
    row = rows[0]
    delivery = Delivery.objects.get(profile_id=people[0])
    assert row == {"id": delivery.pk, "delivery_id": str(delivery.delivery_id), "type": "segment.entered",
                   "status": "pending", "attempts": 0, "last_error": "", "segment": "vip",
                   "profile_id": people[0], "occurred_at": row["occurred_at"], "created_at": row["created_at"],
                   "next_attempt_at": row["next_attempt_at"], "delivered_at": None}
    assert api("get", "/api/v1/destinations/999999/deliveries/").status_code == 404


def test_resend_queues_a_dead_delivery_again_and_refuses_one_still_pending(api, make_profiles,
                                                                         django_capture_on_commit_callbacks):
    pk = create(api, url="http://127.0.0.1:9/closed").json()["id"]
    _deliveries(make_profiles, pk, 1)
    delivery = Delivery.objects.get()

    pending = api("post", f"/api/v1/deliveries/{delivery.pk}/resend/")
    assert (pending.status_code, pending.json()["code"]) == (409, "delivery_pending")

    deliveries_send(delivery_ids=[delivery.pk])  # nothing listens on port 9
    Delivery.objects.update(status="dead", next_attempt_at=None)
    with django_capture_on_commit_callbacks() as queued:
        response = api("post", f"/api/v1/deliveries/{delivery.pk}/resend/")
    assert response.status_code == 202
    assert (response.json()["status"], response.json()["attempts"], response.json()["delivery_id"]) == (
        "pending", 0, str(delivery.delivery_id))
    assert len(queued) == 1
    assert Delivery.objects.get().attempt_rows.count() == 1  # the earlier attempt stays
    assert api("post", "/api/v1/deliveries/999999/resend/").status_code == 404
    refused = api("post", f"/api/v1/deliveries/{delivery.pk}/resend/", role="Privacy officer")
    assert refused.status_code == 403


@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1:8080/hooks", "a loopback address"),
    ("http://[::1]/hooks", "a loopback address"),
    ("http://169.254.169.254/latest/meta-data/", "a link-local address"),
    ("https://10.0.0.7/hooks", "a private or reserved address"),
    ("http://[::ffff:192.168.1.20]/hooks", "a private or reserved address"),
    ("http://localhost:9000/hooks", "is a local name"),
    ("http://metadata.google.internal/computeMetadata/v1/", "is a local name"),
])
def test_a_destination_on_a_private_network_is_refused_at_its_field(api, settings, url, why):
    settings.DESTINATIONS_ALLOW_PRIVATE_NETWORKS = False
    refused = create(api, url=url)
    assert refused.status_code == 400, refused.json()
    assert refused.json()["field"] == "url" and why in refused.json()["message"]
    assert create(api, url="https://hooks.example.com/cdp").status_code == 201
    settings.DESTINATIONS_ALLOW_PRIVATE_NETWORKS = True
    assert create(api, url=url).status_code == 201
