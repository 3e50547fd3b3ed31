"""The admin: personal data hidden from marketers, and every change audited without its values."""
import pytest

from consent.models import AuditEntry
from profiles.models import Profile
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def quinn(post_collect, drain):
    post_collect("identify", {"userId": "q-1", "traits": {"name": "Quinn Quill", "email": "quinn@example.com"},
                              "messageId": "q"})
    drain()
    return Profile.objects.get()


def test_a_marketer_sees_no_personal_data_in_the_admin(client, quinn):
    client.force_login(UserFactory(is_staff=True, groups=["Marketer"]))
    page = client.get(f"/admin/profiles/profile/{quinn.pk}/change/")
    assert page.status_code == 200 and "Quinn" not in page.content.decode()
    event = quinn.events.get()
    assert "quinn@example.com" not in client.get(f"/admin/profiles/event/{event.pk}/change/").content.decode()


def test_an_admin_edit_of_a_profile_is_audited_with_field_names_only(client, quinn):
    client.force_login(UserFactory(username="ada", is_staff=True, groups=["Privacy officer"]))
    page = client.get(f"/admin/profiles/profile/{quinn.pk}/change/")
    assert "Quinn Quill" in page.content.decode()
    form = {"traits": '{"name": "Quinn Q.", "email": "quinn@example.com"}',
            "identifiers-TOTAL_FORMS": "0", "identifiers-INITIAL_FORMS": "0", "_save": "Save"}
    response = client.post(f"/admin/profiles/profile/{quinn.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    quinn.refresh_from_db()
    assert quinn.traits["name"] == "Quinn Q."
    entry = AuditEntry.objects.get(action="admin.change.profile")
    assert (entry.actor, entry.target_id, entry.details) == ("ada", quinn.pk, {"fields": ["Traits"]})
    assert "Quinn" not in str(entry.details)
