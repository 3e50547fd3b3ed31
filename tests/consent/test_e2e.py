"""In a real browser: a privacy officer lands on the privacy overview, files a rectification with two rows (after
a field error), assigns it, erases a subject and reads the receipt, and verifies the audit log's chain."""
import importlib
import re

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from consent.models import AuditEntry, PrivacyRequest
from profiles.models import Identifier
from tests.conftest import log_in


@pytest.fixture
def demo_data(transactional_db):
    # The seeded roles' grant of the audit log to privacy officers (a flushed database lost it).
    with connection.schema_editor() as editor:
        importlib.import_module("consent.migrations.0010_consent_sources_and_audit_viewer").forwards(
            MigrationLoader(connection).project_state().apps, editor)
    call_command("seed_demo", profiles=8, seed=5)
    call_command("create_demo_users")


def test_privacy_officer_files_a_rectification_with_two_rows_after_a_field_error_and_assigns_it(
        demo_data, live_server, browser_page):
    page, errors = browser_page
    email = Identifier.objects.filter(type="email").order_by("-value").first().value
    seeded = PrivacyRequest.objects.count()
    page.goto(live_server.url + "/accounts/login/")
    page.fill("#id_username", "privacy")
    page.fill("#id_password", "privacy-demo")
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/privacy/dashboard/")  # the privacy officer's landing
    assert page.locator("[data-kpi=overdue] .value").inner_text() == "1"

    page.click(".subnav >> text=New request")
    assert page.locator("#changes").is_hidden()  # corrected values belong to a rectification
    page.select_option("#id_kind", "rectification")
    page.select_option("#id_regime", "gdpr")
    assert page.locator("#changes").is_visible()
    page.fill("#id_identifiers-0-value", "not-an-email")
    page.fill("#id_changes-0-key", "name")
    page.fill("#id_changes-0-value", "Ann Lee")
    page.click("#add-change")
    page.fill("#id_changes-1-key", "nickname")
    page.fill("#id_changes-1-value", "to be removed")
    page.click("#add-change")
    page.fill("#id_changes-2-key", "city")
    page.fill("#id_changes-2-value", "Oslo")
    page.click("[data-rows=changes] [data-row]:nth-child(2) [data-remove-row]")
    page.click("button:has-text('Create request')")

    # Refused where it belongs, with everything that was typed still there.
    assert page.inner_text("#id_identifiers-0-value_error") == "Not an email address."
    assert page.input_value("#id_identifiers-0-value") == "not-an-email"
    assert page.input_value("#id_changes-2-value") == "Oslo" and page.locator("#changes").is_visible()
    assert PrivacyRequest.objects.count() == seeded
    page.fill("#id_identifiers-0-value", email)
    page.click("button:has-text('Create request')")
    page.wait_for_url(re.compile(r"/privacy/\d+/$"))

    created = PrivacyRequest.objects.order_by("-id").first()
    assert created.changes == {"name": "Ann Lee", "city": "Oslo"}
    changes = page.inner_text("#changes")
    assert "Ann Lee" in changes and "Oslo" in changes and "to be removed" not in changes
    assert page.locator("#verify").is_visible() and page.locator("#execute").count() == 0  # verify first

    page.select_option("#id_assign_assignee", label="admin")
    page.click("#assign")
    page.wait_for_selector("#assignee:has-text('admin')")
    assert "assign" in page.inner_text("#history")
    assert PrivacyRequest.objects.get(pk=created.pk).assignee.username == "admin"
    assert errors == []


def test_privacy_officer_erases_a_subject_and_sees_the_receipt(demo_data, live_server, celery_worker_process,
                                                               browser_page):
    page, errors = browser_page
    email = Identifier.objects.filter(type="email").order_by("value").first()
    events = email.profile.event_count
    log_in(page, live_server, "privacy", "privacy-demo")

    page.click("nav >> text=Privacy")
    page.click(".subnav >> text=Requests")
    page.click("text=New request")
    page.select_option("select[name=kind]", "deletion")
    page.select_option("select[name=regime]", "gdpr")
    page.fill("input[name=identifiers-0-value]", email.value.upper())
    page.click("button:has-text('Create request')")
    page.wait_for_url(re.compile(r"/privacy/\d+/$"))
    assert page.inner_text("#subject").count("#") == 1  # the matched profile is shown

    page.click("#verify")
    assert "In progress" in page.inner_text("#status-value")
    page.click("#execute")
    page.wait_for_selector("#receipt", timeout=60_000)  # the page polls while the worker erases

    receipt = page.inner_text("#receipt")
    assert re.search(rf"(^|\n){events} events erased", receipt), receipt
    assert "consent_entries" not in receipt and "identifiers suppressed" in receipt
    assert "Completed" in page.inner_text("#status-value")
    page.reload()
    subject = page.inner_text("#subject")
    assert "None left." in subject and email.value.lower() not in subject.lower()  # only "email" remains
    request = PrivacyRequest.objects.get(kind="deletion", status="completed")
    assert request.receipt["erased"]["events"] == events
    assert not Identifier.objects.filter(value=email.value).exists()
    with page.expect_download() as download:
        page.click("#receipt-downloads >> text=as text")
    text = open(download.value.path()).read()
    assert f"- {events} events erased" in text and email.value.lower() not in text.lower()

    page.click(".subnav >> text=Requests")
    page.click("#tab-closed")
    row = page.locator(f"#queue tr[data-request='{request.pk}']")
    assert "Completed" in row.inner_text()
    assert errors == []


def test_privacy_officer_verifies_the_audit_chain_and_filters_the_log(demo_data, live_server, browser_page):
    page, errors = browser_page
    overdue = PrivacyRequest.objects.get(kind="access")
    log_in(page, live_server, "privacy", "privacy-demo")

    page.goto(live_server.url + "/privacy/audit/")
    page.click("#verify-chain-button")
    result = page.wait_for_selector("#verify-result .alert").inner_text()
    assert result == f"The chain is whole: {AuditEntry.objects.count()} entries checked, none altered."

    page.fill("#id_request", str(overdue.pk))
    page.click("#audit-filters button[type=submit]")
    page.wait_for_url(re.compile(rf"request={overdue.pk}"))
    rows = page.locator("#audit tbody tr")
    assert rows.count() == AuditEntry.objects.filter(target_type="privacy_request", target_id=overdue.pk).count()
    assert set(rows.all_inner_texts()) and all(f"request #{overdue.pk}" in text for text in rows.all_inner_texts())
    assert errors == []
