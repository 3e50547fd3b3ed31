"""In a real browser: a marketer builds a nested segment in the builder, sees the live count, fixes an error shown
at its place, saves, and finds the expected members once a real worker has computed it."""
import re

import pytest
from django.core.management import call_command

from cdp.pipeline import pipeline_drain
from profiles.models import Identifier, Source
from profiles.services.ingest import events_accept
from segments.models import Segment
from tests.conftest import log_in


@pytest.fixture
def people(transactional_db):
    source = Source.objects.create(name="web")
    messages = [{"type": "identify", "userId": user, "traits": {"plan": plan}, "messageId": f"i-{user}"}
                for user, plan in [("ann", "pro"), ("bo", "pro"), ("cy", "free"), ("dee", "enterprise")]]
    messages += [{"type": "track", "userId": user, "event": "Product Viewed", "messageId": f"v-{user}-{n}"}
                 for user, views in [("ann", 3), ("cy", 1), ("dee", 4)] for n in range(views)]
    events_accept(source=source, messages=messages)
    pipeline_drain()
    call_command("create_demo_users")
    return {u: Identifier.objects.get(type="user_id", value=u).profile_id for u in ("ann", "bo", "cy", "dee")}


def test_a_marketer_builds_a_nested_segment_and_finds_its_members(people, live_server, celery_worker_process,
                                                                   browser_page, wait_until):
    page, errors = browser_page
    log_in(page, live_server, "marketer", "marketer-demo")
    page.click("nav >> text=Segments")
    page.click("#new-segment")
    page.fill("#segment-key", "engaged-paying")
    page.fill("#segment-name", "Engaged paying customers")

    # The starting definition is all [plan = pro]; two people match.
    page.wait_for_selector("#live-count:text-is('2')")
    # Turn the group's only condition into "plan in [pro, enterprise]".
    first = page.locator("[data-path='definition.all[0]']")
    first.locator("select[aria-label='Trait operator']").select_option("in")
    first.locator("input[aria-label='Trait values']").fill("pro, enterprise")
    first.locator("input[aria-label='Trait values']").press("Tab")
    page.wait_for_selector("#live-count:text-is('3')")

    # A nested group: any [ "Product Viewed" count >= 3 , not (identifier phone) ] ... built visually.
    page.click("[data-path='definition'] > .tools .add-group")
    group = page.locator("[data-path='definition.all[1]']")
    group.locator("select[aria-label='Condition']").first.select_option("event")
    event = page.locator("[data-path='definition.all[1].any[0]']")
    event.locator("input[aria-label='Event name']").fill("Product Viewed")
    event.locator("input[aria-label='Within']").fill("")
    event.locator("input[aria-label='Within']").press("Tab")
    event.locator("select[aria-label='Measure']").select_option("count")
    event.locator("select[aria-label='Measure operator']").select_option("gte")
    event.locator("input[aria-label='Measure value']").fill("3")
    event.locator("input[aria-label='Measure value']").press("Tab")
    page.wait_for_selector("#live-count:text-is('2')")  # ann and dee

    # A mistake typed into the JSON is shown at its place, and nothing counts until it is fixed.
    text = page.input_value("#definition").replace('"op": "gte"', '"op": "gte="')
    page.fill("#definition", text)
    page.wait_for_selector(".node.invalid .error:text('unknown operator \"gte=\"')")
    assert "definition.all[1].any[0].count.op" in page.inner_text("#definition-error")
    page.fill("#definition", text.replace('"op": "gte="', '"op": "gte"'))
    page.wait_for_selector("#live-count:text-is('2')")
    assert page.locator(".node.invalid").count() == 0

    page.click("#save-segment")
    page.wait_for_url(re.compile(r"/segments/\d+/$"))
    segment = Segment.objects.get(key="engaged-paying")
    assert segment.definition == {"all": [{"trait": "plan", "op": "in", "value": ["pro", "enterprise"]},
                                          {"any": [{"event": "Product Viewed", "count": {"op": "gte", "value": 3}}]}]}
    wait_until(lambda: Segment.objects.get(pk=segment.pk).status == "ready", seconds=60, what="the recompute")
    page.reload()
    members = page.inner_text("#members")
    assert f"#{people['ann']}" in members and f"#{people['dee']}" in members
    assert f"#{people['bo']}" not in members and f"#{people['cy']}" not in members
    assert page.inner_text("#segment-size") == "2"

    # The profile page says why ann is in it.
    page.goto(live_server.url + f"/profiles/{people['ann']}/")
    reasons = page.inner_text("#segments")
    assert "Engaged paying customers" in reasons and '"Product Viewed" count >= 3: 3' in reasons
    assert errors == []
