"""The campaigns screens through Django's test client: who may see and change what, the editor's round trip (a
refused form comes back as typed, its error at its field), the lifecycle buttons, and the report's numbers."""
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Campaign, Conversion, Exposure, Placement
from campaigns.services import definitions
from segments.models import Destination, Segment
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def banner():
    return definitions.placement_save(key="homepage_banner", name="Banner", channel="web",
                                      default_content={"text": "Hi"})


@pytest.fixture
def marketer(client):
    client.force_login(UserFactory(username="mia", groups=["Marketer"]))
    return client


def editor_form(**overrides):
    form = {"key": "spring", "name": "Spring", "placements": ["homepage_banner"], "priority": "5", "purpose": "",
            "targeting": '{"trait": "plan", "op": "eq", "value": "pro"}', "variant_key": ["A", "B"],
            "variant_weight": ["50", "50"], "variant_content": ['{"text": "A"}', '{"text": "B"}'],
            "cap_count": ["3"], "cap_per": ["day"], "control_percent": "10", "allocation": "fixed",
            "goal_event": "Order Completed", "goal_within": "7d", "goal_where": "", "starts_at": "", "ends_at": ""}
    return {**form, **overrides}


def test_only_roles_with_the_permission_see_or_change_campaigns(client, banner):
    client.force_login(UserFactory(username="pia", groups=["Privacy officer"]))
    assert client.get("/campaigns/").status_code == 403
    assert client.post("/campaigns/new/", editor_form()).status_code == 403
    assert not Campaign.objects.exists()
    client.force_login(UserFactory(username="mia", groups=["Marketer"]))
    page = client.get("/")
    assert b'href="/campaigns/"' in page.content


def test_the_editor_saves_a_whole_campaign_and_shows_it_again_for_editing(marketer, banner):
    answer = marketer.post("/campaigns/new/", editor_form())
    campaign = Campaign.objects.get(key="spring")
    assert answer.status_code == 302 and answer.url == f"/campaigns/{campaign.pk}/"
    assert campaign.status == "draft" and campaign.priority == 5 and campaign.control_share == pytest.approx(0.1)
    assert campaign.variants == [{"key": "A", "weight": 50, "content": {"text": "A"}},
                                 {"key": "B", "weight": 50, "content": {"text": "B"}}]
    assert campaign.caps == [{"count": 3, "per": "day"}]
    assert campaign.goal == {"event": "Order Completed", "within": "7d"}
    assert campaign.targeting == {"trait": "plan", "op": "eq", "value": "pro"}
    assert [p.key for p in campaign.placements.all()] == ["homepage_banner"]

    page = marketer.get(f"/campaigns/{campaign.pk}/edit/").content.decode()
    assert 'value="spring" readonly' in page and 'value="10"' in page and "&quot;text&quot;: &quot;B&quot;" in page
    answer = marketer.post(f"/campaigns/{campaign.pk}/edit/", editor_form(
        key="ignored", name="Spring, again", variant_key=["A"], variant_weight=["100"], variant_content=['{}'],
        cap_count=[], cap_per=[], goal_event="", control_percent="0"))
    assert answer.status_code == 302
    campaign.refresh_from_db()
    assert campaign.key == "spring" and campaign.name == "Spring, again" and campaign.caps == []
    assert campaign.variants == [{"key": "A", "weight": 100, "content": {}}] and campaign.goal is None


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"variant_weight": ["50", "60"]}, "variants[0].weight", "add up to 110, not 100"),
    ({"variant_content": ['{"text": "A"}', "{oops"]}, "variants[1].content", "not valid JSON"),
    ({"targeting": '{"trait": "plan", "op": "gte="}'}, "targeting.op", "unknown operator"),
    ({"cap_count": ["three"]}, "caps[0].count", "is not a whole number"),
    ({"placements": []}, "placements", "at least one placement"),
    ({"control_percent": "150"}, "control_share", "a percentage from 0 to 100"),
    ({"goal_within": "soon"}, "goal.within", ""),
    ({"key": "no spaces"}, "key", "letters, digits"),
    ({"trigger_segment": "nobody", "trigger_placement": "homepage_banner", "trigger_destination": "1"},
     "trigger.segment", 'no segment has the key &quot;nobody&quot;'),
    ({"trigger_segment": "x", "trigger_placement": "homepage_banner", "trigger_destination": "1",
      "trigger_payload": '{"to": "{{ secret }}"}'}, "trigger.payload.to", "unknown placeholder"),
])
def test_a_refused_form_comes_back_as_typed_with_the_error_at_its_field(marketer, banner, change, field, message):
    answer = marketer.post("/campaigns/new/", editor_form(**change))
    assert answer.status_code == 400
    page = answer.content.decode()
    section = field.split(".")[0].split("[")[0]
    assert f'id="error-{section}"' in page and field in page and message in page
    assert "&quot;text&quot;: &quot;A&quot;" in page  # what was typed is still there
    assert not Campaign.objects.exists()


def test_the_lifecycle_buttons_move_the_status_and_refuse_what_it_does_not_allow(marketer, banner):
    marketer.post("/campaigns/new/", editor_form())
    campaign = Campaign.objects.get()
    for action, status in [("activate", "active"), ("pause", "paused"), ("activate", "active"), ("end", "ended")]:
        answer = marketer.post(f"/campaigns/{campaign.pk}/{action}/")
        assert answer.status_code == 302
        campaign.refresh_from_db()
        assert campaign.status == status
    page = marketer.post(f"/campaigns/{campaign.pk}/activate/", follow=True).content.decode()
    assert "cannot be activated" in page
    assert Campaign.objects.get().status == "ended"
    assert marketer.get(f"/campaigns/{campaign.pk}/activate/").status_code == 405


def test_a_placement_is_created_from_the_list_and_a_bad_one_is_refused_at_its_field(marketer):
    assert marketer.post("/campaigns/placements/new/", {"key": "email_weekly", "name": "Weekly", "channel": "email",
                                                        "default_content": '{"subject": "News"}'}).status_code == 302
    assert Placement.objects.get().default_content == {"subject": "News"}
    answer = marketer.post("/campaigns/placements/new/", {"key": "sms", "channel": "sms", "default_content": "[1,"})
    assert answer.status_code == 400 and b"default_content: not valid JSON" in answer.content
    answer = marketer.post("/campaigns/placements/new/", {"key": "email_weekly", "channel": "web"})
    assert answer.status_code == 400 and b"exists" in answer.content
    assert Placement.objects.count() == 1


def test_the_report_shows_each_arms_numbers_the_timeline_and_the_latest_exposures(marketer, banner):
    marketer.post("/campaigns/new/", editor_form())
    campaign = Campaign.objects.get()
    now = timezone.now()
    rows = [("A", f"user_id:a{i}", i < 3) for i in range(10)] + [("B", f"user_id:b{i}", i < 6) for i in range(10)]
    for n, (variant, subject, converted) in enumerate(rows):
        exposure = Exposure.objects.create(decision_id=f"00000000-0000-0000-0000-{n:012d}", campaign=campaign,
                                           placement=banner, subject=subject, variant=variant, channel="web",
                                           shown_at=now - timedelta(days=n % 2))
        if converted:
            Conversion.objects.create(exposure=exposure, event_id=n, converted_at=now)
    page = marketer.get(f"/campaigns/{campaign.pk}/")
    html = page.content.decode()
    a, b = (next(r for r in page.context["results"]["variants"] if r["variant"] == k) for k in "AB")
    assert (a["exposed"], a["conversions"], b["exposed"], b["conversions"]) == (10, 3, 10, 6)
    assert page.context["results"]["baseline"] == "A"  # no control exposures yet
    assert b["uplift"] == pytest.approx(0.3)
    assert page.context["chart"]["series"]["B"]["exposures"] == [5, 5]
    assert page.context["chart"]["series"]["B"]["conversions"] == [3, 3]
    assert html.count("<tr data-variant=") == 3  # control (10% of people) is listed even before its first exposure
    assert html.count("user_id") == 0 and html.count("first visit") == 20
    assert 'id="verdict-text">keep running<' in html


def test_the_editor_saves_a_trigger_and_the_report_lists_its_sends(marketer, banner):
    Segment.objects.create(key="open-cart", name="Open cart", mode="realtime",
                           definition={"trait": "cart", "op": "eq", "value": "open"})
    mailer = Destination.objects.create(name="mailer", url="http://127.0.0.1:9/send", secret="s" * 20)
    answer = marketer.post("/campaigns/new/", editor_form(
        trigger_segment="open-cart", trigger_placement="homepage_banner", trigger_destination=str(mailer.pk),
        trigger_payload='{"to": "{{ profile.email }}"}', trigger_delay="30m", quiet_start="21:00",
        quiet_end="08:00"))
    assert answer.status_code == 302
    campaign = Campaign.objects.get()
    assert campaign.trigger == {"segment": "open-cart", "placement": "homepage_banner", "destination": mailer.pk,
                                "payload": {"to": "{{ profile.email }}"}, "delay": "30m",
                                "quiet_hours": {"start": "21:00", "end": "08:00"}}
    page = marketer.get(f"/campaigns/{campaign.pk}/edit/").content.decode()
    assert '<option value="open-cart" selected>' in page and 'value="21:00"' in page and 'value="30m"' in page
    report = marketer.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert 'id="sends"' in report and "Nobody has entered the segment" in report
