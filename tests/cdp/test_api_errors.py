"""Every API and collection path answers errors as JSON, bad paging is a 400, and odd timelines render."""
import pytest
from django.urls import reverse

from profiles.models import Profile
from tests.factories import ApiTokenFactory, UserFactory

pytestmark = pytest.mark.django_db
KEY = "cdp_admin_key_for_errors"


@pytest.fixture
def bearer():
    ApiTokenFactory(user=UserFactory(groups=["Admin"]), key=KEY)
    return {"HTTP_AUTHORIZATION": f"Bearer {KEY}"}


@pytest.mark.parametrize("method, path, status, code", [
    ("get", "/api/v1/profiles/abc/", 404, "not_found"),
    ("get", "/api/v1/nothing-here/", 404, "not_found"),
    ("get", "/v1/x", 404, "not_found"),
    ("get", "/v1/track", 405, "method_not_allowed"),
    ("delete", "/api/v1/profiles/", 405, "method_not_allowed"),
])
def test_errors_are_json_on_every_api_path(client, bearer, method, path, status, code):
    response = getattr(client, method)(path, **bearer)

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == code and response.json()["message"]


def test_screens_keep_their_html_error_pages(client):
    response = client.get("/no-such-screen/")

    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("query, status", [
    ({"limit": "9223372036854775808"}, 200), ({"limit": "100000"}, 200), ({"limit": "abc"}, 400),
    ({"limit": "-1"}, 400), ({"limit": "0"}, 400), ({"offset": "9223372036854775808"}, 400),
    ({"offset": "x"}, 400), ({"limit": "2", "offset": "1"}, 200),
])
def test_paging_parameters_are_bounded_and_checked(client, bearer, post_collect, drain, query, status):
    post_collect("batch", {"batch": [{"type": "identify", "userId": f"u{i}", "messageId": f"m{i}"}
                                     for i in range(3)]})
    drain()

    response = client.get("/api/v1/profiles/", query, **bearer)

    assert response.status_code == status
    if status == 400:
        assert response.json()["code"] == "invalid" and response.json()["field"] in query
    elif query.get("limit") == "2":
        assert len(response.json()["results"]) == 2
    else:
        assert len(response.json()["results"]) == 3  # a huge limit is capped, never an error


def test_cursor_page_size_is_checked(client, bearer, post_collect, drain):
    post_collect("identify", {"userId": "u1", "messageId": "m1"})
    drain()
    profile = Profile.objects.get()

    refused = client.get(f"/api/v1/profiles/{profile.pk}/events/", {"page_size": "lots"}, **bearer)
    capped = client.get(f"/api/v1/profiles/{profile.pk}/events/", {"page_size": "99999999999999999999"}, **bearer)

    assert refused.status_code == 400 and refused.json()["field"] == "page_size"
    assert capped.status_code == 200 and len(capped.json()["results"]) == 1


def test_profile_page_renders_an_identify_without_user_id(client, post_collect, drain, django_user_model):
    post_collect("identify", {"anonymousId": "anon-only", "traits": {"plan": "free"}, "messageId": "i1"})
    drain()
    admin = django_user_model.objects.create_superuser("root", password="pw-for-tests")
    client.force_login(admin)

    response = client.get(reverse("profile-detail", args=[Profile.objects.get().pk]))

    assert response.status_code == 200 and b"anon-only" in response.content
