"""In a real browser: a marketer logs in, sees the dashboard charts drawn, and opens a merged customer's profile."""
import pytest
from django.core.management import call_command
from django.urls import reverse

from profiles.models import Profile
from tests.conftest import log_in


@pytest.fixture
def demo_data(transactional_db):
    call_command("seed_demo", profiles=12, seed=21)
    call_command("create_demo_users")


def test_marketer_sees_dashboard_and_a_profile(demo_data, live_server, browser_page):
    page, errors = browser_page
    survivor = Profile.objects.filter(merged_into__isnull=True, merges_in__isnull=False).first()
    tombstone = Profile.objects.filter(merged_into=survivor).first()
    user_id = survivor.identifiers.get(type="user_id").value

    log_in(page, live_server, "marketer", "marketer-demo")

    # Dashboard: the numbers are rendered and Chart.js has drawn on each canvas.
    assert page.locator("[data-kpi=profiles] .value").inner_text() == "12"
    assert int(page.locator("[data-kpi=events] .value").inner_text()) > 0
    assert page.locator("[data-kpi=lag] .value").inner_text() == "0 s"
    for canvas in ("chart-events", "chart-profiles", "chart-merges"):
        page.wait_for_function(f"() => window.Chart && Chart.getChart('{canvas}') !== undefined")
        width = page.eval_on_selector(f"#{canvas}", "c => c.width")
        assert width > 100, canvas
    assert page.locator("text=Order Completed").first.is_visible()

    # Profiles: live search by user id, then open the profile.
    page.click("nav >> text=Profiles")
    page.fill("input[name=q]", user_id)
    page.wait_for_function("() => document.querySelectorAll('#results tbody tr a').length === 1")
    page.click("#results tbody tr a")
    page.wait_for_url(live_server.url + reverse("profile-detail", args=[survivor.id]))
    identifiers = page.locator("#identifiers").inner_text()
    # A marketer sees the email masked: its first letter and its domain.
    email = survivor.traits["email"].lower()
    assert user_id in identifiers and email not in identifiers
    assert f"{email[0]}•••@{email.split('@')[1]}" in identifiers
    assert identifiers.count("since") == survivor.identifiers.count()
    events = page.locator("#timeline tbody tr:not(#load-more)")
    assert survivor.event_count > 25 and events.count() == 25
    page.click("#load-more a")
    page.wait_for_function(f"() => document.querySelectorAll('#timeline tbody tr').length === {survivor.event_count}")
    assert page.locator("#load-more").count() == 0
    assert "merged" in page.locator("#merges").inner_text()

    # The merged-away profile's old id lands on the survivor.
    page.goto(live_server.url + reverse("profile-detail", args=[tombstone.id]))
    assert page.url == live_server.url + reverse("profile-detail", args=[survivor.id])
    assert errors == []
