"""The screens over HTTP: error pages, the profile list's filters, sorting and export, the dashboard's date range."""
import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import path, reverse
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from cdp import profile_csv
from cdp import urls as cdp_urls
from cdp import views
from consent.services.erasure import privacy_erase_step
from consent.services.ledger import ConsentChoice, consent_record
from consent.services.privacy import privacy_request_create, privacy_request_execute, privacy_request_verify
from profiles.models import MergeRecord, Profile, Source
from profiles.services.enrichment import profiles_enrich

pytestmark = pytest.mark.django_db


def _ago(**delta) -> str:
    return (timezone.now() - timedelta(**delta)).isoformat()


@pytest.fixture
def log_in_as(client, django_user_model):
    def log_in(role: str, username: str = ""):
        user = django_user_model.objects.create_user(username or role.lower().replace(" ", "-"), password="pw")
        user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        return user
    return log_in


@pytest.fixture
def shop(post_collect, drain):
    """Three customers, created one after the other: Cy (anonymous, seen 40 days ago), Bob (France, plan free,
    seen 20 days ago) and Ann (US, plan gold, seen 2 days ago, 2 orders)."""
    batches = [
        [{"type": "page", "anonymousId": "cy", "name": "Home", "messageId": "c1", "timestamp": _ago(days=40)}],
        [{"type": "identify", "userId": "bob", "messageId": "b1", "timestamp": _ago(days=20),
          "traits": {"email": "=HYPERLINK(\"http://x\")@example.org", "name": "Bob Stone", "country": "FR",
                     "plan": "free"}}],
        [{"type": "identify", "userId": "ann", "messageId": "a1", "timestamp": _ago(days=3),
          "traits": {"email": "ann@example.com", "phone": "+1 415 555 0100", "name": "Ann Lee", "country": "US",
                     "plan": "gold"}},
         {"type": "track", "userId": "ann", "event": "Order Completed", "messageId": "a2", "timestamp": _ago(days=2),
          "properties": {"revenue": 30}},
         {"type": "track", "userId": "ann", "event": "Order Completed", "messageId": "a3", "timestamp": _ago(days=2),
          "properties": {"revenue": 12.5}}],
    ]
    for batch in batches:
        post_collect("batch", {"batch": batch})
        drain()
    profiles_enrich()
    return {name: Profile.objects.get(identifiers__value=uid) for name, uid in
            (("ann", "ann"), ("bob", "bob"), ("cy", "cy"))}


def _ids(response) -> list[int]:
    return [p.id for p in response.context["page"]]


# Error pages


def test_an_unknown_page_is_a_styled_404_with_the_navigation(client, log_in_as):
    log_in_as("Marketer")

    response = client.get("/no/such/page/")

    assert response.status_code == 404
    assert [t.name for t in response.templates][:2] == ["404.html", "base.html"]
    html = response.content.decode()
    assert 'aria-label="Main"' in html and "No page has this address" in html


def test_an_api_or_collection_path_answers_404_as_json(client):
    for url in ("/api/v1/nothing-here", "/v1/x"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response["Content-Type"] == "application/json" and response.json()["code"] == "not_found"


def test_a_page_the_role_may_not_see_is_a_styled_403_saying_why(client, log_in_as):
    log_in_as("Marketer", "mia")

    response = client.get(reverse("privacy-queue"))

    assert response.status_code == 403
    html = response.content.decode()
    assert "Your role does not include this page" in html
    assert "You are logged in as mia (Marketer)" in html and 'aria-label="Main"' in html


def _boom(request):
    raise RuntimeError("secret-detail-42")


urlpatterns = [path("boom/", _boom), path("api/v1/boom/", _boom), *cdp_urls.urlpatterns]
handler500 = views.server_error


@pytest.mark.urls(__name__)
def test_a_fault_is_a_styled_500_and_never_the_debug_page(django_user_model):
    user = django_user_model.objects.create_user("m", password="pw")
    client = Client(raise_request_exception=False)
    client.force_login(user)

    page = client.get("/boom/")
    api = client.get("/api/v1/boom/")

    assert page.status_code == 500 and 'aria-label="Main"' in page.content.decode()
    assert "Something went wrong on our side" in page.content.decode()
    assert "Traceback" not in page.content.decode() and "secret-detail-42" not in page.content.decode()
    assert api.status_code == 500 and api.json()["code"] == "server_error"


def test_static_files_are_served_with_debug_off_and_without_collectstatic(client, settings):
    assert settings.DEBUG is False and not (settings.STATIC_ROOT / "cdp").exists()

    for url in ("/static/cdp/app.css", "/static/vendor/chart-4.6.1.umd.min.js",
                "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert int(response["Content-Length"]) > 1000, url


def test_an_erased_profile_says_which_request_erased_it(client, log_in_as, shop):
    ann = shop["ann"]
    request = privacy_request_create(kind="deletion", regime="gdpr",
                                     identifiers=[{"type": "email", "value": "ann@example.com"}])
    privacy_request_verify(request_id=request.pk)
    privacy_request_execute(request_id=request.pk)
    while not privacy_erase_step(request_id=request.pk):
        pass
    log_in_as("Marketer")

    erased = client.get(reverse("profile-detail", args=[ann.id]))
    never = client.get(reverse("profile-detail", args=[ann.id + 1000]))

    assert erased.status_code == 404
    assert f"This profile was erased by request #{request.pk}" in erased.content.decode()
    assert never.status_code == 404 and "erased" not in never.content.decode()
    assert "No profile has this number" in never.content.decode()


def test_an_identify_without_user_id_shows_in_the_timeline(client, log_in_as, post_collect, drain):
    post_collect("identify", {"anonymousId": "anon-9", "messageId": "i1", "traits": {"plan": "gold"}})
    drain()
    log_in_as("Marketer")

    response = client.get(reverse("profile-detail", args=[Profile.objects.get().id]))

    assert response.status_code == 200 and b"identify" in response.content


# The profile list


def test_profile_list_filters_by_trait_last_seen_and_consent(client, log_in_as, shop):
    ann, bob, cy = shop["ann"], shop["bob"], shop["cy"]
    consent_record(choices=[ConsentChoice(profile_id=bob.id, purpose="marketing_email", granted=True,
                                          source="admin", recorded_at=timezone.now())])
    log_in_as("Marketer")
    url = reverse("profile-list")
    today = timezone.localdate()

    assert _ids(client.get(url)) == [ann.id, bob.id, cy.id]
    assert _ids(client.get(url, {"trait": "plan"})) == [ann.id, bob.id]
    assert _ids(client.get(url, {"trait": "plan", "trait_value": "GOLD"})) == []  # values match whole, as typed
    assert _ids(client.get(url, {"trait": "plan", "trait_value": "gold"})) == [ann.id]
    assert _ids(client.get(url, {"seen_from": (today - timedelta(days=25)).isoformat()})) == [ann.id, bob.id]
    assert _ids(client.get(url, {"seen_from": (today - timedelta(days=25)).isoformat(),
                                 "seen_to": (today - timedelta(days=10)).isoformat()})) == [bob.id]
    # marketing_email: granted by Bob; Ann (US, CCPA) allows it by default; Cy (GDPR by default) does not.
    assert _ids(client.get(url, {"purpose": "marketing_email", "consent": "allowed"})) == [ann.id, bob.id]
    assert _ids(client.get(url, {"purpose": "marketing_email", "consent": "denied"})) == [cy.id]
    assert _ids(client.get(url, {"purpose": "marketing_email", "consent": "allowed", "trait": "plan",
                                 "trait_value": "free"})) == [bob.id]


def test_profile_list_sorts(client, log_in_as, shop):
    ann, bob, cy = shop["ann"].id, shop["bob"].id, shop["cy"].id
    log_in_as("Marketer")

    def order(sort):
        return _ids(client.get(reverse("profile-list"), {"sort": sort}))

    assert order("-last_seen") == [ann, bob, cy] and order("last_seen") == [cy, bob, ann]
    # Ties (Bob and Cy: one event each, no orders) go to the newest profile first.
    assert order("-events") == [ann, bob, cy] and order("events") == [bob, cy, ann]
    assert order("-value") == [ann, bob, cy] and order("value") == [bob, cy, ann]
    assert order("-created") == [ann, bob, cy] and order("created") == [cy, bob, ann]


@pytest.mark.parametrize("params, field", [
    ({"sort": "password"}, "sort"),
    ({"seen_from": "yesterday"}, "seen_from"),
    ({"seen_from": "2026-02-30"}, "seen_from"),
    ({"seen_from": "2026-05-01", "seen_to": "2026-04-01"}, "seen_to"),
    ({"seen_to": "9999-12-31"}, None),
    ({"purpose": "no_such_purpose"}, "purpose"),
    ({"consent": "denied"}, "purpose"),
    ({"consent": "maybe", "purpose": "analytics"}, "consent"),
    ({"trait_value": "gold"}, "trait"),
    ({"q": "\x00"}, "q"),
    ({"trait": "plan\x00"}, "trait"),
    ({"q": "x" * 201}, "q"),
    ({"page": "-1"}, None),
    ({"page": "9223372036854775808"}, None),
])
def test_profile_list_reports_bad_filters_and_never_fails(client, log_in_as, shop, params, field):
    log_in_as("Marketer")

    response = client.get(reverse("profile-list"), params)
    export = client.get(reverse("profile-export"), params)

    assert response.status_code == 200 and export.status_code == 200
    form = response.context["form"]
    assert list(form.errors) == ([field] if field else [])
    if field:
        assert "This filter was left out." in response.content.decode()


def _csv(response) -> list[dict]:
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"].startswith('attachment; filename="profiles-')
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_export_masks_for_a_marketer_and_leaves_out_who_does_not_allow_sharing(client, log_in_as, shop):
    # Ann is under CCPA (sharing allowed until she opts out); Bob (GDPR) granted it; Cy never did (GDPR: no).
    ann, bob = shop["ann"], shop["bob"]
    consent_record(choices=[ConsentChoice(profile_id=bob.id, purpose="sale_sharing", granted=True,
                                          source="admin", recorded_at=timezone.now())])
    log_in_as("Marketer")

    rows = _csv(client.get(reverse("profile-export")))

    assert [int(r["profile_id"]) for r in rows] == [ann.id, bob.id]
    first = rows[0]
    assert (first["user_id"], first["email"], first["phone"], first["name"]) == ("ann", "a•••@example.com",
                                                                                   "+1•••00", "A•••")
    assert first["orders"] == "2" and float(first["lifetime_value"]) == 42.5 and first["events"] == "3"
    body = "".join(str(r) for r in rows)
    for secret in ("ann@example.com", "+14155550100", "Ann Lee", "Bob Stone"):
        assert secret not in body
    # A value a spreadsheet would run as a formula is quoted.
    assert rows[1]["email"] == "'=•••@example.org"


def test_export_is_in_clear_for_a_privacy_officer_and_follows_the_filters(client, log_in_as, shop):
    ann, bob = shop["ann"], shop["bob"]
    consent_record(choices=[ConsentChoice(profile_id=bob.id, purpose="sale_sharing", granted=True,
                                          source="admin", recorded_at=timezone.now())])
    log_in_as("Privacy officer")

    everyone = _csv(client.get(reverse("profile-export")))
    free = _csv(client.get(reverse("profile-export"), {"trait": "plan", "trait_value": "free"}))

    assert [(r["email"], r["phone"], r["name"]) for r in everyone] == [
        ("ann@example.com", "+14155550100", "Ann Lee"),
        ("'=hyperlink(\"http://x\")@example.org", "", "Bob Stone")]
    assert [int(r["profile_id"]) for r in free] == [bob.id]
    consent_record(choices=[ConsentChoice(profile_id=ann.id, purpose="sale_sharing", granted=False,
                                          source="admin", recorded_at=timezone.now())])
    ann_sharing_off = _csv(client.get(reverse("profile-export")))
    assert [int(r["profile_id"]) for r in ann_sharing_off] == [bob.id]


@given(st.text(max_size=30))
def test_a_csv_cell_never_starts_a_formula(text):
    cell = profile_csv._cell(text)

    assert cell in (text, "'" + text)
    plain_phone = text.startswith("+") and text[1:].replace("•", "").isdigit()
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")) or plain_phone
    assert profile_csv._cell(12) == "12" and profile_csv._cell(-3.5) == "-3.5"


def test_export_needs_a_login(client, shop):
    response = client.get(reverse("profile-export"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


# The dashboard


def test_dashboard_range_presets_and_custom_dates(client, log_in_as, shop):
    log_in_as("Marketer")
    today = timezone.localdate()

    week = client.get(reverse("dashboard"), {"days": "7"}).context["stats"]
    quarter = client.get(reverse("dashboard"), {"days": "90"}).context["stats"]
    custom = client.get(reverse("dashboard"), {"start": (today - timedelta(days=25)).isoformat(),
                                               "end": (today - timedelta(days=15)).isoformat()})

    assert len(week["days"]) == 7 and week["days"][-1] == today.isoformat()
    assert week["events_total"] == 3  # Ann's identify and two orders
    assert quarter["events_total"] == 5 and len(quarter["days"]) == 90
    stats = custom.context["stats"]
    assert len(stats["days"]) == 11 and stats["events_total"] == 1  # Bob's identify, 20 days ago
    assert stats["events_per_source"] == [{"source": "web", "n": 1, "share": 1.0}]
    assert custom.context["form"].errors == {}


@pytest.mark.parametrize("params, message", [
    ({"days": "8"}, "Select a valid choice"),
    ({"days": "x"}, "Select a valid choice"),
    ({"start": "2026-13-01", "end": "2026-01-01"}, "Enter a valid date"),
    ({"start": "2026-03-01"}, "Give both dates"),
    ({"start": "2026-03-02", "end": "2026-03-01"}, "ends before it starts"),
    ({"start": "2020-01-01", "end": "2022-01-01"}, "at most 366 days"),
    ({"start": "2026-01-01", "end": "9999-12-31"}, "cannot end after today"),
    ({"start": "\x00", "end": "2026-01-01"}, "Enter a valid date"),
])
def test_dashboard_bad_range_is_a_message_and_the_default_range(client, log_in_as, params, message):
    log_in_as("Marketer")

    response = client.get(reverse("dashboard"), params)

    assert response.status_code == 200
    assert message in response.content.decode() and "Showing the last 30 days." in response.content.decode()
    assert len(response.context["stats"]["days"]) == 30


def test_merges_are_dated_by_the_event_that_linked_the_identities(client, log_in_as, post_collect, drain):
    # Processed now, but the person signed in on the second device ten days ago.
    post_collect("batch", {"batch": [
        {"type": "page", "anonymousId": "laptop", "messageId": "p1", "timestamp": _ago(days=12)},
        {"type": "identify", "anonymousId": "laptop", "userId": "u1", "messageId": "i1", "timestamp": _ago(days=11)},
        {"type": "page", "anonymousId": "phone", "messageId": "p2", "timestamp": _ago(days=10, hours=1)},
    ]})
    drain()
    post_collect("identify", {"anonymousId": "phone", "userId": "u1", "messageId": "i2", "timestamp": _ago(days=10)})
    drain()
    merge = MergeRecord.objects.get(outcome="merged")
    assert timezone.now() - merge.created_at < timedelta(minutes=5)
    log_in_as("Marketer")

    stats = client.get(reverse("dashboard"), {"days": "30"}).context["stats"]
    week = client.get(reverse("dashboard"), {"days": "7"}).context["stats"]

    linked_on = (timezone.localtime() - timedelta(days=10)).date().isoformat()
    assert {day: n for day, n in zip(stats["days"], stats["merges"]) if n} == {linked_on: 1}
    assert stats["merges_in_range"] == 1 and week["merges_in_range"] == 0 and week["merges_total"] == 1


def test_dashboard_counts_events_per_source(client, log_in_as, source, post_collect, drain):
    app = Source.objects.create(name="Mobile app")
    post_collect("batch", {"batch": [{"type": "track", "userId": "u", "event": "E", "messageId": f"w{i}"}
                                     for i in range(3)]})
    post_collect("track", {"userId": "u", "event": "E", "messageId": "m1"}, write_key=app.write_key)
    drain()
    log_in_as("Marketer")

    response = client.get(reverse("dashboard"))

    assert response.context["stats"]["events_per_source"] == [
        {"source": "web", "n": 3, "share": 0.75}, {"source": "Mobile app", "n": 1, "share": 0.25}]
    assert 'id="per-source"' in response.content.decode()


def test_make_run_serves_without_debug_static_files_and_styled_errors(subprocess_env, wait_until):
    """`make run` leaves DEBUG to the environment (off by default): runserver then serves the static files through
    WhiteNoise and answers a missing page with the styled 404, never Django's debug page."""
    import subprocess
    import sys
    import urllib.error
    import urllib.request
    from pathlib import Path

    from tests.conftest import _free_port

    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    run_recipe = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "DEBUG" not in run_recipe and "DEBUG" not in makefile.split("\nrun:", 1)[0]
    env = {key: value for key, value in subprocess_env.items() if key != "DEBUG"}
    port = _free_port()
    server = subprocess.Popen([sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def get(path):
        try:
            with urllib.request.urlopen(url + path, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return None

    try:
        wait_until(lambda: get("/healthz"), seconds=30, what="runserver")
        status, css = get("/static/cdp/app.css")
        missing_status, missing = get("/no/such/page/")
    finally:
        server.terminate()
        server.wait(10)

    assert status == 200 and "--field-line" in css
    assert missing_status == 404 and "No page has this address" in missing and "URLconf" not in missing
