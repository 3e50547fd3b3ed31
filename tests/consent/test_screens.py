"""The privacy screens over HTTP: the new-request form and its errors, a request's page and its actions, the
queue, receipts in plain words and the viewer's time zone, the audit log viewer, the dashboard and the landing."""
import re
import zoneinfo
from datetime import timedelta

import orjson
import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from consent import selectors
from consent.models import AuditEntry, ConsentEntry, PrivacyRequest, PrivacyRequestTransition
from consent.services import privacy
from consent.services.audit import audit_record
from consent.services.erasure import privacy_erase_step
from profiles.models import Identifier, Profile
from tests.consent.test_privacy import subject_traffic
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def olga(db):
    return UserFactory(username="olga", groups=["Privacy officer"])


@pytest.fixture
def officer_client(client, olga):
    client.force_login(olga)
    return client


def request_form(kind="access", regime="gdpr", identifiers=(("email", "zoe.quartz@example.org"),), changes=(),
                 **extra):
    """The new-request form as the browser sends it (Django's formset numbering)."""
    data = {"kind": kind, "regime": regime, "notes": "", "identifiers-TOTAL_FORMS": str(len(identifiers)),
            "identifiers-INITIAL_FORMS": "0", "changes-TOTAL_FORMS": str(len(changes)), "changes-INITIAL_FORMS": "0"}
    for i, (kind_, value) in enumerate(identifiers):
        data[f"identifiers-{i}-type"], data[f"identifiers-{i}-value"] = kind_, value
    for i, (key, value) in enumerate(changes):
        data[f"changes-{i}-key"], data[f"changes-{i}-value"] = key, value
    return {**data, **extra}


def snapshot():
    return (list(PrivacyRequest.objects.order_by("id").values()), PrivacyRequestTransition.objects.count(),
            AuditEntry.objects.count(), ConsentEntry.objects.count())


def section(html: str, element_id: str) -> str:
    """The HTML of the element with this id (up to its closing tag of the same name)."""
    start = re.search(rf'<(\w+)[^>]*\bid="{element_id}"', html)
    assert start, f"#{element_id} not in the page"
    tag, depth = start.group(1), 0
    for match in re.finditer(rf"<(/?){tag}\b[^>]*>", html[start.start():]):
        depth += -1 if match.group(1) else 1
        if depth == 0:
            return html[start.start():start.start() + match.end()]
    raise AssertionError(f"#{element_id} is not closed")


def field_error(html: str, field_id: str) -> str:
    match = re.search(rf'<p class="field-error" id="{field_id}_error">([^<]*)</p>', html)
    return match.group(1) if match else ""


# --- a new request ------------------------------------------------------------------------------------------


def test_a_rectification_is_created_with_its_corrected_values_from_the_rows(officer_client, olga):
    form = officer_client.get("/privacy/new/").content.decode()
    assert 'name="changes-TOTAL_FORMS"' in form and 'id="add-change"' in form
    assert '<template data-template="changes">' in form  # the row the "add" button copies

    response = officer_client.post("/privacy/new/", request_form(
        "rectification", identifiers=[("email", " Zoe.Quartz@Example.org "), ("phone", "")],
        changes=[("name", "Zoe Q. Field"), ("", ""), ("city", "Quartz Bay")], notes="by phone"))

    created = PrivacyRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/privacy/{created.pk}/"
    assert (created.kind, created.changes, created.identifiers, created.notes, created.assignee) == (
        "rectification", {"name": "Zoe Q. Field", "city": "Quartz Bay"},
        [{"type": "email", "value": "zoe.quartz@example.org"}], "by phone", olga)
    page = officer_client.get(response["Location"]).content.decode()
    changes = section(page, "changes")
    assert "Zoe Q. Field" in changes and "Quartz Bay" in changes and "known once carried out" in changes


ERRORS = [
    # (what was typed, the field whose error it is, the error, the typed value shown again)
    ({"identifiers-0-value": "not-an-email"}, "id_identifiers-0-value", "Not an email address.", "not-an-email"),
    ({"identifiers-0-type": "phone", "identifiers-0-value": "12"}, "id_identifiers-0-value", "Not a phone number.",
     "12"),
    ({"identifiers-0-type": "fax"}, "id_identifiers-0-type", "Select a valid choice.", None),
    ({"identifiers-0-value": "a\x00@b.c"}, "id_identifiers-0-value", "Null characters are not allowed.", None),
    ({"identifiers-0-value": "x" * 513 + "@b.c"}, "id_identifiers-0-value", "at most 512 characters", None),
    ({"kind": "erase-me"}, "id_kind", "Select a valid choice.", None),
    ({"regime": "lgpd"}, "id_regime", "Select a valid choice.", None),
    ({"kind": "rectification", "changes-TOTAL_FORMS": "1", "changes-0-key": "first name",
      "changes-0-value": "Zoe"}, "id_changes-0-key", "letters, digits and underscores", "first name"),
    ({"kind": "rectification", "changes-TOTAL_FORMS": "1", "changes-0-key": "name", "changes-0-value": ""},
     "id_changes-0-value", "Give the corrected value.", None),
    ({"kind": "rectification", "changes-TOTAL_FORMS": "1", "changes-0-key": "email",
      "changes-0-value": "zoe at example"}, "id_changes-0-value", "Not an email address.", "zoe at example"),
    ({"kind": "rectification", "changes-TOTAL_FORMS": "2", "changes-0-key": "name", "changes-0-value": "A",
      "changes-1-key": "name", "changes-1-value": "B"}, "id_changes-1-key", "corrected in a row above", None),
    ({"notes": "n" * 4001}, "id_notes", "at most 4000 characters", None),
]


@pytest.mark.parametrize("typed, field_id, message, shown", ERRORS)
def test_each_error_is_shown_next_to_its_field_with_what_was_typed_and_nothing_is_created(
        officer_client, typed, field_id, message, shown):
    before = snapshot()
    response = officer_client.post("/privacy/new/", {**request_form(), **typed})

    assert response.status_code == 400
    page = response.content.decode()
    assert message in field_error(page, field_id)
    assert 'aria-invalid="true"' in re.search(rf'<[^>]*id="{field_id}"[^>]*>', page).group(0)
    if shown:
        assert f'value="{shown}"' in re.search(rf'<input[^>]*id="{field_id}"[^>]*>', page).group(0)
    assert snapshot() == before


@pytest.mark.parametrize("typed, where, message", [
    ({"identifiers-0-value": ""}, "identifiers", "Give at least one identifier of the subject."),
    ({"kind": "rectification"}, "changes", "A rectification needs at least one corrected value."),
    ({"changes-TOTAL_FORMS": "1", "changes-0-key": "name", "changes-0-value": "Zoe"}, "changes",
     "Only a rectification corrects values"),
    ({"identifiers-TOTAL_FORMS": "999999"}, "identifiers", "Please submit at most 20 forms."),
])
def test_errors_of_a_set_of_rows_are_shown_on_that_set(officer_client, typed, where, message):
    before = snapshot()
    response = officer_client.post("/privacy/new/", {**request_form(), **typed})
    assert response.status_code == 400
    assert message in section(response.content.decode(), where)
    assert snapshot() == before


def test_a_form_whose_rows_never_arrived_gets_working_rows_again(officer_client):
    response = officer_client.post("/privacy/new/", {"kind": "access", "regime": "gdpr"})
    page = response.content.decode()
    assert response.status_code == 400 and "The subject&#x27;s identifiers did not arrive" in page
    assert 'name="identifiers-TOTAL_FORMS" value="1"' in page and not PrivacyRequest.objects.exists()


# --- a request's page and its actions -----------------------------------------------------------------------


def test_the_request_page_offers_only_the_actions_that_apply(officer_client):
    opt_out = privacy.privacy_request_create(kind="opt_out_sale", regime="ccpa", identifiers=[
        {"type": "email", "value": "zoe.quartz@example.org"}])
    access = privacy.privacy_request_create(kind="access", regime="gdpr", identifiers=[
        {"type": "email", "value": "zoe.quartz@example.org"}])

    def offered(request_id):
        html = section(officer_client.get(f"/privacy/{request_id}/").content.decode(), "actions")
        return [a for a in ("verify", "execute", "extend", "reject", "assign") if f'id="form-{a}"' in html], html

    assert offered(opt_out.pk)[0] == ["execute", "reject", "assign"]
    assert offered(access.pk)[0] == ["verify", "extend", "reject", "assign"]
    officer_client.post(f"/privacy/{access.pk}/verify/", {"note": "passport"})
    assert offered(access.pk)[0] == ["execute", "extend", "reject", "assign"]
    officer_client.post(f"/privacy/{opt_out.pk}/execute/")
    actions, html = offered(opt_out.pk)
    assert actions == [] and "Nothing left to do: the request is closed." in html


def test_a_refused_action_shows_its_error_in_that_actions_form_and_nowhere_else(officer_client):
    first = privacy.privacy_request_create(kind="access", regime="gdpr", identifiers=[
        {"type": "email", "value": "zoe.quartz@example.org"}])
    other = privacy.privacy_request_create(kind="access", regime="gdpr", identifiers=[
        {"type": "email", "value": "max@example.org"}])
    before = snapshot()

    blank = officer_client.post(f"/privacy/{first.pk}/extend/", {"reason": "   "})
    long = officer_client.post(f"/privacy/{first.pk}/reject/", {"reason": "r" * 2001})
    early = officer_client.post(f"/privacy/{first.pk}/execute/")

    assert (blank.status_code, long.status_code, early.status_code) == (400, 400, 400)
    assert "This field is required." in field_error(blank.content.decode(), "id_extend_reason")
    assert "at most 2000 characters" in field_error(long.content.decode(), "id_reject_reason")
    assert "verify the subject&#x27;s identity first" in section(early.content.decode(), "form-execute")
    assert snapshot() == before
    # Nothing is left behind to surface later on another request's page.
    assert "field-error" not in officer_client.get(f"/privacy/{other.pk}/").content.decode()


def test_an_action_no_longer_offered_is_refused_with_its_reason(officer_client):
    opt_out = privacy.privacy_request_create(kind="opt_out_sale", regime="ccpa", identifiers=[
        {"type": "email", "value": "zoe.quartz@example.org"}])
    before = snapshot()
    verify = officer_client.post(f"/privacy/{opt_out.pk}/verify/")
    extend = officer_client.post(f"/privacy/{opt_out.pk}/extend/", {"reason": "busy"})
    assert (verify.status_code, extend.status_code) == (400, 400)
    assert "carried out without identity verification" in section(verify.content.decode(), "form-verify")
    assert "cannot be extended" in section(extend.content.decode(), "form-extend")
    assert snapshot() == before


def test_assignment_from_the_request_page(officer_client, olga):
    pia = UserFactory(username="pia", groups=["Privacy officer"])
    mark = UserFactory(username="mark", groups=["Marketer"])
    request = privacy.privacy_request_create(kind="access", regime="gdpr", identifiers=[
        {"type": "email", "value": "zoe.quartz@example.org"}])
    page = officer_client.get(f"/privacy/{request.pk}/").content.decode()
    options = re.findall(r'<option value="(\d*)"[^>]*>([^<]+)</option>', section(page, "id_assign_assignee"))
    assert options == [("", "No one"), (str(olga.pk), "olga"), (str(pia.pk), "pia")]  # marketers cannot be

    assert officer_client.post(f"/privacy/{request.pk}/assign/", {"assignee": pia.pk}).status_code == 302
    before = snapshot()
    refused = officer_client.post(f"/privacy/{request.pk}/assign/", {"assignee": mark.pk})
    assert refused.status_code == 400 and "Select a valid choice" in field_error(refused.content.decode(),
                                                                                 "id_assign_assignee")
    assert snapshot() == before
    page = officer_client.get(f"/privacy/{request.pk}/").content.decode()
    assert "pia" in section(page, "assignee") and ">assign<" in section(page, "history")


def test_a_rectifications_page_shows_what_was_asked_and_the_values_before_once_done(officer_client, post_collect,
                                                                                    drain):
    subject_traffic(post_collect, drain)
    request = privacy.privacy_request_create(kind="rectification", regime="gdpr", identifiers=[
        {"type": "user_id", "value": "zoe-42"}], changes={"name": "Zoe Q. Field", "nickname": "Zed"})
    officer_client.post(f"/privacy/{request.pk}/verify/")
    officer_client.post(f"/privacy/{request.pk}/execute/")
    drain()

    changes = section(officer_client.get(f"/privacy/{request.pk}/").content.decode(), "changes")
    rows = {key: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip()
            for key, row in re.findall(r'<tr data-trait="(\w+)">(.*?)</tr>', changes, re.S)}
    assert rows == {"name": "name Zoe Q. Field Zoe Quartzfield", "nickname": "nickname Zed not set"}


def test_a_reader_without_the_personal_data_permission_sees_the_subject_masked(client, officer_client):
    request = privacy.privacy_request_create(kind="rectification", regime="gdpr", identifiers=[
        {"type": "email", "value": "zoe.quartz@example.org"}], changes={"name": "Zoe Q. Field"})
    auditor = UserFactory(username="auditor")
    auditor.user_permissions.add(Permission.objects.get(codename="view_privacyrequest"))
    client.force_login(auditor)

    queue = client.get("/privacy/").content.decode()
    page = client.get(f"/privacy/{request.pk}/").content.decode()

    assert "z•••@example.org" in section(queue, "queue") and "zoe.quartz" not in queue
    assert "z•••@example.org" in section(page, "subject") and "zoe.quartz" not in page
    assert "Z•••" in section(page, "changes") and "Zoe Q. Field" not in page


# --- the queue ----------------------------------------------------------------------------------------------


def _request(kind="access", regime="gdpr", email="zoe.quartz@example.org", days_ago=0, **kwargs):
    return privacy.privacy_request_create(kind=kind, regime=regime, identifiers=[{"type": "email", "value": email}],
                                          received_at=timezone.now() - timedelta(days=days_ago), **kwargs)


def _queue(client, **query):
    response = client.get("/privacy/", query)
    assert response.status_code == 200, response.content.decode()[:2000]
    html = response.content.decode()
    rows = re.findall(r'<tr class="(\w*)" data-request="(\d+)">(.*?)</tr>', section(html, "queue"), re.S)
    return [(int(pk), flag, re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", cells)).strip()) for flag, pk, cells in rows]


def test_the_queue_shows_subject_days_left_and_keeps_open_and_closed_apart(officer_client, olga):
    overdue = _request(email="ann@example.org", days_ago=40)
    soon = _request("deletion", "ccpa", email="bo@example.org", days_ago=40)
    fresh = _request("opt_out_sale", "ccpa", email="cy@example.org")
    done = _request("opt_out_sale", "ccpa", email="di@example.org")
    privacy.privacy_request_execute(request_id=done.pk)
    today = privacy.privacy_today()

    rows = _queue(officer_client)
    assert [pk for pk, _, _ in rows] == [overdue.pk, soon.pk, fresh.pk]  # the earliest due first
    flags = {pk: flag for pk, flag, _ in rows}
    assert flags == {overdue.pk: "overdue", soon.pk: "soon", fresh.pk: ""}
    text = {pk: cells for pk, _, cells in rows}
    assert "ann@example.org" in text[overdue.pk] and "Received" in text[overdue.pk]
    assert f"{(today - overdue.due_on).days} days overdue" in text[overdue.pk]
    assert f"{(soon.due_on - today).days} days left" in text[soon.pk]
    assert f"{(fresh.due_on - today).days} days left" in text[fresh.pk]
    page = officer_client.get("/privacy/").content.decode()
    assert 'class="badge status-received"' in page and 'class="badge days overdue"' in page
    assert re.search(r'id="tab-open"[^>]*>Open <span class="count">3</span>', page)
    assert re.search(r'id="tab-closed"[^>]*>Closed <span class="count">1</span>', page)

    closed = _queue(officer_client, state="closed")
    assert [(pk, flag) for pk, flag, _ in closed] == [(done.pk, "")]
    assert "Completed" in closed[0][2] and "di@example.org" in closed[0][2]


def test_the_queue_finds_a_request_by_email_phone_or_id_and_filters_by_kind_regime_and_assignee(officer_client,
                                                                                              olga):
    pia = UserFactory(username="pia", groups=["Privacy officer"])
    ann = _request(email="ann@example.org", actor=olga)
    bo = privacy.privacy_request_create(kind="deletion", regime="ccpa", identifiers=[
        {"type": "phone", "value": "+1 415 555 0199"}, {"type": "user_id", "value": "bo-1"}])
    cy = _request("opt_out_sale", "ccpa", email="cy@example.org")
    privacy.privacy_request_assign(request_id=cy.pk, assignee_id=pia.pk)

    def found(**query):
        return sorted(pk for pk, _, _ in _queue(officer_client, **query))

    assert found(q="  ANN@Example.ORG ") == [ann.pk]
    assert found(q="(415) 555-0199") == [bo.pk] == found(q="+14155550199")
    assert found(q=f"#{cy.pk}") == [cy.pk] == found(q=str(cy.pk))
    assert found(q="nobody@example.org") == []
    assert found(kind="deletion") == [bo.pk]
    assert found(regime="ccpa") == [bo.pk, cy.pk]
    assert found(assignee=str(olga.pk)) == [ann.pk]
    assert found(assignee="none") == [bo.pk]
    assert found(assignee=str(pia.pk), regime="ccpa", kind="opt_out_sale") == [cy.pk]


@pytest.mark.parametrize("query, field", [
    ({"kind": "erase-me"}, "id_kind"), ({"regime": "lgpd"}, "id_regime"), ({"assignee": "99999999999999999999"},
                                                                             "id_assignee"),
    ({"q": "a\x00b"}, "id_q"), ({"q": "x" * 321}, "id_q")])
def test_a_bad_filter_is_refused_next_to_its_field(officer_client, query, field):
    response = officer_client.get("/privacy/", query)
    assert response.status_code == 400 and field_error(response.content.decode(), field)


def test_the_queue_lists_500_requests_with_a_fixed_number_of_queries(officer_client, olga,
                                                                     django_assert_max_num_queries):
    officers = [UserFactory(username=f"officer{i}", groups=["Privacy officer"]) for i in range(5)]
    today = timezone.now()
    PrivacyRequest.objects.bulk_create([PrivacyRequest(
        kind="access", regime="gdpr", identifiers=[{"type": "email", "value": f"person{i}@example.org"}],
        received_at=today, due_on=today.date() + timedelta(days=i % 40 - 10), assignee=officers[i % 5])
        for i in range(501)])

    with django_assert_max_num_queries(7) as few:
        _queue(officer_client, q="person3@example.org")
    with django_assert_max_num_queries(len(few)) as many:
        rows = _queue(officer_client)
    assert len(rows) == 500 and {flag for _, flag, _ in rows} == {"overdue", "soon", ""}
    assert len(many) == len(few)  # the same for 1 row as for 500


# --- receipts and time zones --------------------------------------------------------------------------------


def test_a_deletion_receipt_is_in_plain_words_in_the_viewers_time_zone_and_downloadable(officer_client,
                                                                                       post_collect, drain):
    subject_traffic(post_collect, drain)
    request = _request("deletion", email="zoe.quartz@example.org")
    officer_client.post(f"/privacy/{request.pk}/verify/")
    officer_client.post(f"/privacy/{request.pk}/execute/")
    while not privacy_erase_step(request_id=request.pk):
        pass
    request.refresh_from_db()
    completed = timezone.localtime(request.completed_at, timezone=zoneinfo.ZoneInfo("Asia/Tokyo"))

    chosen = officer_client.post("/time-zone/", {"time_zone": "Asia/Tokyo", "next": f"/privacy/{request.pk}/"})
    assert chosen.status_code == 302 and chosen["Location"] == f"/privacy/{request.pk}/"
    page = officer_client.get(f"/privacy/{request.pk}/").content.decode()

    receipt = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", section(page, "receipt")))
    assert "5 events erased" in receipt and "2 profiles erased" in receipt
    assert "5 identifiers suppressed" in receipt
    assert "1 consent choice kept as proof, without personal data" in receipt
    assert "consent_entries_anonymised" not in page and "merge_records" not in page
    assert f"Completed {completed:%Y-%m-%d %H:%M:%S} JST" in receipt
    assert '<option value="Asia/Tokyo" selected>' in page

    text = officer_client.get(f"/privacy/{request.pk}/receipt.txt")
    assert text["Content-Disposition"] == f'attachment; filename="privacy-request-{request.pk}-receipt.txt"'
    body = text.content.decode()
    assert "- 5 events erased" in body and f"Completed: {completed:%Y-%m-%d %H:%M} JST" in body
    assert "Times are in Asia/Tokyo." in body and "zoe" not in body.lower()
    document = orjson.loads(officer_client.get(f"/privacy/{request.pk}/receipt.json").content)
    assert document["receipt"] == request.receipt and "5 events erased" in document["summary"]
    assert document["status"] == "completed" and "zoe" not in str(document).lower()


def test_an_open_request_has_no_receipt_to_download(officer_client):
    request = _request()
    assert officer_client.get(f"/privacy/{request.pk}/receipt.json").status_code == 404
    assert "receipt-downloads" not in officer_client.get(f"/privacy/{request.pk}/").content.decode()


def test_the_time_zone_is_chosen_from_the_list_and_only_sends_back_to_this_site(client, officer_client):
    assert officer_client.post("/time-zone/", {"time_zone": "Mars/Olympus"}).status_code == 400
    assert officer_client.post("/time-zone/", {"time_zone": "Europe/Paris", "next": "https://evil.example/"}
                               )["Location"] == "/"
    assert officer_client.session["time_zone"] == "Europe/Paris"
    page = officer_client.get("/privacy/audit/").content.decode()
    assert '<option value="Europe/Paris" selected>' in page
    client.logout()
    assert client.post("/time-zone/", {"time_zone": "Europe/Paris"})["Location"].startswith("/accounts/login/")


# --- the audit log ------------------------------------------------------------------------------------------


def test_the_audit_log_is_filtered_by_request_profile_actor_and_date_and_paged(officer_client):
    request = _request()
    for i in range(60):
        audit_record(actor="olga" if i % 2 else "pia", action="consent.record", target_type="profile",
                     target_id=7 if i < 10 else 8)
    today = timezone.localdate()

    def ids(**query):
        response = officer_client.get("/privacy/audit/", query)
        assert response.status_code == 200
        return [int(pk) for pk in re.findall(r'data-entry="(\d+)"', response.content.decode())]

    newest = list(AuditEntry.objects.order_by("-id").values_list("id", flat=True))
    assert ids() == newest[:50]
    page = officer_client.get("/privacy/audit/").content.decode()
    older = re.search(r'href="\?([^"]+)" id="older"', page).group(1).replace("&amp;", "&")
    assert ids(**dict(p.split("=") for p in older.split("&"))) == newest[50:]
    assert ids(request=request.pk) == list(AuditEntry.objects.filter(
        target_type="privacy_request", target_id=request.pk).order_by("-id").values_list("id", flat=True))
    assert len(ids(profile=7)) == 10
    assert len(ids(actor="PIA", profile=8)) == 25
    assert len(ids(since=today.isoformat(), until=today.isoformat())) == 50
    assert ids(until=(today - timedelta(days=1)).isoformat()) == []


@pytest.mark.parametrize("query, field", [
    ({"request": "abc"}, "id_request"), ({"profile": str(2**63)}, "id_profile"), ({"since": "2026-13-45"}, "id_since"),
    ({"until": "0001-01-01"}, "id_until"), ({"since": "2026-05-02", "until": "2026-05-01"}, "id_until"),
    ({"actor": "a\x00"}, "id_actor")])
def test_a_bad_audit_filter_is_refused_next_to_its_field(officer_client, query, field):
    response = officer_client.get("/privacy/audit/", query)
    assert response.status_code == 400 and field_error(response.content.decode(), field)


def test_verifying_the_chain_shows_how_many_entries_were_checked_and_the_first_broken_one(officer_client):
    entries = [audit_record(actor="olga", action="test", target_type="profile", target_id=i) for i in range(4)]
    whole = officer_client.post("/privacy/audit/verify/", HTTP_HX_REQUEST="true").content.decode()
    assert "The chain is whole:</strong> 4 entries checked" in whole
    with connection.cursor() as cursor:  # what a database owner could do
        cursor.execute("ALTER TABLE consent_auditentry DISABLE TRIGGER consent_audit_append_only")
        cursor.execute("UPDATE consent_auditentry SET target_id = 99 WHERE id = %s", [entries[2].pk])
        cursor.execute("ALTER TABLE consent_auditentry ENABLE TRIGGER consent_audit_append_only")
    broken = officer_client.post("/privacy/audit/verify/").content.decode()  # without htmx: the whole page
    assert f"The chain is broken at entry #{entries[2].pk}" in broken and "2 entries before it check out" in broken


def test_the_audit_log_is_for_those_who_may_read_it(client):
    client.force_login(UserFactory(groups=["Marketer"]))
    assert client.get("/privacy/audit/").status_code == 403
    assert client.post("/privacy/audit/verify/").status_code == 403


# --- the dashboard and where a login lands ------------------------------------------------------------------


def test_the_privacy_dashboard_counts_requests_and_consent_rates_by_purpose_and_regime(
        officer_client, post_collect, drain, django_assert_max_num_queries):
    subject_traffic(post_collect, drain)
    post_collect("identify", {"userId": "us-1", "traits": {"country": "United States"}, "messageId": "us1"})
    post_collect("identify", {"userId": "us-2", "traits": {"address": {"country": "us"}}, "messageId": "us2",
                              "context": {"consent": {"categoryPreferences": {"Email": False}}}})
    post_collect("identify", {"userId": "de-1", "traits": {"country": "DE"}, "messageId": "de1",
                              "context": {"consent": {"categoryPreferences": {"Email": True}}}})
    drain()
    _request(days_ago=40)
    _request("deletion", "ccpa", days_ago=40)
    _request("opt_out_sale", "ccpa")

    with django_assert_max_num_queries(12):
        response = officer_client.get("/privacy/dashboard/")
    page = response.content.decode()
    counts = {k: int(v) for k, v in re.findall(r'data-kpi="([\w-]+)"[^>]*>.*?<div class="value">(\d+)</div>',
                                                page, re.S)}
    assert counts == {"open": 3, "overdue": 1, "due-soon": 1, "unassigned": 3}

    # Each rate against the enforcement selector, profile by profile, split by each profile's regime.
    live = list(Profile.objects.filter(merged_into__isnull=True))
    by_regime = {regime: [p.pk for p in live if selectors.consent_regime(profile=p) == regime]
                 for regime in ("gdpr", "ccpa")}
    expected = {(purpose, regime): (len(ids), len(selectors.consent_granted(profile_ids=ids, purpose=purpose)))
                for purpose in ("analytics", "marketing_email", "sale_sharing") for regime, ids in by_regime.items()}
    shown = {(r.purpose, r.regime): (r.profiles, r.granted) for r in selectors.consent_rates()}
    assert {key: shown[key] for key in expected} == expected
    assert expected[("marketing_email", "ccpa")] == (2, 1) and expected[("marketing_email", "gdpr")] == (3, 1)
    row = section(page, "consent-rates")
    assert re.search(r'data-purpose="marketing_email" data-regime="ccpa">.*?50%', row, re.S)


def test_each_role_lands_on_its_own_screen_after_login(client):
    for username, group, landing in (("olga", "Privacy officer", "/privacy/dashboard/"), ("mark", "Marketer", "/"),
                                     ("root", "Admin", "/")):
        UserFactory(username=username, groups=[group], is_superuser=group == "Admin")
        response = client.post("/accounts/login/", {"username": username, "password": "pw"}, follow=True)
        assert [url for url, _ in response.redirect_chain] == ["/start/", landing], username
        assert response.status_code == 200
        client.logout()


def test_the_demo_data_has_requests_in_every_state_one_overdue_and_one_due_soon(officer_client):
    call_command("seed_demo", profiles=12, seed=4)
    requests = {r.kind + "/" + r.status: r for r in PrivacyRequest.objects.all()}
    today = privacy.privacy_today()

    assert sorted(requests) == ["access/received", "deletion/in_progress", "opt_out_sale/completed",
                                "rectification/completed", "rectification/received", "restriction/rejected"]
    overdue = requests["access/received"]
    assert overdue.regime == "gdpr" and (timezone.now() - overdue.received_at).days == 40 and overdue.due_on < today
    assert 0 <= (requests["deletion/in_progress"].due_on - today).days <= 7
    assert requests["rectification/completed"].progress["before"]
    assert ConsentEntry.objects.filter(source="privacy_request").exists()
    flags = {flag for _, flag, _ in _queue(officer_client)}
    assert flags == {"overdue", "soon", ""}
    call_command("seed_demo", profiles=12, seed=4)  # once is enough
    assert PrivacyRequest.objects.count() == 6
    assert Identifier.objects.filter(type="email").exists()


def test_a_choice_refused_on_the_profile_page_is_shown_in_its_form_and_records_nothing(officer_client, post_collect,
                                                                                      drain):
    post_collect("identify", {"userId": "zoe-42", "traits": {"email": "zoe@example.org"}, "messageId": "z1"})
    drain()
    zoe = Identifier.objects.get(value="zoe-42").profile
    before = snapshot()

    unknown = officer_client.post(f"/profiles/{zoe.pk}/consent/", {"purpose": "telepathy", "granted": "yes"})
    nul = officer_client.post(f"/profiles/{zoe.pk}/consent/", {"purpose": "analytics", "granted": "yes",
                                                               "reason": "signed\x00form"})

    assert (unknown.status_code, nul.status_code) == (400, 400)
    assert "unknown purpose telepathy" in section(unknown.content.decode(), "record-consent")
    assert "Null characters are not allowed." in section(nul.content.decode(), "record-consent")
    assert snapshot() == before
    recorded = officer_client.post(f"/profiles/{zoe.pk}/consent/", {"purpose": "analytics", "granted": "no",
                                                                    "reason": "phone call"})
    assert recorded.status_code == 302
    assert ConsentEntry.objects.get(profile=zoe).source == "privacy_officer"
