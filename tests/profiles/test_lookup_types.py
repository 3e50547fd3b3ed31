"""GET /api/v1/profiles/lookup: an identifier type nobody uses is a bad request (400), an unknown value 404."""
import pytest

from profiles.models import IdentityRule
from tests.factories import ApiTokenFactory, UserFactory

pytestmark = pytest.mark.django_db
KEY = "cdp_marketer_key"


@pytest.fixture
def lookup(client):
    ApiTokenFactory(user=UserFactory(groups=["Marketer"]), key=KEY)

    def get(kind, value):
        return client.get("/api/v1/profiles/lookup", {"type": kind, "value": value},
                          HTTP_AUTHORIZATION=f"Bearer {KEY}")
    return get


def test_an_unknown_identifier_type_is_400_naming_the_field(lookup, post_collect, drain):
    post_collect("identify", {"userId": "u-1", "messageId": "m1"})
    drain()

    response = lookup("emial", "u-1")

    assert response.status_code == 400
    body = response.json()
    assert (body["code"], body["field"]) == ("unknown_identifier_type", "type")
    assert body["message"].startswith("Unknown identifier type 'emial'")


def test_known_types_without_a_match_are_404(lookup, post_collect, drain):
    post_collect("track", {"userId": "u-1", "event": "E", "messageId": "m1",
                           "context": {"externalIds": [{"id": "C-77", "type": "crm_id", "collection": "users"}]}})
    drain()
    IdentityRule.objects.create(identifier_type="loyalty_card", max_per_profile=1)

    for kind in ("user_id", "anonymous_id", "email", "phone", "crm_id", "loyalty_card"):
        response = lookup(kind, "nobody")
        assert response.status_code == 404, kind
        assert response.json()["code"] == "not_found", kind
    found = lookup("crm_id", "C-77")
    assert found.status_code == 200
    assert [(i["type"], i["value"]) for i in found.json()["identifiers"]] == [("crm_id", "C-77"), ("user_id", "u-1")]
