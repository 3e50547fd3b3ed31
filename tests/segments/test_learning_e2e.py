"""In a real browser with a real worker: a marketer runs a clustering and a churn model from the screens, sees
their charts and links, and finds a person's RFM group, score and recommendations on the profile page."""
import random
import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from cdp.pipeline import pipeline_drain
from profiles.models import Identifier, Source
from profiles.services.enrichment import profiles_enrich
from profiles.services.ingest import events_accept
from segments.models import Cluster, PredictiveModel
from segments.services.recommendations import items_upsert, recommendations_refresh
from tests.conftest import log_in


@pytest.fixture
def shop(transactional_db):
    """Sixty shoppers in the US: the even ones buy every eight days, the odd ones only look; each looks at three
    of the six items of one category."""
    source = Source.objects.create(name="web")
    items_upsert(items=[{"item_id": f"{c}-{n}", "name": f"{c.title()} {n}", "category": c} for c in ("hats", "bags")
                        for n in range(6)])
    rng, now = random.Random(1), timezone.now()
    messages = []
    for i in range(60):
        user, taste = f"s{i}", ("hats", "bags")[i % 4 // 2]
        liked = rng.sample(range(6), 3)
        messages.append({"type": "identify", "userId": user, "traits": {"country": "US"}, "messageId": f"i{i}"})
        for day in range(120, 0, -4):
            when = (now - timedelta(days=day - rng.random())).isoformat()
            messages.append({"type": "track", "userId": user, "event": "Product Viewed", "timestamp": when,
                             "properties": {"product_id": f"{taste}-{rng.choice(liked)}"}, "messageId": f"v{i}-{day}"})
            if i % 2 == 0 and day % 8 == 0:
                messages.append({"type": "track", "userId": user, "event": "Order Completed", "timestamp": when,
                                 "properties": {"revenue": 20 + i, "products": [{"product_id": f"{taste}-{liked[0]}"}]},
                                 "messageId": f"o{i}-{day}"})
    for start in range(0, len(messages), 500):
        events_accept(source=source, messages=messages[start:start + 500])
    pipeline_drain()
    profiles_enrich()
    recommendations_refresh()
    call_command("create_demo_users")
    return {f"s{i}": Identifier.objects.get(type="user_id", value=f"s{i}").profile_id for i in range(60)}


def test_a_marketer_learns_from_profiles_on_the_screens(shop, live_server, celery_worker_process, browser_page,
                                                        wait_until):
    page, errors = browser_page
    log_in(page, live_server, "marketer", "marketer-demo")

    page.goto(live_server.url + "/segments/clustering/")
    page.fill("#features", "recency_days, monetary_value")
    page.fill("#k_min", "9")
    page.fill("#k_max", "3")
    page.click("#clustering-form button[type=submit]")
    assert page.text_content("#clustering-error").strip() == "k_min: k_min is at most k_max"
    page.fill("#k_min", "2")
    page.fill("#k_max", "4")
    page.click("#clustering-form button[type=submit]")
    page.wait_for_url(re.compile(r"/segments/clustering/\d+/$"))
    run_url = page.url
    wait_until(lambda: Cluster.objects.exists(), seconds=60, what="the worker to run the clustering")
    page.goto(run_url)
    page.wait_for_selector("#clusters")
    assert page.evaluate("() => !!Chart.getChart('chart-sizes') && !!Chart.getChart('chart-centroids')")
    first_segment = page.locator("#clusters a.mono").first
    key = first_segment.text_content()
    first_segment.click()
    page.wait_for_url(re.compile(r"/segments/\d+/$"))
    assert key in page.text_content("h1")

    page.goto(live_server.url + "/segments/models/")
    page.fill("#key", "churn_risk")
    page.fill("#target_event", "Order Completed")
    page.fill("#horizon_days", "14")
    page.check("input[name=negate]")
    page.click("#model-form button[type=submit]")
    page.wait_for_url(live_server.url + "/segments/models/churn_risk/")
    wait_until(lambda: PredictiveModel.objects.get(key="churn_risk").status in ("ready", "failed"), seconds=90,
               what="the worker to train the model")
    model = PredictiveModel.objects.get(key="churn_risk")
    assert model.status == "ready", model.last_error
    page.reload()
    assert page.evaluate("() => !!Chart.getChart('chart-importance') && !!Chart.getChart('chart-histogram')")
    cells = page.locator("#versions tbody tr").first.locator("td").all_text_contents()
    assert cells[0] == "1" and float(cells[3]) > 0.9 and "in use" in cells[9]
    page.goto(live_server.url + "/segments/models/")
    assert page.locator("#evaluation tbody tr").count() == 4

    page.goto(live_server.url + f"/profiles/{shop['s1']}/")
    assert "Churn risk" in page.text_content("#learned")
    # The three hats s1 has not looked at come first; the list then goes on with other items.
    recommended = page.locator("#recommended li").all_text_contents()
    assert len(recommended) == 6
    assert all("hats" in text.lower() for text in recommended[:3]), recommended
    page.goto(live_server.url + f"/profiles/{shop['s0']}/")
    assert page.text_content("#rfm-group").strip()
    assert errors == []
