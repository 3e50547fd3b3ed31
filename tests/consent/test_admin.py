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


def test_the_admin_export_leaves_out_profiles_whose_sale_or_sharing_is_not_allowed(client, post_collect, drain):
    post_collect("batch", {"batch": [
        {"type": "identify", "userId": "us-yes", "traits": {"country": "US"}, "messageId": "1"},
        {"type": "identify", "userId": "us-gpc", "traits": {"country": "US"}, "messageId": "2",
         "context": {"gpc": True}},
        {"type": "identify", "userId": "eu-no-choice", "traits": {"country": "FR"}, "messageId": "3"},
        {"type": "identify", "userId": "eu-granted", "traits": {"country": "FR"}, "messageId": "4",
         "context": {"consent": {"categoryPreferences": {"Sale": True}}}},
    ]})
    drain()
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    response = client.post("/admin/profiles/profile/export/", {
        "format": "0", "resource": "0", **{f"profileresource_{f}": "on" for f in
                                           ("id", "user_id", "emails", "phones", "traits", "computed")}})
    assert response.status_code == 200, response.content.decode()[:1500]
    exported = response.content.decode()
    assert "us-yes" in exported and "eu-granted" in exported
    assert "us-gpc" not in exported and "eu-no-choice" not in exported


def test_a_privacy_officer_records_a_paper_form_choice_on_the_profile_page(client, quinn):
    client.force_login(UserFactory(username="pat", groups=["Privacy officer"]))
    assert 'id="record-consent"' in client.get(f"/profiles/{quinn.pk}/").content.decode()
    response = client.post(f"/profiles/{quinn.pk}/consent/", {"purpose": "marketing_sms", "granted": "yes",
                                                               "policy_version": "2026-02", "reason": "signed form"})
    assert response.status_code == 302
    entry = quinn.consent_entries.get()
    assert (entry.purpose.key, entry.granted, entry.source, entry.policy_version) == (
        "marketing_sms", True, "privacy_officer", "2026-02")
    assert AuditEntry.objects.get(action="consent.record").actor == "pat"
    page = client.get(f"/profiles/{quinn.pk}/").content.decode()
    assert "signed form" in page


def test_a_marketer_cannot_record_consent(client, quinn):
    client.force_login(UserFactory(groups=["Marketer"]))
    assert 'id="record-consent"' not in client.get(f"/profiles/{quinn.pk}/").content.decode()
    assert client.post(f"/profiles/{quinn.pk}/consent/", {"purpose": "analytics", "granted": "yes"}).status_code == 403
    assert not quinn.consent_entries.exists()
