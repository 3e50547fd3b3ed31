"""Every screen in a real browser, offline: nothing loads from outside, nothing scrolls sideways on a phone, axe-core
finds no serious or critical accessibility violation; the API docs, the dashboard's range and the profile export."""
import json
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign
from consent.services.ledger import ConsentChoice, consent_record
from consent.services.privacy import privacy_request_create
from profiles.models import Identifier, Profile
from tests.conftest import log_in

# axe-core 4.14.1 (npm package axe-core, MPL-2.0), kept with the tests: the product does not serve it.
AXE = Path(__file__).resolve().parent.parent / "assets" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}


@pytest.fixture
def demo(transactional_db):
    call_command("seed_demo", profiles=12, seed=21)
    call_command("create_demo_users")
    request = privacy_request_create(kind="deletion", regime="gdpr",
                                     identifiers=[{"type": "email", "value": "someone@example.com"}])
    return {"request": request.pk,
            "profile": Profile.objects.filter(merged_into__isnull=True, merges_in__isnull=False).first().pk}


def offline(page) -> list[str]:
    """Refuses every request that leaves this machine, as a machine without internet would; returns them."""
    refused = []

    def route(route):
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()
    page.route("**/*", route)
    return refused


def axe_violations(page) -> list[dict]:
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
        .map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}))""")
    return [v for v in found if v["impact"] in ("serious", "critical")]


def sideways(page) -> int:
    """How many pixels the page is wider than the window (0 when nothing scrolls sideways)."""
    return page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")


def check_screen(page, url: str, name: str, problems: dict):
    page.set_viewport_size(DESKTOP)
    page.goto(url)
    page.wait_for_load_state("networkidle")
    if violations := axe_violations(page):
        problems[f"{name}: axe"] = violations
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(100)
    if extra := sideways(page):
        problems[f"{name}: {extra}px sideways at 390px"] = page.evaluate(
            """() => [...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > 391)
                .slice(0, 5).map(e => e.tagName + (e.id ? "#" + e.id : "") + "." + e.className)""")


def test_api_docs_load_offline_and_list_the_operations(live_server, browser_page):
    page, errors = browser_page
    refused = offline(page)

    page.goto(live_server.url + reverse("api-docs"))
    page.wait_for_selector(".opblock", timeout=20_000)

    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/v1/profiles/lookup/" in [p.replace("\u200b", "") for p in paths]
    assert page.locator(".opblock").count() >= 10
    assert refused == [] and errors == []


def test_every_screen_is_offline_fits_a_phone_and_has_no_serious_accessibility_violation(demo, live_server,
                                                                                         browser_page):
    page, errors = browser_page
    refused = offline(page)
    base = live_server.url
    problems: dict = {}

    check_screen(page, base + reverse("login"), "login", problems)
    page.set_viewport_size(DESKTOP)
    log_in(page, live_server, "privacy", "privacy-demo")
    for name, url in (("dashboard", reverse("dashboard")), ("profile list", reverse("profile-list")),
                      ("profile list filtered", reverse("profile-list") + "?sort=-events&seen_from=2000-01-01"),
                      ("profile", reverse("profile-detail", args=[demo["profile"]])),
                      ("404", "/no/such/page/")):
        check_screen(page, base + url, name, problems)
    page.set_viewport_size(DESKTOP)
    page.click("text=Log out")
    log_in(page, live_server, "marketer", "marketer-demo")
    check_screen(page, base + reverse("privacy-queue"), "403", problems)
    spring, reminder = (Campaign.objects.get(key=key).pk for key in ("spring-trails", "cart-reminder"))
    for name, url in (("campaigns", reverse("campaign-list")), ("campaign report", reverse("campaign-report",
                                                                                          args=[spring])),
                      ("new campaign", reverse("campaign-new")),
                      ("campaign editor", reverse("campaign-edit", args=[reminder]))):
        check_screen(page, base + url, name, problems)

    assert problems == {}, json.dumps(problems, indent=1)
    assert refused == [] and errors == []


# The privacy screens are being reworked on their own: what axe finds there today, to be emptied as they are fixed.
# A violation not listed fails the test; a listed one that is gone does not.
PRIVACY_SCREENS_KNOWN: set = set()


def test_privacy_screens_are_offline_fit_a_phone_and_add_no_accessibility_violation(demo, live_server,
                                                                                    browser_page):
    page, errors = browser_page
    refused = offline(page)
    problems: dict = {}
    log_in(page, live_server, "privacy", "privacy-demo")

    for name, url in (("privacy queue", reverse("privacy-queue")),
                      ("privacy request", reverse("privacy-request", args=[demo["request"]])),
                      ("new privacy request", reverse("privacy-request-new"))):
        check_screen(page, live_server.url + url, name, problems)

    found = {(screen, v["id"]) for screen, violations in problems.items() if screen.endswith("axe")
             for v in violations}
    layout = {screen: nodes for screen, nodes in problems.items() if not screen.endswith("axe")}
    assert found - PRIVACY_SCREENS_KNOWN == set(), json.dumps(problems, indent=1)
    assert layout == {}
    assert refused == [] and errors == []


def test_dashboard_range_and_chart_tables(demo, live_server, browser_page):
    page, errors = browser_page
    offline(page)
    log_in(page, live_server, "marketer", "marketer-demo")

    page.click("#range >> text=Last 90 days")
    page.wait_for_url(re.compile(r"\?days=90$"))
    assert page.locator("#per-source tbody tr").first.inner_text().startswith("Demo web shop")
    page.click("#range >> text=Last 7 days")
    page.wait_for_url(re.compile(r"\?days=7$"))
    page.wait_for_function("() => window.Chart && Chart.getChart('chart-events') !== undefined")
    assert page.evaluate("() => Chart.getChart('chart-events').data.labels.length") == 7
    page.click("#events-data summary")
    assert page.locator("#events-data tbody tr").count() == 7

    page.fill("#id_start", "2026-03-10")
    page.fill("#id_end", "2026-03-01")
    page.click("#range button[type=submit]")
    page.wait_for_url(re.compile(r"start=2026-03-10&end=2026-03-01$"))
    assert "The range ends before it starts." in page.locator("#range-errors").inner_text()
    page.wait_for_function("() => window.Chart && Chart.getChart('chart-events') !== undefined")
    assert page.evaluate("() => Chart.getChart('chart-events').data.labels.length") == 30
    assert errors == []


def test_profile_list_filters_and_exports_what_it_shows(demo, live_server, browser_page):
    page, errors = browser_page
    sharing = list(Profile.objects.filter(merged_into__isnull=True, identifiers__type="email")
                   .order_by("id").values_list("id", flat=True)[:3])
    consent_record(choices=[ConsentChoice(profile_id=pid, purpose="sale_sharing", granted=True, source="admin",
                                          recorded_at=timezone.now()) for pid in sharing])
    offline(page)
    log_in(page, live_server, "marketer", "marketer-demo")
    page.goto(live_server.url + reverse("profile-list"))

    page.select_option("#id_sort", "-value")
    page.fill("#id_trait", "email")
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r"sort=-value"))
    values = [float(v.strip("$") or 0) for v in
              page.locator("#results tbody tr td:nth-child(6)").all_inner_texts() if v != "—"]
    assert values == sorted(values, reverse=True) and values
    with page.expect_download() as download:
        page.click("#export")
    assert download.value.suggested_filename.startswith("profiles-")
    body = Path(download.value.path()).read_text()
    assert body.splitlines()[0].startswith("profile_id,user_id,email,phone,name")
    emails = list(Identifier.objects.filter(type="email").values_list("value", flat=True))
    assert emails and not [email for email in emails if email in body]
    assert sorted(int(line.split(",")[0]) for line in body.splitlines()[1:]) == sharing
    assert body.count("•••@") == 6  # the email column and the traits of three profiles
    assert errors == []
