"""In a real browser: a marketer creates a placement and a campaign with two variants, fixes a mistake shown at
its place, activates it; a site asks the decision API (a real HTTP call) for four people; a real worker records
the exposures, and the report shows them."""
import re

import pytest
import requests
from django.core.management import call_command
from django.utils import timezone

from campaigns.models import Campaign, Exposure
from cdp.pipeline import pipeline_drain
from consent.services.ledger import ConsentChoice, consent_record
from profiles.models import Identifier, Source
from profiles.services.ingest import events_accept
from tests.conftest import log_in

PEOPLE = ["ann", "bo", "cy", "dee"]


@pytest.fixture
def people(transactional_db):
    source = Source.objects.create(name="web")
    events_accept(source=source, messages=[{"type": "identify", "userId": user, "traits": {"plan": "pro"},
                                            "messageId": f"i-{user}"} for user in PEOPLE])
    pipeline_drain()
    ids = {u: Identifier.objects.get(type="user_id", value=u).profile_id for u in PEOPLE}
    consent_record(choices=[ConsentChoice(profile_id=profile_id, purpose="personalization", granted=True,
                                          source="api", recorded_at=timezone.now()) for profile_id in ids.values()])
    call_command("create_demo_users")
    return source, ids


def test_a_marketer_runs_a_campaign_and_sees_its_exposures(people, live_server, celery_worker_process, browser_page,
                                                          wait_until):
    source, ids = people
    page, errors = browser_page
    log_in(page, live_server, "marketer", "marketer-demo")
    page.click("nav >> text=Campaigns")

    page.fill("#placement-key", "homepage_banner")
    page.fill("#placement-name", "Homepage banner")
    page.fill("#placement-content", '{"text": "Welcome"}')
    page.click("#save-placement")
    page.wait_for_selector("#placements >> text=homepage_banner")

    page.click("#new-campaign")
    page.fill("#campaign-key", "spring-sale")
    page.fill("#campaign-name", "Spring sale")
    page.check("#campaign-placements input[value=homepage_banner]")
    page.fill("#campaign-control", "0")
    rows = page.locator(".variant-row")
    rows.nth(0).locator("textarea").fill('{"text": "Spring: 20% off"}')
    rows.nth(1).locator("input[aria-label='Variant weight']").fill("60")
    rows.nth(1).locator("textarea").fill('{"text": "Spring: free shipping"}')
    page.click("#save-campaign")
    # The weights add up to 110: the form comes back as typed, with the error beside the variants.
    page.wait_for_selector("#error-variants")
    assert "add up to 110, not 100" in page.inner_text("#error-variants")
    assert page.locator(".variant-row").nth(1).locator("textarea").input_value() == '{"text": "Spring: free shipping"}'
    page.locator(".variant-row").nth(1).locator("input[aria-label='Variant weight']").fill("50")
    page.click("#save-campaign")
    page.wait_for_url(re.compile(r"/campaigns/\d+/$"))
    assert page.inner_text("#campaign-status") == "Draft"
    campaign = Campaign.objects.get(key="spring-sale")
    assert [(v["key"], v["weight"], v["content"]) for v in campaign.variants] == [
        ("A", 50, {"text": "Spring: 20% off"}), ("B", 50, {"text": "Spring: free shipping"})]

    page.click("#campaign-activate")
    page.wait_for_selector("#campaign-status:text-is('Active')")

    shown = {}
    for user in PEOPLE:
        answer = requests.post(f"{live_server.url}/v1/decide", auth=(source.write_key, ""), timeout=10,
                               json={"userId": user, "placement": "homepage_banner"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["reason"] == "matched" and body["campaign"]["key"] == "spring-sale"
        shown[user] = body["variant"]
    # The worker records the queued exposures; nothing in this test writes them.
    wait_until(lambda: Exposure.objects.filter(campaign=campaign).count() == len(PEOPLE), seconds=60,
               what="the exposures being recorded")
    page.reload()
    for variant in ("A", "B"):
        row = page.locator(f"#results tr[data-variant='{variant}']")
        expected = sum(1 for v in shown.values() if v == variant)
        assert row.locator(".exposed").inner_text() == str(expected)
    latest = page.inner_text("#exposures")
    for user, profile_id in ids.items():
        assert f"#{profile_id}" in latest
    assert not errors, errors
