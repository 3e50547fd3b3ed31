"""Campaign content that asks for recommendations gets the person's top items at decision time."""
import pytest

from tests.campaigns.test_decide import BANNER, active, campaign_body
from tests.segments.test_learning import send, tastes  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


def test_content_asking_for_recommendations_is_filled_at_decision_time(call, decide, tastes):  # noqa: F811
    assert call("post", "/api/v1/placements/", BANNER).status_code == 201
    campaign = active(call, variants=[{"key": "A", "weight": 100, "content": {"title": "For you",
                                                                              "recommendations": {"k": 4}}}])

    known = decide({"placement": "homepage_banner", "userId": "p1"}).json()
    assert known["content"]["title"] == "For you"
    assert known["content"]["recommendations_basis"] == "personal"
    assert [i["category"] for i in known["content"]["recommendations"]] == ["Apparel > Hats"] * 4

    # A first visit gets the popular items; so does a known person, under a campaign of another purpose, whose
    # page denies personalisation.
    visitor = decide({"placement": "homepage_banner", "anonymousId": "new-device",
                      "context": {"consent": {"categoryPreferences": {"personalization": True}}}}).json()
    assert visitor["content"]["recommendations_basis"] == "popular"
    assert len(visitor["content"]["recommendations"]) == 4
    assert all(i["score"] is None for i in visitor["content"]["recommendations"])
    call("post", f"/api/v1/campaigns/{campaign}/end/")
    active(call, key="mail", purpose="marketing_email",
           variants=[{"key": "A", "weight": 100, "content": {"recommendations": {"k": 3}}}])
    denied = decide({"placement": "homepage_banner", "userId": "p2",
                     "context": {"consent": {"categoryPreferences": {"personalization": False}}}}).json()
    assert denied["campaign"]["key"] == "mail", denied
    assert denied["content"]["recommendations_basis"] == "popular"
    assert [i["item_id"] for i in denied["content"]["recommendations"]] == \
        [i["item_id"] for i in visitor["content"]["recommendations"]][:3]


def test_a_recommendations_request_in_content_is_checked_on_save(call):
    assert call("post", "/api/v1/placements/", BANNER).status_code == 201
    bad = call("post", "/api/v1/campaigns/", campaign_body(
        variants=[{"key": "A", "weight": 100, "content": {"recommendations": {"k": 500}}}]))
    assert bad.status_code == 400
    assert bad.json()["field"] == "variants[0].content.recommendations.k"
