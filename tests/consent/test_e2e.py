"""In a real browser: a privacy officer files a deletion request, verifies and executes it, and sees the receipt."""
import re

import pytest
from django.core.management import call_command

from consent.models import PrivacyRequest
from profiles.models import Identifier
from tests.conftest import log_in


@pytest.fixture
def demo_data(transactional_db):
    call_command("seed_demo", profiles=8, seed=5)
    call_command("create_demo_users")


def test_privacy_officer_erases_a_subject_and_sees_the_receipt(demo_data, live_server, celery_worker_process,
                                                               browser_page):
    page, errors = browser_page
    email = Identifier.objects.filter(type="email").order_by("value").first()
    events = email.profile.event_count
    log_in(page, live_server, "privacy", "privacy-demo")

    page.click("nav >> text=Privacy")
    page.click("text=New request")
    page.select_option("select[name=kind]", "deletion")
    page.select_option("select[name=regime]", "gdpr")
    page.fill("input[name=identifier_value] >> nth=0", email.value.upper())
    page.click("button:has-text('Create request')")
    page.wait_for_url(re.compile(r"/privacy/\d+/$"))
    assert page.inner_text("#subject").count("#") == 1  # the matched profile is shown

    page.click("#verify")
    assert "In progress" in page.inner_text("#status-value")
    page.click("#execute")
    page.wait_for_selector("#receipt", timeout=60_000)  # the page polls while the worker erases

    receipt = page.inner_text("#receipt")
    assert re.search(rf"events erased\s+{events}\b", receipt), receipt
    assert "Completed" in page.inner_text("#status-value")
    page.reload()
    subject = page.inner_text("#subject")
    assert "None left." in subject and email.value.lower() not in subject.lower()  # only "email" remains
    request = PrivacyRequest.objects.get()
    assert request.status == "completed" and request.receipt["erased"]["events"] == events
    assert not Identifier.objects.filter(value=email.value).exists()

    page.click("nav >> text=Privacy")
    row = page.locator(f"#queue tr[data-request='{request.pk}']")
    assert "Completed" in row.inner_text()
    assert errors == []
