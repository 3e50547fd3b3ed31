"""The profiles REST API, its schema, and the admin import/export, through the real collect -> pipeline path."""
import pytest
import tablib
from django.core.management import call_command

from profiles.models import Event, Identifier, MergeRecord, Profile, Source
from cdp.resources import ProfileResource
from tests.factories import ApiTokenFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer_key():
    key = "cdp_marketer_key"
    ApiTokenFactory(user=UserFactory(groups=["Marketer"]), key=key)
    return key


@pytest.fixture
def api(client, marketer_key):
    def get(path, key=marketer_key, **params):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
        return client.get(path, params, **headers)
    return get


def live_profile(kind, value):
    return Identifier.objects.get(type=kind, value=value).profile


# --- authentication and roles ---------------------------------------------------------------------


def test_missing_token_is_401_json(api):
    response = api("/api/v1/profiles/", key=None)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Bearer"


def test_unknown_token_is_401_json(api):
    response = api("/api/v1/profiles/", key="cdp_not_a_real_key")
    assert response.status_code == 401
    assert response.json() == {"code": "authentication_failed", "message": "Unknown or revoked API token."}


def test_revoked_token_is_401(api):
    ApiTokenFactory(user=UserFactory(groups=["Marketer"]), key="cdp_revoked", revoked=True)
    assert api("/api/v1/profiles/", key="cdp_revoked").status_code == 401


@pytest.mark.parametrize("groups", [["Marketer"], ["Privacy officer"], ["Admin"], [], ["Marketer", "Privacy officer"]])
def test_a_token_carries_exactly_the_permissions_django_would_read(groups):
    from django.contrib.auth.backends import ModelBackend
    from django.contrib.auth.models import Permission
    from rest_framework.test import APIRequestFactory

    from profiles.api.authentication import BearerTokenAuthentication

    user = UserFactory(groups=groups)
    user.user_permissions.add(Permission.objects.get(codename="view_event"))
    ApiTokenFactory(user=user, key="cdp_perm_key")
    request = APIRequestFactory().get("/api/v1/profiles/", HTTP_AUTHORIZATION="Bearer cdp_perm_key")

    authenticated, _ = BearerTokenAuthentication().authenticate(request)

    fresh = type(user).objects.get(pk=user.pk)
    assert authenticated._perm_cache == ModelBackend().get_all_permissions(fresh)
    assert "profiles.view_event" in authenticated._perm_cache


def test_a_tokens_last_use_is_written_once_a_minute(api, marketer_key):
    from datetime import timedelta

    from django.utils import timezone

    from profiles.models import ApiToken

    assert api("/api/v1/profiles/").status_code == 200
    token = ApiToken.objects.get(key_hash=ApiToken.hash_key(marketer_key))
    first = token.last_used_at
    assert first is not None
    assert api("/api/v1/profiles/").status_code == 200
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=2))
    assert api("/api/v1/profiles/").status_code == 200
    assert first <= ApiToken.objects.get(pk=token.pk).last_used_at <= timezone.now()


def test_marketer_token_lists_profiles(api, post_collect, drain):
    post_collect("identify", {"userId": "u1", "traits": {"email": "a@example.com"}, "messageId": "1"})
    drain()
    response = api("/api/v1/profiles/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    assert body["results"][0]["traits"] == {"email": "a•••@example.com"}  # a marketer sees it masked
    assert {(i["type"], i["value"]) for i in body["results"][0]["identifiers"]} == {
        ("user_id", "u1"), ("email", "a•••@example.com")}


def test_user_without_role_is_403(api):
    ApiTokenFactory(user=UserFactory(), key="cdp_no_role")
    response = api("/api/v1/profiles/", key="cdp_no_role")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


# --- list and search ------------------------------------------------------------------------------


@pytest.fixture
def three_people(post_collect, drain):
    post_collect("identify", {"userId": "u1", "traits": {"email": "ana@example.com", "plan": "gold"}, "messageId": "1"})
    post_collect("identify", {"userId": "u2", "traits": {"phone": "(415) 555-2671", "plan": "free"}, "messageId": "2"})
    post_collect("identify", {"userId": "u3", "traits": {"plan": "gold", "age": 40}, "messageId": "3"})
    drain()
    return {u: live_profile("user_id", u).pk for u in ("u1", "u2", "u3")}


def ids(response):
    assert response.status_code == 200, response.content
    return {p["id"] for p in response.json()["results"]}


def test_search_by_identifier_normalises_email_and_phone(api, three_people):
    assert ids(api("/api/v1/profiles/", q="ANA@Example.com")) == {three_people["u1"]}
    assert ids(api("/api/v1/profiles/", q="415-555-2671")) == {three_people["u2"]}
    assert ids(api("/api/v1/profiles/", q="gold")) == {three_people["u1"], three_people["u3"]}
    assert ids(api("/api/v1/profiles/", q="nobody")) == set()


def test_filter_by_identifier_and_trait(api, three_people):
    assert ids(api("/api/v1/profiles/", identifier_type="phone", identifier="+1 415 555 2671")) == {three_people["u2"]}
    assert ids(api("/api/v1/profiles/", identifier_type="user_id", identifier="u3")) == {three_people["u3"]}
    assert ids(api("/api/v1/profiles/", trait="plan", trait_value="gold")) == {three_people["u1"], three_people["u3"]}
    assert ids(api("/api/v1/profiles/", trait="age", trait_value="40")) == {three_people["u3"]}
    assert ids(api("/api/v1/profiles/", trait="age")) == {three_people["u3"]}


def test_list_queries_do_not_grow_with_profiles(api, post_collect, drain, django_assert_max_num_queries):
    post_collect("batch", {"batch": [
        {"type": "identify", "userId": f"u{n}", "traits": {"email": f"p{n}@example.com"}, "messageId": str(n)}
        for n in range(30)]})
    drain()
    # token lookup, last_used update, role permissions (2), count, page, identifiers prefetch
    with django_assert_max_num_queries(7):
        response = api("/api/v1/profiles/", limit=25)
    assert response.status_code == 200
    assert len(response.json()["results"]) == 25
    assert all(len(p["identifiers"]) == 2 for p in response.json()["results"])


def test_list_is_limit_offset_paginated(api, three_people):
    body = api("/api/v1/profiles/", limit=2).json()
    assert body["count"] == 3 and len(body["results"]) == 2
    assert "offset=2" in body["next"]


# --- detail, merges, lookup -----------------------------------------------------------------------


@pytest.fixture
def merged(post_collect, drain):
    """Two profiles (u1 on a laptop, an email on a phone) linked by a later identify: one merge."""
    post_collect("identify", {"userId": "u1", "anonymousId": "laptop", "messageId": "1",
                              "timestamp": "2026-01-01T10:00:00Z"})
    drain()
    post_collect("identify", {"anonymousId": "phone", "traits": {"email": "ana@example.com"}, "messageId": "2",
                              "timestamp": "2026-01-01T11:00:00Z"})
    drain()
    post_collect("identify", {"userId": "u1", "traits": {"email": "ana@example.com"}, "messageId": "3",
                              "timestamp": "2026-01-01T12:00:00Z"})
    drain()
    record = MergeRecord.objects.get(outcome="merged")
    return record.into_profile_id, record.other_profile_id


def test_detail_shows_identifiers_counters_and_merge_history(api, merged):
    survivor, gone = merged
    body = api(f"/api/v1/profiles/{survivor}/").json()
    assert body["id"] == survivor
    assert body["event_count"] == 3
    assert {(i["type"], i["value"]) for i in body["identifiers"]} == {
        ("user_id", "u1"), ("anonymous_id", "laptop"), ("anonymous_id", "phone"), ("email", "a•••@example.com")}
    assert [(m["outcome"], m["into_profile"], m["other_profile"]) for m in body["merges"]] == [
        ("merged", survivor, gone)]
    assert body["merges"][0]["linking_identifiers"]


def test_merged_profile_id_resolves_to_survivor(api, merged):
    survivor, gone = merged
    assert Profile.objects.get(pk=gone).merged_into_id == survivor
    body = api(f"/api/v1/profiles/{gone}/").json()
    assert body["id"] == survivor
    assert body["merges"][0]["other_profile"] == gone
    assert gone not in ids(api("/api/v1/profiles/"))


def test_unknown_profile_is_404_json(api):
    response = api("/api/v1/profiles/999999/")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "No profile 999999."}


def test_lookup_by_email_normalises_case(api, post_collect, drain):
    post_collect("identify", {"userId": "u1", "traits": {"email": "Ana@Example.com"}, "messageId": "1"})
    drain()
    response = api("/api/v1/profiles/lookup", type="email", value="  ANA@example.COM ")
    assert response.status_code == 200
    assert response.json()["id"] == live_profile("user_id", "u1").pk


def test_lookup_absent_is_404_json(api):
    response = api("/api/v1/profiles/lookup", type="email", value="nobody@example.com")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found",
                               "message": "No profile has the identifier email:nobody@example.com."}


def test_lookup_without_params_is_400_json(api):
    response = api("/api/v1/profiles/lookup", type="email")
    assert response.status_code == 400
    assert response.json()["code"] == "required"
    assert response.json()["field"] == "value"


# --- timeline -------------------------------------------------------------------------------------


def test_events_timeline_is_cursor_paginated_newest_first(api, post_collect, drain):
    post_collect("batch", {"batch": [
        {"type": "track", "userId": "u1", "event": f"E{n}", "messageId": str(n),
         "timestamp": f"2026-01-01T10:{n:02d}:00Z"} for n in range(5)]})
    drain()
    profile = live_profile("user_id", "u1")
    first = api(f"/api/v1/profiles/{profile.pk}/events/", page_size=2)
    assert first.status_code == 200
    body = first.json()
    assert [e["event"] for e in body["results"]] == ["E4", "E3"]
    assert body["previous"] is None and "cursor=" in body["next"]
    seen = [e["event"] for e in body["results"]]
    while body["next"]:
        body = api(body["next"]).json()
        seen += [e["event"] for e in body["results"]]
    assert seen == ["E4", "E3", "E2", "E1", "E0"]


def test_events_of_unknown_profile_is_404(api):
    assert api("/api/v1/profiles/999999/events/").status_code == 404


# --- schema ---------------------------------------------------------------------------------------


def test_schema_serves_every_path(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    text = response.content.decode()
    for path in ("/api/v1/profiles/:", "/api/v1/profiles/{profile_id}/:", "/api/v1/profiles/{profile_id}/events/:",
                 "/api/v1/profiles/lookup/:", "bearerAuth"):
        assert path in text


def test_schema_generates_without_warnings(tmp_path):
    # --fail-on-warn makes every drf-spectacular warning (unresolvable serializer, unknown auth) an error.
    call_command("spectacular", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    assert "/api/v1/profiles/lookup/" in (tmp_path / "schema.yml").read_text()


# --- admin ----------------------------------------------------------------------------------------


def test_admin_profile_page_shows_recent_events_and_merges(admin_client, merged):
    survivor, gone = merged
    response = admin_client.get(f"/admin/profiles/profile/{survivor}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Last 20 events" in html
    for event_id in Event.objects.filter(profile_id=survivor).values_list("id", flat=True):
        assert f"/admin/profiles/event/{event_id}/change/" in html
    assert "shared identifiers" in html
    assert admin_client.get("/admin/profiles/profile/", {"q": "ana@example.com"}).status_code == 200


def test_export_has_one_row_per_live_profile(merged):
    survivor, _ = merged
    dataset = ProfileResource().export()
    assert dataset.headers == ["id", "user_id", "emails", "phones", "traits", "computed"]
    assert [row[:4] for row in dataset] == [(str(survivor), "u1", "ana@example.com", "")]
    assert dataset[0][4] == '{"email": "ana@example.com"}'


def _import_rows():
    data = tablib.Dataset(headers=["user_id", "email", "phone", "plan"])
    data.append(["", "ANA@Example.com", "(415) 555-2671", "gold"])
    data.append(["crm-2", "new@example.com", "", "free"])
    data.append(["", "", "", "orphan"])
    return data


def test_import_merges_with_the_web_profile_by_email(post_collect, drain):
    post_collect("identify", {"userId": "web-1", "traits": {"email": "ana@example.com"}, "messageId": "1"})
    drain()
    web = live_profile("user_id", "web-1")

    result = ProfileResource().import_data(_import_rows(), dry_run=False)

    assert [r.import_type for r in result.rows] == ["update", "new", "invalid"]
    assert result.rows[0].instance.pk == web.pk
    assert [row.number for row in result.invalid_rows] == [3]
    web.refresh_from_db()
    assert web.traits == {"email": "ANA@Example.com", "phone": "(415) 555-2671", "plan": "gold"}
    assert live_profile("phone", "+14155552671").pk == web.pk
    new = live_profile("user_id", "crm-2")
    assert new.pk != web.pk and new.traits["plan"] == "free"
    assert Event.objects.filter(source__name="Import").count() == 2
    assert Profile.objects.filter(merged_into__isnull=True).count() == 2

    # The same file again is deduplicated by messageId: no new events, no new profiles.
    ProfileResource().import_data(_import_rows(), dry_run=False)
    assert Event.objects.filter(source__name="Import").count() == 2


def test_import_dry_run_validates_without_writing(post_collect, drain):
    post_collect("identify", {"userId": "web-1", "traits": {"email": "ana@example.com"}, "messageId": "1"})
    drain()
    result = ProfileResource().import_data(_import_rows(), dry_run=True)
    assert [r.import_type for r in result.rows] == ["update", "new", "invalid"]
    assert result.has_validation_errors()
    assert not Source.objects.filter(name="Import").exists()
    assert Event.objects.count() == 1


def test_admin_csv_import_merges_with_the_web_profile_by_email(admin_client, post_collect, drain):
    from django.core.files.uploadedfile import SimpleUploadedFile

    post_collect("identify", {"userId": "web-1", "traits": {"email": "ana@example.com"}, "messageId": "1"})
    drain()
    web = live_profile("user_id", "web-1")
    upload = SimpleUploadedFile("crm.csv", b"email,phone,plan\nANA@example.com,(415) 555-2671,gold\n",
                                content_type="text/csv")
    # Step 1: upload, which runs the dry run and renders the confirmation form.
    response = admin_client.post("/admin/profiles/profile/import/", {"resource": "0", "format": "0",
                                                                     "import_file": upload})
    assert response.status_code == 200
    confirm = response.context["confirm_form"]
    assert Event.objects.filter(source__name="Import").count() == 0
    # Step 2: confirm, which accepts the rows and runs the pipeline.
    response = admin_client.post("/admin/profiles/profile/process_import/", confirm.initial)
    assert response.status_code == 302
    web.refresh_from_db()
    assert web.traits["plan"] == "gold"
    assert live_profile("phone", "+14155552671").pk == web.pk
    assert Profile.objects.filter(merged_into__isnull=True).count() == 1


# --- masking --------------------------------------------------------------------------------------


def test_marketers_see_personal_identifiers_masked_and_privacy_officers_see_them(client, api, post_collect, drain):
    post_collect("identify", {"userId": "u-mask", "messageId": "mk", "traits": {
        "email": "Nora.North@example.com", "phone": "+1 415 555 0142", "name": "Nora North", "plan": "pro",
        "address": {"street": "1 Polar Way"}}})
    drain()
    pid = Profile.objects.get().pk
    marketer = api(f"/api/v1/profiles/{pid}/").json()
    assert marketer["traits"] == {"email": "N•••@example.com", "phone": "+1•••42", "name": "N•••", "plan": "pro",
                                  "address": "•••"}
    assert {i["type"]: i["value"] for i in marketer["identifiers"]} == {
        "user_id": "u-mask", "email": "n•••@example.com", "phone": "+1•••42"}
    event = api(f"/api/v1/profiles/{pid}/events/").json()["results"][0]
    assert event["payload"]["traits"]["email"] == "N•••@example.com"
    ApiTokenFactory(user=UserFactory(groups=["Privacy officer"]), key="cdp_officer")
    officer = api(f"/api/v1/profiles/{pid}/", key="cdp_officer").json()
    assert officer["traits"]["email"] == "Nora.North@example.com"

    client.force_login(UserFactory(groups=["Marketer"]))
    page = client.get(f"/profiles/{pid}/").content.decode()
    assert "Nora" not in page and "N•••" in page and "example.com" in page
    assert "Nora" not in client.get("/profiles/?q=u-mask").content.decode()


def test_masking_covers_merge_records_nested_traits_and_every_key_spelling(api, post_collect, drain):
    post_collect("identify", {"anonymousId": "dev-1", "messageId": "1", "traits": {"email": "kim@example.com"}})
    drain()
    post_collect("identify", {"userId": "u-9", "messageId": "2"})
    drain()
    post_collect("identify", {"userId": "u-9", "messageId": "3", "traits": {
        "email": "kim@example.com", "Email-Address": "kim@example.com", "full_name": "Kim Kay",
        "contact": {"phone": "+1 415 555 0111"}}})
    drain()
    pid = Identifier.objects.get(value="u-9").profile_id
    body = api(f"/api/v1/profiles/{pid}/").json()
    # The phone in every spelling (a bare "555" would also match a timestamp's microseconds).
    leaks = ["kim@", "Kim Kay", "415 555 0111", "+14155550111", "4155550111"]
    assert [leak for leak in leaks if leak in str(body)] == []
    assert body["traits"]["contact"] == {"phone": "+1•••11"} and body["traits"]["full_name"] == "K•••"
    [merge] = body["merges"]
    assert "email:k•••@example.com" in merge["linking_identifiers"] and "kim@" not in merge["reason"]
    events = api(f"/api/v1/profiles/{pid}/events/").json()["results"]
    assert "kim@" not in str(events) and "Kim Kay" not in str(events)


def test_the_admin_role_has_every_permission_and_the_others_only_theirs():
    from django.contrib.auth.models import Group, Permission

    assert Group.objects.get(name="Admin").permissions.count() == Permission.objects.count()
    marketer = set(Group.objects.get(name="Marketer").permissions.values_list("codename", flat=True))
    assert "view_personal_data" not in marketer and "view_consententry" not in marketer
    assert "view_profile" in marketer and "view_consentstate" in marketer
