"""The admin for each role: no email, phone or name on any admin page, search or export for a role without the
personal data permission; write keys shown once and rotated; import for the Admin role only."""
import base64
import html
import io
import json
import re

import orjson
import pytest
import tablib
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from consent.models import AuditEntry
from profiles.messages import normalise_phone
from profiles.models import Event, Identifier, MergeRecord, PendingEvent, Profile, Source

pytestmark = pytest.mark.django_db

EXPORT_FIELDS = ("id", "user_id", "emails", "phones", "traits", "computed")
# Format indexes of the export form: ProfileImportExportAdmin.formats.
CSV, XLSX, JSON = "0", "1", "2"
# Personal data where masking by key names alone missed it: in lists, under other keys, in externalIds, in free
# text, in a user id. US profiles, so that sale/sharing is allowed by default and the export holds them.
TRICKY = [
    {"type": "identify", "userId": "t-1", "messageId": "t1", "traits": {
        "email": "Tess.Tricky@example.org", "phone": "+1 (415) 555-0187", "name": "Tess Tricky", "country": "US",
        "contacts": [{"email": "tess.work@example.net", "label": "work"}, {"phone": "415-555-0143"}],
        "address": {"street": "9 Hidden Lane", "city": "Springfield"}},
     "context": {"externalIds": [{"type": "email", "id": "tess.alias@example.com", "collection": "users",
                                  "encoding": "none"}]}},
    {"type": "track", "userId": "t-1", "event": "Order Completed", "messageId": "t2",
     "properties": {"order_id": "ORD-2125550199", "revenue": 42.5, "customer_email": "tess.billing@example.com",
                    "sku": "sku-1001", "notes": "call +44 20 7946 0958 after 5pm"},
     "context": {"traits": {"userEmail": "tess.ctx@example.com"}}},
    {"type": "identify", "userId": "carl@example.com", "messageId": "t3",
     "traits": {"email": "carl@example.com", "country": "US", "mobile": "+1 212 555 0123"}},
    # A second user id for Tess's email: the merge is refused, and its record names the email.
    {"type": "identify", "userId": "t-2", "messageId": "t4", "traits": {"email": "tess.tricky@example.org"}},
]
# Held only in messages (processed, or still queued), not in identifiers or traits.
IN_MESSAGES_ONLY = ["tess.billing@example.com", "+44 20 7946 0958", "+442079460958", "442079460958",
                    "quinn.queued@example.com", "+1 503 555 0166", "15035550166"]
# Queued, never processed: what the pipeline's queue page shows.
PENDING = {"type": "identify", "userId": "q-1", "messageId": "q1",
           "traits": {"email": "quinn.queued@example.com", "phone": "+1 503 555 0166"}}


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def _phone_forms(value: str) -> set[str]:
    e164 = normalise_phone(value, "US")
    return {value, e164, _digits(e164)} if e164 else set()


def _from_traits(value, key: str, found: set[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _from_traits(v, k, found)
    elif isinstance(value, list):
        for v in value:
            _from_traits(v, key, found)
    elif isinstance(value, str):
        if "@" in value:
            found.add(value)
        elif _digits(value) and normalise_phone(value, "US") and len(_digits(value)) >= 10:
            found |= _phone_forms(value)
        elif key == "name" and " " in value:
            found.add(value)  # full names; a first name alone may be a word of the page


def personal_values() -> set[str]:
    """Every email, phone (as written, E.164 and digits only) and full name the database holds."""
    found: set[str] = set()
    for kind, value in Identifier.objects.values_list("type", "value"):
        if kind == "phone":
            found |= {value, _digits(value)}
        elif kind == "email" or "@" in value:
            found.add(value)
    for traits in Profile.objects.values_list("traits", flat=True):
        _from_traits(traits, "", found)
    found |= set(IN_MESSAGES_ONLY)
    return {v.lower() for v in found if v}


def leaks(body: str, values: set[str]) -> set[str]:
    text = body.lower()
    text += "\n" + html.unescape(text)
    return {v for v in values if v in text}


@pytest.fixture
def shop(client, source, post_collect, drain):
    """The demo shop (through the real accept and process path, fixed seed), a few profiles with personal data in
    awkward places, one message still queued, and the demo logins."""
    call_command("seed_demo", "--profiles", "20", "--seed", "12", stdout=io.StringIO())
    for message in TRICKY:  # one at a time: the refused merge needs Tess's profile to exist first
        assert post_collect("batch", {"batch": [message]}).json()["accepted"] == 1
        drain()
    assert post_collect("batch", {"batch": [PENDING]}).json()["accepted"] == 1
    call_command("create_demo_users", stdout=io.StringIO())
    assert MergeRecord.objects.filter(outcome="refused").exists() and MergeRecord.objects.filter(
        outcome="merged", linking_identifiers__icontains="email:").exists()
    return Profile.objects.get(identifiers__value="t-1")


def log_in(client, username):
    assert client.login(username=username, password=f"{username}-demo")
    return client


def _every_view_permission_but_personal_data():
    user = get_user_model().objects.create_user("viewer", password="viewer-demo", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_").exclude(
        codename="view_personal_data"))
    return user


def _sample(model, tess: Profile) -> list:
    """A few rows of each model, always including Tess's and the refused merge."""
    rows = list(model._default_manager.order_by("pk")[:3])
    if model is Profile:
        rows += [tess, Profile.objects.filter(merged_into__isnull=False).first(),
                 Profile.objects.get(identifiers__type="email", identifiers__value="carl@example.com")]
    elif model is Event:
        rows += list(Event.objects.filter(profile=tess))
    elif model is MergeRecord:
        rows += list(MergeRecord.objects.all())
    elif model is PendingEvent:
        rows += list(PendingEvent.objects.all())
    return list({row.pk: row for row in rows if row is not None}.values())


def walk_admin(client, tess: Profile) -> tuple[dict[str, str], list[str]]:
    """GETs every admin page the user may open; returns the bodies by URL, and the changelists that opened."""
    pages: dict[str, str] = {}
    opened = []

    def get(url):
        response = client.get(url)
        assert response.status_code in (200, 403), (url, response.status_code)
        pages[url] = response.content.decode()
        return response

    assert get(reverse("admin:index")).status_code == 200
    for model, model_admin in admin.site._registry.items():
        info = f"{model._meta.app_label}_{model._meta.model_name}"
        changelist = reverse(f"admin:{info}_changelist")
        if get(changelist).status_code != 200:
            continue
        opened.append(info)
        get(changelist + "?q=tes")  # a part of an email: found nothing, echoes only what was typed
        get(changelist + "?q=t-1")
        get(changelist + "?o=-1")
        for row in _sample(model, tess):
            get(reverse(f"admin:{info}_change", args=[row.pk]))
            get(reverse(f"admin:{info}_history", args=[row.pk]))
    for filtered in ("profiles/profile/?merged_into__isempty=0", "profiles/event/?type__exact=identify",
                     "profiles/mergerecord/?outcome__exact=refused", "profiles/event/?q=t-1"):
        get(reverse("admin:index") + filtered)
    get(reverse("admin:profiles_profile_export"))
    return pages, opened


def export(client, file_format: str, query: str = ""):
    response = client.post(reverse("admin:profiles_profile_export") + query, {
        "format": file_format, "resource": "0", **{f"profileresource_{f}": "on" for f in EXPORT_FIELDS}})
    assert response.status_code == 200, response.content.decode()[:2000]
    if file_format == XLSX:
        return tablib.Dataset().load(response.content, format="xlsx").export("json")
    return response.content.decode()


# --- personal data on every admin page -------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["marketer", "every view permission but personal data"])
def test_no_admin_page_or_export_shows_personal_data_to_a_role_without_the_permission(client, shop, role):
    if role == "marketer":
        log_in(client, "marketer")
    else:
        client.force_login(_every_view_permission_but_personal_data())
    values = personal_values()
    # The check is not vacuous: the database holds what an unmasked page would show.
    assert {"tess.tricky@example.org", "+14155550187", "14155550187", "tess tricky", "tess.work@example.net",
            "14155550143", "carl@example.com", "tess.ctx@example.com", "quinn.queued@example.com"} <= values
    assert Identifier.objects.filter(type="email").count() >= 15

    pages, opened = walk_admin(client, shop)
    exported = {fmt: export(client, fmt) for fmt in (CSV, XLSX, JSON)}

    assert {"profiles_profile", "profiles_event", "profiles_mergerecord", "profiles_source",
            "profiles_identityrule"} <= set(opened)
    if role != "marketer":
        assert {"profiles_pendingevent", "consent_consententry", "consent_auditentry"} <= set(opened)
    assert len(pages) > 40
    found = {url: leaks(body, values) for url, body in {**pages, **exported}.items()}
    assert {url: hits for url, hits in found.items() if hits} == {}
    # What a marketer sees instead, masked.
    tess_page = pages[reverse("admin:profiles_profile_change", args=[shop.pk])]
    for masked in ("t•••@example.org", "+1•••87", "T•••", "t•••@example.net", "41•••43", "t•••@example.com"):
        assert masked in tess_page, masked
    refused = MergeRecord.objects.get(outcome="refused")
    assert "email:t•••@example.org" in pages[reverse("admin:profiles_mergerecord_change", args=[refused.pk])]
    merges = pages[reverse("admin:profiles_mergerecord_changelist")]
    assert "shared identifiers: anonymous_id:" in merges
    assert re.search(r"email:\w•••@example\.\w+, phone:\+1•••\d\d", merges)
    # The export is not empty: Tess and Carl (US) are in it, masked; the demo's GDPR profiles are not.
    rows = {row["user_id"]: row for row in json.loads(exported[JSON])}
    assert set(rows) == {"t-1", "c•••@example.com"}
    assert rows["t-1"]["emails"] == "t•••@example.com, t•••@example.org"
    assert rows["t-1"]["phones"] == "+1•••87"
    assert json.loads(rows["t-1"]["traits"]) == {
        "email": "T•••@example.org", "phone": "+1•••87", "name": "T•••", "country": "US",
        "contacts": [{"email": "t•••@example.net", "label": "work"}, {"phone": "41•••43"}], "address": "•••",
        "userEmail": "t•••@example.com"}
    # A spreadsheet's empty cell reads back as None.
    assert [{k: v or "" for k, v in row.items()} for row in json.loads(exported[XLSX])] == json.loads(exported[JSON])


def test_a_marketers_admin_search_matches_whole_identifiers_only(client, shop):
    log_in(client, "marketer")
    changelist = reverse("admin:profiles_profile_changelist")

    def found(q):
        return [p.pk for p in client.get(changelist, {"q": q}).context["cl"].result_list]

    # Tess, and the profile of the refused merge, which has her email as a trait (not as an identifier).
    second = Profile.objects.get(identifiers__value="t-2")
    assert sorted(found("tess.tricky@example.org")) == sorted([shop.pk, second.pk])
    assert found("+1 415 555 0187") == [shop.pk]  # normalised as identifiers are
    assert found("Tess.Tricky@") == found("tess") == found("555-0187") == found("example.org") == []
    # The export follows the same search: a part of an email exports nothing.
    assert json.loads(export(client, JSON, "?q=tess")) == []


def test_a_privacy_officer_sees_and_exports_personal_data_and_searches_parts(client, shop):
    log_in(client, "privacy")
    page = client.get(reverse("admin:profiles_profile_change", args=[shop.pk])).content.decode()
    assert "Tess.Tricky@example.org" in page and "tess.alias@example.com" in page
    refused = MergeRecord.objects.get(outcome="refused")
    assert "tess.tricky@example.org" in client.get(
        reverse("admin:profiles_mergerecord_change", args=[refused.pk])).content.decode()
    changelist = client.get(reverse("admin:profiles_profile_changelist"), {"q": "tess.tri"})
    assert [p.pk for p in changelist.context["cl"].result_list] == [shop.pk]
    rows = {row["user_id"]: row for row in json.loads(export(client, JSON))}
    assert set(rows) == {"t-1", "carl@example.com"}
    assert rows["t-1"]["emails"] == "tess.alias@example.com, tess.tricky@example.org"
    assert json.loads(rows["t-1"]["traits"])["contacts"][1] == {"phone": "415-555-0143"}


def test_an_admin_export_is_unmasked_and_audited_for_each_role(client, shop):
    for username, masked in (("admin", False), ("privacy", False), ("marketer", True)):
        log_in(client, username)
        body = export(client, CSV)
        assert ("tess.tricky@example.org" in body) is not masked, username
        assert ("t•••@example.org" in body) is masked, username
        entry = AuditEntry.objects.filter(action="admin.export.profile").latest("id")
        assert (entry.actor, entry.target_type, entry.details) == (username, "profile", {"rows": 2, "masked": masked})
        client.logout()


# --- write keys ------------------------------------------------------------------------------------------------


def _post_track(client, key):
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    return client.post("/v1/track", data=orjson.dumps({"userId": "u-key", "event": "Key Tested"}),
                       content_type="application/json", HTTP_AUTHORIZATION=auth)


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_no_one_reads_a_write_key_after_it_was_shown(client, source):
    call_command("create_demo_users", stdout=io.StringIO())
    key = source.write_key
    for username in ("marketer", "privacy", "admin"):
        log_in(client, username)
        changelist = client.get(reverse("admin:profiles_source_changelist")).content.decode()
        detail = client.get(reverse("admin:profiles_source_change", args=[source.pk])).content.decode()
        assert key not in changelist and key not in detail, username
        assert f"{key[:4]}••••••••" in changelist and f"{key[:4]}••••••••" in detail, username
        client.logout()


def test_a_new_source_shows_its_key_once(client, db):
    call_command("create_demo_users", stdout=io.StringIO())
    log_in(client, "admin")
    response = client.post(reverse("admin:profiles_source_add"), {"name": "CRM", "is_active": "on"}, follow=True)
    source = Source.objects.get(name="CRM")
    [message] = [m for m in _messages(response) if "write key" in m]
    assert source.write_key in message and "not shown again" in message
    assert source.write_key not in client.get(response.redirect_chain[-1][0]).content.decode()
    assert AuditEntry.objects.get(action="admin.add.source").target_id == source.pk
    assert _post_track(client, source.write_key).status_code == 200


def test_rotating_a_write_key_shows_the_new_one_once_audits_it_and_the_old_one_stops_working(client, source):
    call_command("create_demo_users", stdout=io.StringIO())
    other = Source.objects.create(name="app")
    old, other_key = source.write_key, other.write_key
    assert _post_track(client, old).status_code == 200
    log_in(client, "admin")

    response = client.post(reverse("admin:profiles_source_changelist"), {
        "action": "rotate_write_keys", "_selected_action": [source.pk]}, follow=True)

    source.refresh_from_db()
    new = source.write_key
    assert new != old and len(new) == len(old)
    [message] = _messages(response)
    assert new in message and old not in message and "not shown again" in message
    assert new not in client.get(reverse("admin:profiles_source_change", args=[source.pk])).content.decode()
    assert _post_track(client, old).status_code == 401
    assert _post_track(client, old).json()["code"] == "invalid_write_key"
    assert _post_track(client, new).status_code == 200
    other.refresh_from_db()
    assert other.write_key == other_key  # only the selected source
    [entry] = AuditEntry.objects.filter(action="admin.rotate_write_key.source")
    assert (entry.actor, entry.target_type, entry.target_id, entry.details) == ("admin", "source", source.pk, {})
    assert new not in str(entry.details) and old not in str(entry.details)


def test_the_change_page_rotates_after_a_confirmation(client, source):
    call_command("create_demo_users", stdout=io.StringIO())
    old = source.write_key
    log_in(client, "admin")
    rotate = reverse("admin:profiles_source_rotate_write_key", args=[source.pk])
    assert f'href="{rotate}"' in client.get(reverse("admin:profiles_source_change", args=[source.pk])).content.decode()
    confirm = client.get(rotate)
    assert confirm.status_code == 200 and "stops working" in confirm.content.decode()
    source.refresh_from_db()
    assert source.write_key == old  # a GET changes nothing

    response = client.post(rotate, follow=True)

    source.refresh_from_db()
    assert response.redirect_chain[-1][0] == reverse("admin:profiles_source_change", args=[source.pk])
    assert source.write_key != old and source.write_key in _messages(response)[0]
    assert AuditEntry.objects.filter(action="admin.rotate_write_key.source", target_id=source.pk).count() == 1
    assert (_post_track(client, old).status_code, _post_track(client, source.write_key).status_code) == (401, 200)


@pytest.mark.parametrize("username", ["marketer", "privacy"])
def test_other_roles_cannot_rotate_a_write_key(client, source, username):
    call_command("create_demo_users", stdout=io.StringIO())
    old = source.write_key
    log_in(client, username)
    rotate = reverse("admin:profiles_source_rotate_write_key", args=[source.pk])
    page = client.get(reverse("admin:profiles_source_change", args=[source.pk])).content.decode()
    assert rotate not in page
    assert client.get(rotate).status_code == 403
    assert client.post(rotate).status_code == 403
    response = client.post(reverse("admin:profiles_source_changelist"), {
        "action": "rotate_write_keys", "_selected_action": [source.pk]}, follow=True)
    assert response.status_code == 200 and not any("write key" in m for m in _messages(response))
    source.refresh_from_db()
    assert source.write_key == old
    assert not AuditEntry.objects.filter(action="admin.rotate_write_key.source").exists()
    assert _post_track(client, old).status_code == 200


# --- import ----------------------------------------------------------------------------------------------------

CRM_FILE = b"user_id,email,phone,plan\ncrm-1,Dora@example.com,+1 415 555 0177,gold\n"


def _import(client, content: bytes = CRM_FILE):
    """The admin's two steps: upload (a dry run shown for confirmation), then confirm."""
    upload = client.post(reverse("admin:profiles_profile_import"), {
        "resource": "0", "format": "0", "import_file": SimpleUploadedFile("crm.csv", content, "text/csv")})
    if upload.status_code != 200 or "confirm_form" not in (upload.context or {}):
        return upload
    return client.post(reverse("admin:profiles_profile_process_import"), upload.context["confirm_form"].initial)


@pytest.mark.parametrize("username", ["marketer", "privacy"])
def test_only_the_admin_role_may_import_profiles(client, source, username):
    call_command("create_demo_users", stdout=io.StringIO())
    log_in(client, username)
    changelist = client.get(reverse("admin:profiles_profile_changelist"))
    assert changelist.context["has_import_permission"] is False
    assert reverse("admin:profiles_profile_import") not in changelist.content.decode()
    assert client.get(reverse("admin:profiles_profile_import")).status_code == 403
    assert _import(client).status_code == 403
    assert client.post(reverse("admin:profiles_profile_process_import"), {
        "import_file_name": "x", "original_file_name": "crm.csv", "format": "0", "resource": "0"}).status_code == 403
    assert not Profile.objects.exists() and not Identifier.objects.exists()
    assert not AuditEntry.objects.filter(action="admin.import.profile").exists()


def test_the_admin_role_imports_profiles_and_the_import_is_audited(client, source):
    call_command("create_demo_users", stdout=io.StringIO())
    admin_user = get_user_model().objects.get(username="admin")
    admin_user.is_superuser = False  # the role's permissions, not a superuser's
    admin_user.save()
    assert Group.objects.get(name="Admin").permissions.filter(codename="import_profiles").exists()
    log_in(client, "admin")
    assert client.get(reverse("admin:profiles_profile_changelist")).context["has_import_permission"] is True

    response = _import(client)

    assert response.status_code == 302, response.content.decode()[:2000]
    profile = Identifier.objects.get(type="email", value="dora@example.com").profile
    assert profile.traits["plan"] == "gold"
    assert set(profile.identifiers.values_list("type", "value")) == {
        ("user_id", "crm-1"), ("email", "dora@example.com"), ("phone", "+14155550177")}
    entry = AuditEntry.objects.get(action="admin.import.profile")
    assert (entry.actor, entry.target_type, entry.details) == ("admin", "profile", {"rows": 1, "new": 1})


def test_a_masked_export_is_refused_by_the_import(client, source):
    call_command("create_demo_users", stdout=io.StringIO())
    log_in(client, "admin")
    masked = b'user_id,emails,phones,traits\nt-9,t\xe2\x80\xa2\xe2\x80\xa2\xe2\x80\xa2@example.org,,"{}"\n'

    response = _import(client, masked)

    assert response.status_code == 200
    assert "masked values" in response.content.decode()
    assert not Identifier.objects.exists()
