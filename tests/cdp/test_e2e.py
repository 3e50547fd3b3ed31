"""In a real browser: a marketer logs in, sees the dashboard charts drawn, and opens a merged customer's profile."""
import os
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from profiles.models import Profile

# Playwright's sync API runs an event loop in this thread; Django's ORM calls from the test body are still
# plain synchronous calls, so the async-safety check would only get in the way here.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser_page():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing; CI must provide Debian's chromium package.")
        pytest.skip(f"{CHROMIUM} is not installed")
    from django.db import connections
    from playwright.sync_api import sync_playwright

    # Playwright runs an asyncio loop in this thread, and Django keeps connections per context while a loop
    # runs: close them on both sides of the browser so none is left open when the test database is dropped.
    connections.close_all()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.set_default_timeout(15_000)
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page, errors
        browser.close()
        connections.close_all()


@pytest.fixture
def demo_data(transactional_db):
    call_command("seed_demo", profiles=12, seed=21)
    call_command("create_demo_users")


def _log_in(page, live_server, username, password):
    page.goto(live_server.url + reverse("dashboard"))
    page.wait_for_url(re.compile(r"/accounts/login/"))
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + reverse("dashboard"))


def test_marketer_sees_dashboard_and_a_profile(demo_data, live_server, browser_page):
    page, errors = browser_page
    survivor = Profile.objects.filter(merged_into__isnull=True, merges_in__isnull=False).first()
    tombstone = Profile.objects.filter(merged_into=survivor).first()
    user_id = survivor.identifiers.get(type="user_id").value

    _log_in(page, live_server, "marketer", "marketer-demo")

    # Dashboard: the numbers are rendered and Chart.js has drawn on each canvas.
    assert page.locator("[data-kpi=profiles] .value").inner_text() == "12"
    assert int(page.locator("[data-kpi=events] .value").inner_text()) > 0
    assert page.locator("[data-kpi=lag] .value").inner_text() == "0"
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
    assert user_id in identifiers and survivor.traits["email"] in identifiers
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
