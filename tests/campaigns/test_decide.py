"""The decision API and the campaigns API behind it: targeting, consent, caps, control and holdout, stickiness,
arbitration, and exposures recorded off the request's path."""
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from campaigns import selectors
from campaigns.models import Campaign, Exposure, Placement
from campaigns.services import definitions
from campaigns.services.exposures import exposures_record_queued
from consent.services.ledger import ConsentChoice, consent_record
from profiles.models import Event, Identifier

pytestmark = pytest.mark.django_db
BANNER = {"key": "homepage_banner", "name": "Homepage banner", "channel": "web", "default_content": {"text": "Hi"}}


def campaign_body(key="spring", **overrides):
    body = {"key": key, "name": key.title(), "placements": ["homepage_banner"],
            "variants": [{"key": "A", "weight": 50, "content": {"text": "Spring A"}},
                         {"key": "B", "weight": 50, "content": {"text": "Spring B"}}]}
    return {**body, **overrides}


@pytest.fixture
def banner(call):
    assert call("post", "/api/v1/placements/", BANNER).status_code == 201
    return Placement.objects.get(key="homepage_banner")


def active(call, **body) -> int:
    created = call("post", "/api/v1/campaigns/", campaign_body(**body))
    assert created.status_code == 201, created.json()
    assert call("post", f"/api/v1/campaigns/{created.json()['id']}/activate/").status_code == 200
    return created.json()["id"]


def grant(user_id: str, purpose="personalization", granted=True):
    profile_id = Identifier.objects.get(type="user_id", value=user_id).profile_id
    consent_record(choices=[ConsentChoice(profile_id=profile_id, purpose=purpose, granted=granted, source="api",
                                          recorded_at=timezone.now())])


@pytest.fixture
def ann(post_collect, drain):
    post_collect("identify", {"userId": "ann", "traits": {"plan": "pro", "country": "DE"}, "messageId": "a1"})
    drain()
    grant("ann")


def test_a_campaign_that_cannot_work_is_refused_at_its_field(call, banner):
    bad = call("post", "/api/v1/campaigns/", campaign_body(variants=[{"key": "A", "weight": 70}]))
    assert bad.status_code == 400
    assert bad.json() == {"code": "invalid_definition", "message": "the variants' weights add up to 70, not 100",
                          "field": "variants[0].weight"}
    bad = call("post", "/api/v1/campaigns/", campaign_body(targeting={"all": [{"segment": "nobody"}]}))
    assert bad.status_code == 400 and bad.json()["field"] == "targeting.all[0].segment"
    bad = call("post", "/api/v1/campaigns/", campaign_body(placements=["nowhere"]))
    assert bad.status_code == 400 and bad.json()["field"] == "placements"
    bad = call("post", "/api/v1/campaigns/", campaign_body(purpose="telepathy"))
    assert bad.status_code == 400 and bad.json()["field"] == "purpose"
    assert not Campaign.objects.exists()


def test_the_lifecycle_refuses_what_the_status_does_not_allow(call, banner):
    created = call("post", "/api/v1/campaigns/", campaign_body()).json()
    assert created["status"] == "draft"
    assert call("post", f"/api/v1/campaigns/{created['id']}/pause/").status_code == 409
    assert call("post", f"/api/v1/campaigns/{created['id']}/activate/").json()["status"] == "active"
    assert call("post", f"/api/v1/campaigns/{created['id']}/activate/").status_code == 200  # a retry changes nothing
    assert call("post", f"/api/v1/campaigns/{created['id']}/end/").json()["status"] == "ended"
    refused = call("post", f"/api/v1/campaigns/{created['id']}/activate/")
    assert refused.status_code == 409 and refused.json()["code"] == "cannot_activate"
    # A privacy officer reads exposures, not campaigns' settings.
    assert call("get", "/api/v1/campaigns/", role="Privacy officer").status_code == 403


def test_unknown_placement_and_bad_requests(decide, banner):
    missing = decide({"userId": "ann", "placement": "sidebar"})
    assert missing.status_code == 404 and missing.json()["reason"] == "unknown_placement"
    assert decide({"placement": "homepage_banner"}).json()["code"] == "missing_identity"
    assert decide({"userId": "ann", "placement": "homepage_banner"}, write_key="wrong").status_code == 401
    assert decide({"userId": ["x"], "placement": "homepage_banner"}).json()["field"] == "userId"


def test_a_key_that_authenticates_no_active_source_gets_nothing_decided_nor_shown(call, decide, banner, ann, source):
    active(call)
    assert decide({"userId": "ann", "placement": "sidebar"}, write_key="wrong").status_code == 401  # not a 404
    source.is_active = False
    source.save()
    refused = decide({"userId": "ann", "placement": "homepage_banner"})
    assert refused.status_code == 401 and refused.json()["code"] == "invalid_write_key"
    assert not exposures_record_queued() and not Exposure.objects.exists()
    source.is_active = True
    source.save()
    assert decide({"userId": "ann", "placement": "homepage_banner"}).json()["reason"] == "matched"
    assert exposures_record_queued() == 1


def test_no_campaign_gives_the_placements_default(decide, banner, ann):
    body = decide({"userId": "ann", "placement": "homepage_banner"}).json()
    assert body == {"decision_id": None, "placement": "homepage_banner", "campaign": None, "variant": None,
                    "content": {"text": "Hi"}, "reason": "no_eligible_campaign"}


def test_a_matched_decision_is_sticky_and_its_exposure_is_recorded_off_the_request(call, decide, banner, ann):
    campaign_id = active(call)
    first = decide({"userId": "ann", "placement": "homepage_banner"}).json()
    assert first["reason"] == "matched" and first["campaign"] == {"id": campaign_id, "key": "spring"}
    assert first["content"] == {"text": f"Spring {first['variant']}"}
    # Queued, not written: the decision did not wait for PostgreSQL.
    assert not Exposure.objects.exists()
    again = [decide({"userId": "ann", "placement": "homepage_banner"}).json()["variant"] for _ in range(5)]
    assert set(again) == {first["variant"]}
    assert exposures_record_queued() == 6
    assert exposures_record_queued() == 0
    exposure = Exposure.objects.get(decision_id=first["decision_id"])
    assert (exposure.campaign_id, exposure.variant, exposure.subject, exposure.channel) == (
        campaign_id, first["variant"], "user_id:ann", "web")
    assert exposure.profile_id == Identifier.objects.get(value="ann").profile_id
    assert Exposure.objects.count() == 6


def test_no_personalised_decision_without_consent(call, decide, banner, post_collect, drain):
    post_collect("identify", {"userId": "eu", "traits": {"country": "FR"}, "messageId": "e1"})
    post_collect("identify", {"userId": "us", "traits": {"country": "US"}, "messageId": "u1"})
    drain()
    active(call)
    # GDPR: personalisation is opt-in; CCPA: opt-out.
    assert decide({"userId": "eu", "placement": "homepage_banner"}).json()["reason"] == "no_consent"
    assert decide({"userId": "us", "placement": "homepage_banner"}).json()["reason"] == "matched"
    grant("eu")
    grant("us", granted=False)
    assert decide({"userId": "eu", "placement": "homepage_banner"}).json()["reason"] == "matched"
    denied = decide({"userId": "us", "placement": "homepage_banner"}).json()
    assert denied["reason"] == "no_consent" and denied["content"] == {"text": "Hi"} and denied["decision_id"] is None
    # A first visit: the request's own consent context, else the default regime (GDPR here).
    assert decide({"anonymousId": "new", "placement": "homepage_banner"}).json()["reason"] == "no_consent"
    visitor = decide({"anonymousId": "new", "placement": "homepage_banner",
                      "context": {"consent": {"categoryPreferences": {"personalization": True}}}}).json()
    assert visitor["reason"] == "matched"


def test_targeting_reads_traits_segments_and_the_request_context(call, decide, banner, ann, post_collect, drain):
    from segments.services.definitions import segment_create
    from segments.services.membership import segment_recompute

    pros = segment_create(key="pros", name="Pros", mode="batch",
                          definition={"trait": "plan", "op": "eq", "value": "pro"})
    segment_recompute(segment_id=pros.pk)
    post_collect("identify", {"userId": "bo", "traits": {"plan": "free", "country": "DE"}, "messageId": "b1"})
    drain()
    grant("bo")
    active(call, targeting={"all": [{"segment": "pros"},
                                    {"context": "page.path", "op": "starts_with", "value": "/shoes"}]})
    shoes = {"page": {"path": "/shoes/red"}}
    assert decide({"userId": "ann", "placement": "homepage_banner", "context": shoes}).json()["reason"] == "matched"
    assert decide({"userId": "ann", "placement": "homepage_banner",
                   "context": {"page": {"path": "/hats"}}}).json()["reason"] == "no_eligible_campaign"
    assert decide({"userId": "bo", "placement": "homepage_banner",
                   "context": shoes}).json()["reason"] == "no_eligible_campaign"


def test_the_highest_priority_wins_then_the_oldest(call, decide, banner, ann):
    active(call, key="old", priority=1)
    active(call, key="newer", priority=1)
    active(call, key="low", priority=0)
    assert decide({"userId": "ann", "placement": "homepage_banner"}).json()["campaign"]["key"] == "old"
    urgent = active(call, key="urgent", priority=5)
    assert decide({"userId": "ann", "placement": "homepage_banner"}).json()["campaign"]["id"] == urgent


def test_caps_count_exposures_still_being_recorded(call, decide, banner, ann):
    active(call, caps=[{"count": 2, "per": "day"}])
    reasons = [decide({"userId": "ann", "placement": "homepage_banner"}).json()["reason"] for _ in range(3)]
    assert reasons == ["matched", "matched", "frequency_cap"]
    exposures_record_queued()
    assert decide({"userId": "ann", "placement": "homepage_banner"}).json()["reason"] == "frequency_cap"
    # A day later the cap allows again (the pending sets, kept a few seconds after recording, are long gone).
    Exposure.objects.update(shown_at=timezone.now() - timedelta(days=1, minutes=1))
    redis_client = redis.Redis.from_url(settings.REDIS_URL)
    redis_client.delete(*redis_client.keys("campaigns:pending:*"))
    assert decide({"userId": "ann", "placement": "homepage_banner"}).json()["reason"] == "matched"


def test_a_channel_cap_holds_across_campaigns(call, decide, banner, ann):
    assert call("put", "/api/v1/campaign-settings/", {"channel_caps": {"web": {"count": 2, "per": "week"}}}
                ).status_code == 200
    active(call, key="one", priority=2, caps=[{"count": 1, "per": "lifetime"}])
    active(call, key="two", priority=1)
    got = [decide({"userId": "ann", "placement": "homepage_banner"}).json() for _ in range(3)]
    assert [(d["campaign"] or {}).get("key") for d in got] == ["one", "two", None]
    assert got[2]["reason"] == "frequency_cap"
    bad = call("put", "/api/v1/campaign-settings/", {"channel_caps": {"fax": {"count": 1, "per": "day"}}})
    assert bad.status_code == 400 and bad.json()["field"] == "channel_caps.fax"


def test_control_and_the_global_holdout_get_the_default_content_and_are_counted(call, decide, banner, post_collect,
                                                                              drain):
    active(call, control_share=0.5)
    context = {"consent": {"categoryPreferences": {"personalization": True}}}
    got = [decide({"anonymousId": f"v{n}", "placement": "homepage_banner", "context": context}).json()
           for n in range(200)]
    control = [d for d in got if d["reason"] == "control"]
    assert 60 <= len(control) <= 140
    assert all(d["variant"] == "control" and d["content"] == {"text": "Hi"} for d in control)
    call("put", "/api/v1/campaign-settings/", {"holdout_share": 0.3})
    held = [decide({"anonymousId": f"w{n}", "placement": "homepage_banner", "context": context}).json()
            for n in range(200)]
    out = [d for d in held if d["reason"] == "global_holdout"]
    assert 30 <= len(out) <= 90 and all(d["campaign"] is None and d["content"] == {"text": "Hi"} for d in out)
    # Assignments stick: the people shown the campaign before the holdout began are never pulled into it, and
    # those held out stay held out.
    again = [decide({"anonymousId": f"{who}{n}", "placement": "homepage_banner", "context": context}).json()
             for who in "vw" for n in range(200)]
    assert [d["reason"] for d in again[:200]] == [d["reason"] for d in got]
    assert [d["reason"] == "global_holdout" for d in again[200:]] == [d["reason"] == "global_holdout" for d in held]
    exposures_record_queued()
    assert Exposure.objects.filter(variant="holdout", campaign__isnull=True).count() == 2 * len(out)
    assert Exposure.objects.filter(variant="control").count() >= len(control)


def test_exclusive_campaigns_never_run_beside_each_other_for_one_person(call, decide, banner, ann):
    first = active(call, key="first", priority=2, caps=[{"count": 1, "per": "lifetime"}])
    active(call, key="second", priority=1, exclusive_with=["first"])
    assert decide({"userId": "ann", "placement": "homepage_banner"}).json()["campaign"]["id"] == first
    # "first" is capped now, and ann has seen it: "second" is not shown beside it.
    capped = decide({"userId": "ann", "placement": "homepage_banner"}).json()
    assert (capped["reason"], capped["campaign"]) == ("frequency_cap", None)
    # A campaign that excludes nothing is.
    active(call, key="third", priority=0)
    assert decide({"userId": "ann", "placement": "homepage_banner"}).json()["campaign"]["key"] == "third"


def test_a_change_reaches_other_processes_through_the_cache_version(call, banner, django_capture_on_commit_callbacks):
    before = selectors.snapshot()
    with django_capture_on_commit_callbacks(execute=True):
        definitions.placement_save(key="email_weekly", name="Weekly", channel="email", default_content={})
    after = selectors.snapshot()
    assert after.version != before.version and "email_weekly" in after.placements


def test_without_redis_the_version_other_processes_read_is_in_postgresql(call, banner, settings):
    settings.REDIS_URL = ""
    before = selectors.snapshot()
    definitions.placement_save(key="email_weekly", name="Weekly", channel="email", default_content={})
    # What another process reads: the row, in its next transaction once this one commits.
    after = selectors.snapshot()
    assert int(after.version) == int(before.version) + 1 and "email_weekly" in after.placements


def test_erasure_removes_exposures_by_profile_and_by_the_ids_sent(call, decide, banner, ann):
    from consent.registry import handlers

    active(call)
    decide({"userId": "ann", "placement": "homepage_banner"})
    exposures_record_queued()
    [handler] = [h for h in handlers() if h.name == "campaigns"]
    profile_id = Identifier.objects.get(value="ann").profile_id
    assert len(handler.export([profile_id])["campaign_exposures"]) == 1
    while any(handler.erase([profile_id], 1).values()):
        pass
    assert not Exposure.objects.exists()


def test_a_decision_costs_the_same_queries_for_two_campaigns_or_twelve(call, decide, banner, ann):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries() -> int:
        decide({"userId": "ann", "placement": "homepage_banner"})  # loads the snapshot
        with CaptureQueriesContext(connection) as captured:
            from campaigns.services.decisions import decide as decide_service
            decision = decide_service(placement_key="homepage_banner", user_id="ann")
        assert decision.reason == "matched"
        return len(captured.captured_queries)

    for n in range(2):
        active(call, key=f"c{n}", targeting={"trait": "plan", "op": "eq", "value": "pro"})
    with_two = queries()
    for n in range(2, 12):
        active(call, key=f"c{n}", caps=[{"count": 5, "per": "day"}],
               targeting={"any": [{"trait": "plan", "op": "eq", "value": "pro"}, {"event": "Order Completed"}]})
    # One statement: the person, their exposures, the targeting of every campaign and the person's consent.
    assert queries() == with_two == 1


def test_a_goal_event_converts_the_latest_exposure_within_the_window_once(call, decide, banner, ann, post_collect,
                                                                          drain):
    from campaigns.models import Conversion

    active(call, goal={"event": "Order Completed", "where": [{"property": "revenue", "op": "gt", "value": 10}],
                       "within": "7d"})
    first = decide({"userId": "ann", "placement": "homepage_banner"}).json()
    latest = decide({"userId": "ann", "placement": "homepage_banner"}).json()
    exposures_record_queued()
    Exposure.objects.filter(decision_id=first["decision_id"]).update(shown_at=timezone.now() - timedelta(hours=2))
    post_collect("track", {"userId": "ann", "event": "Order Completed", "properties": {"revenue": 5},
                           "messageId": "small"})
    drain()
    assert not Conversion.objects.exists()  # the goal's `where` does not hold
    post_collect("track", {"userId": "ann", "event": "Order Completed", "properties": {"revenue": 50},
                           "messageId": "big"})
    drain()
    [conversion] = Conversion.objects.all()
    assert str(conversion.exposure.decision_id) == latest["decision_id"]
    post_collect("track", {"userId": "ann", "event": "Order Completed", "properties": {"revenue": 70},
                           "messageId": "again"})
    drain()
    # The latest exposure has converted; the next one back takes the second order.
    assert {str(c.exposure.decision_id) for c in Conversion.objects.all()} == {first["decision_id"],
                                                                               latest["decision_id"]}
    post_collect("track", {"userId": "ann", "event": "Order Completed", "properties": {"revenue": 90},
                           "messageId": "third"})
    drain()
    assert Conversion.objects.count() == 2
    # A first visit's exposure is found by the id it sent.
    decide({"anonymousId": "visitor-1", "placement": "homepage_banner",
            "context": {"consent": {"categoryPreferences": {"personalization": True}}}})
    exposures_record_queued()
    post_collect("track", {"anonymousId": "visitor-1", "event": "Order Completed", "properties": {"revenue": 20},
                           "messageId": "visitor"})
    drain()
    assert Conversion.objects.filter(exposure__subject="anonymous_id:visitor-1").count() == 1


def test_results_count_people_exposures_and_conversions_per_arm(call, decide, banner, post_collect, drain):
    from scipy import stats as scipy_stats

    campaign_id = active(call, control_share=0.3, goal={"event": "Order Completed", "within": "1d"})
    context = {"consent": {"categoryPreferences": {"personalization": True}}}
    arms = {}
    for n in range(120):
        got = decide({"anonymousId": f"r{n}", "placement": "homepage_banner", "context": context}).json()
        decide({"anonymousId": f"r{n}", "placement": "homepage_banner", "context": context})  # seen twice
        arms[f"r{n}"] = got["variant"]
    exposures_record_queued()
    buyers = [person for n, person in enumerate(arms) if n % 4 == 0 or (arms[person] == "B" and n % 2 == 0)]
    for person in buyers:
        post_collect("track", {"anonymousId": person, "event": "Order Completed", "messageId": f"o-{person}"})
    drain()
    body = call("get", f"/api/v1/campaigns/{campaign_id}/results/").json()
    rows = {row["variant"]: row for row in body["variants"]}
    assert body["baseline"] == "control" and set(rows) == {"control", "A", "B"}
    for variant, row in rows.items():
        people = [p for p, v in arms.items() if v == variant]
        converted = [p for p in people if p in buyers]
        assert (row["exposed"], row["exposures"], row["conversions"]) == (len(people), 2 * len(people),
                                                                         len(converted))
    control, b = rows["control"], rows["B"]
    table = [[b["conversions"], b["exposed"] - b["conversions"]],
             [control["conversions"], control["exposed"] - control["conversions"]]]
    assert b["p_value"] == pytest.approx(scipy_stats.chi2_contingency(table, correction=False).pvalue, rel=1e-6)
    assert b["uplift"] == pytest.approx(b["conversion_rate"] - control["conversion_rate"])
    assert sum(row["probability_best"] for row in rows.values()) == pytest.approx(1)
    assert body["sample_size"]["per_arm"] > 0 and body["verdict"] in ("keep running", "winner", "no difference")
    assert call("get", f"/api/v1/campaigns/{campaign_id}/results/?mde=zero").json()["field"] == "mde"


def test_a_goal_event_processed_while_its_exposure_waited_in_the_queue_converts_it_when_recorded(
        call, decide, banner, ann, post_collect, drain):
    from campaigns.models import Conversion

    active(call, goal={"event": "Order Completed", "where": [{"property": "revenue", "op": "gt", "value": 10}],
                       "within": "7d"})
    shown = decide({"userId": "ann", "placement": "homepage_banner"}).json()
    decide({"anonymousId": "visitor-2", "placement": "homepage_banner",
            "context": {"consent": {"categoryPreferences": {"personalization": True}}}})
    for message_id, who, revenue in [("small", {"userId": "ann"}, 5), ("order", {"userId": "ann"}, 50),
                                     ("second", {"userId": "ann"}, 60), ("visit", {"anonymousId": "visitor-2"}, 30)]:
        post_collect("track", {**who, "event": "Order Completed", "properties": {"revenue": revenue},
                               "messageId": message_id})
    drain()
    assert not Conversion.objects.exists()  # both exposures are still queued
    exposures_record_queued()
    converted = {c.exposure.subject: c for c in Conversion.objects.select_related("exposure")}
    assert set(converted) == {"user_id:ann", "anonymous_id:visitor-2"}
    assert str(converted["user_id:ann"].exposure.decision_id) == shown["decision_id"]
    # The first order that meets the goal's `where`, not the small one nor the later one.
    assert converted["user_id:ann"].converted_at == Event.objects.get(message_id="order").timestamp
    exposures_record_queued()
    assert Conversion.objects.count() == 2


def test_a_targeting_statement_reused_for_other_people_and_contexts_decides_as_one_compiled_for_each(
        post_collect, drain):
    """Decisions compile a placement's targeting once a second and fill in the person and the context: for every
    person (and a first visit) and context, the result is the one a statement compiled for them gives."""
    from profiles.common.prepared import fetch_prepared
    from segments.rules import Consent, parse
    from profiles.selectors import LIVE_PROFILE_BY_IDENTIFIER_SQL
    from segments.selectors import segment_ids_by_key, targeting_matches, targeting_statement

    people = {}
    for n, (plan, views, path_pref) in enumerate([("pro", 3, True), ("free", 0, False), ("pro", 0, False),
                                                  ("enterprise", 5, True)]):
        post_collect("identify", {"userId": f"p{n}", "messageId": f"p{n}", "traits": {"plan": plan, "country": "US"}})
        for v in range(views):
            post_collect("track", {"userId": f"p{n}", "event": "Product Viewed", "messageId": f"p{n}-{v}",
                                   "properties": {"category": "shoes"}})
        drain()
        people[n] = Identifier.objects.get(type="user_id", value=f"p{n}").profile_id
    nodes = {
        1: parse({"all": [{"trait": "plan", "op": "eq", "value": "pro"},
                          {"context": "page.path", "op": "starts_with", "value": "/shoes"}]}, context_allowed=True),
        2: parse({"event": "Product Viewed", "where": [{"property": "category", "op": "eq", "value": "shoes"}],
                  "within": "1d", "count": {"op": "gte", "value": 3}}),
        3: parse({"any": [{"context": "campaign.source", "op": "in", "value": ["mail", "ads"]},
                          {"not": {"context": "page.path", "op": "exists"}}]}, context_allowed=True),
        -1: Consent("personalization", True),
    }
    contexts = [None, {}, {"page": {"path": "/shoes/red"}}, {"page": {"path": "/hats"}, "campaign": {"source": "ads"}},
                {"page": "not an object"}, {"campaign": {"source": "mail"}}]
    reuse = {}
    now = timezone.now()
    segment_ids = segment_ids_by_key()

    def by_identifier(user_id, context):
        sql, params = targeting_statement(nodes=nodes, context=context, now=now, segment_ids=segment_ids,
                                          consent_sql=None, reuse=reuse, reuse_key=7)
        # Put into a statement that finds the person itself, as the decision's read of the person does.
        return {label for label, _ in fetch_prepared(
            f"WITH who AS ({LIVE_PROFILE_BY_IDENTIFIER_SQL}) SELECT * FROM ({sql}) t", ["user_id", user_id, *params])}

    for person in [*people.values(), None]:
        for context in contexts:
            fresh = targeting_matches(nodes=nodes, profile_id=person, context=context, now=now)
            reused = targeting_matches(nodes=nodes, profile_id=person, context=context, reuse=reuse, reuse_key=7,
                                       now=now)
            assert reused == fresh, (person, context)
            if person is not None:
                # The statement that finds the person itself, sent beside the read of their exposures.
                user_id = Identifier.objects.get(profile_id=person, type="user_id").value
                assert by_identifier(user_id, context) == fresh, (person, context)
    assert by_identifier("nobody", {"page": {"path": "/shoes"}}) == set()
    # One compiled statement for people with a profile and one for first visits, not one per call.
    assert len(reuse) == 2
    # And the cases differ, so the comparison above could fail.
    assert targeting_matches(nodes=nodes, profile_id=people[0], context={"page": {"path": "/shoes"}},
                             reuse=reuse, reuse_key=7) == {1, 2, -1}
    assert targeting_matches(nodes=nodes, profile_id=people[3], context={"campaign": {"source": "ads"}},
                             reuse=reuse, reuse_key=7) == {2, 3, -1}
    assert targeting_matches(nodes=nodes, profile_id=people[1], context={"page": {"path": "/x"}},
                             reuse=reuse, reuse_key=7) == {-1}


GRANTING = {"consent": {"categoryPreferences": {"personalization": True}}}


def choose(profile_id: int, purpose="personalization", granted=True):
    consent_record(choices=[ConsentChoice(profile_id=profile_id, purpose=purpose, granted=granted, source="api",
                                          recorded_at=timezone.now())])


def test_a_login_that_sends_a_new_user_id_beside_a_known_anonymous_id_is_decided_as_that_person(
        call, decide, banner, post_collect, drain):
    post_collect("identify", {"anonymousId": "anon-1", "traits": {"country": "FR"}, "messageId": "a1"})
    drain()
    choose(Identifier.objects.get(type="anonymous_id", value="anon-1").profile_id, granted=False)
    active(call)
    # The page's banner grants, but the person it names refused in the ledger: the user id being new does not
    # make them a first visit.
    login = {"userId": "new-login", "anonymousId": "anon-1", "placement": "homepage_banner", "context": GRANTING}
    assert decide(login).json()["reason"] == "no_consent"
    assert decide({**login, "anonymousId": "anon-2"}).json()["reason"] == "matched"


def test_a_denial_in_the_requests_context_holds_for_someone_whose_ledger_grants(call, decide, banner, ann):
    active(call)
    denying = {"consent": {"categoryPreferences": {"personalization": False}}}
    assert decide({"userId": "ann", "placement": "homepage_banner", "context": denying}).json()["reason"] == (
        "no_consent")
    # Global Privacy Control is about sale/sharing, not personalisation; the context's grant adds nothing.
    assert decide({"userId": "ann", "placement": "homepage_banner", "context": {"gpc": True}}).json()["reason"] == (
        "matched")


def test_a_campaign_whose_purpose_was_deleted_decides_no_consent_instead_of_failing(call, decide, banner, ann):
    from consent.models import Purpose

    Purpose.objects.create(key="loyalty_offers", name="Loyalty offers", legal_basis="consent", gdpr_default=True,
                           ccpa_default=True)
    active(call, purpose="loyalty_offers")
    assert decide({"userId": "ann", "placement": "homepage_banner"}).json()["reason"] == "matched"
    Purpose.objects.filter(key="loyalty_offers").delete()
    selectors._local.snapshot = None
    gone = decide({"userId": "ann", "placement": "homepage_banner"})
    assert gone.status_code == 200 and gone.json()["reason"] == "no_consent"


def test_exposures_follow_a_first_visitor_who_logs_in_and_profiles_that_merge(call, decide, banner, post_collect,
                                                                               drain):
    active(call, caps=[{"count": 1, "per": "lifetime"}])
    first = decide({"anonymousId": "visitor", "placement": "homepage_banner", "context": GRANTING}).json()
    assert first["reason"] == "matched"
    exposures_record_queued()
    assert Exposure.objects.get().profile_id is None
    # The visitor's first event creates their profile: the exposure decided by that id is theirs now.
    post_collect("identify", {"anonymousId": "visitor", "traits": {"country": "US"}, "messageId": "v1"})
    drain()
    visitor = Identifier.objects.get(type="anonymous_id", value="visitor").profile_id
    assert Exposure.objects.get().profile_id == visitor
    # A person known by their user id on another device merges with the visitor when they log in here.
    post_collect("identify", {"userId": "vera", "traits": {"country": "US"}, "messageId": "v2"})
    drain()
    assert decide({"userId": "vera", "placement": "homepage_banner"}).json()["reason"] == "matched"
    exposures_record_queued()
    post_collect("identify", {"userId": "vera", "anonymousId": "visitor", "messageId": "v3"})
    drain()
    survivor = Identifier.objects.get(type="user_id", value="vera").profile_id
    assert set(Exposure.objects.values_list("profile_id", flat=True)) == {survivor}
    # One person, seen twice: the lifetime cap holds by either id, and the results count them once.
    for body in ({"userId": "vera"}, {"anonymousId": "visitor"}):
        assert decide({**body, "placement": "homepage_banner"}).json()["reason"] == "frequency_cap"
    campaign = Campaign.objects.get()
    assert sum(arm.exposed for arm in selectors.campaign_arms(campaign_id=campaign.pk)) == 1


def test_a_person_is_allocated_by_their_user_id_whichever_id_the_request_sends(call, decide, banner, post_collect,
                                                                                 drain):
    from campaigns import rules

    people = [f"p{n}" for n in range(16)]
    post_collect("batch", {"batch": [{"type": "identify", "userId": p, "anonymousId": f"a-{p}",
                                      "traits": {"country": "US"}, "messageId": f"m-{p}"} for p in people]})
    drain()
    campaign_id = active(call, control_share=0.5)
    by_anonymous_id = [decide({"anonymousId": f"a-{p}", "placement": "homepage_banner"}).json()["variant"]
                       for p in people]
    expected = [rules.allocate(salt=f"campaign:{campaign_id}", subject=f"user_id:{p}", control_share=0.5,
                               variants=(rules.Variant("A", 50, {}), rules.Variant("B", 50, {}))) for p in people]
    assert by_anonymous_id == expected and "control" in expected


def test_the_queue_refuses_an_exposure_whose_decision_may_have_missed_another_and_says_what_it_missed(
        call, decide, banner, ann):
    from campaigns.services.exposures import ExposureRecord, exposure_queue, new_decision_id

    placement = Placement.objects.get()
    version = selectors.recent_version()

    def record():
        return ExposureRecord(new_decision_id(), None, placement.pk, None, "user_id:ann", "holdout", "web",
                              timezone.now().isoformat())

    def queue(exposure, check, at_version=version):
        return exposure_queue(record=exposure, schedule=lambda: None, subjects=["user_id:ann", "anonymous_id:d1"],
                              check=check, version=at_version)

    first = record()
    assert queue(first, "fast") is None
    # A second decision that read PostgreSQL alone meanwhile: refused, with what is pending for the person.
    refused = queue(record(), "fast")
    assert refused.pending == [first] and refused.version == version
    # Taken again with that, under the sequence it saw: queued; a third one still at that sequence is refused.
    assert queue(record(), f"seq:{refused.sequence}") is None
    assert len(queue(record(), f"seq:{refused.sequence}").pending) == 2
    # The campaigns changed since the version a decision started from: refused whatever it read.
    assert queue(record(), "any", at_version="an older version").version == version
    assert exposures_record_queued() == 2
    # Recorded, the exposures stay pending a few seconds: a decision that read PostgreSQL just before still has
    # them counted, once (they carry their decision ids).
    assert len(queue(record(), "fast").pending) == 2


@pytest.mark.django_db(transaction=True)
def test_decisions_for_one_person_at_once_stay_within_the_cap(call, banner, post_collect, drain):
    import threading

    from django.db import connection

    from campaigns.services.decisions import decide as decide_now

    post_collect("identify", {"userId": "ann", "traits": {"country": "US"}, "messageId": "a1"})
    drain()
    active(call, caps=[{"count": 2, "per": "day"}])
    start, reasons = threading.Barrier(8), []

    def one():
        try:
            start.wait()
            reasons.append(decide_now(placement_key="homepage_banner", user_id="ann").reason)
        finally:
            connection.close()

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(reasons) == ["frequency_cap"] * 6 + ["matched"] * 2


def test_erasure_reaches_exposures_still_queued_and_decisions_after_it(call, decide, banner, post_collect, drain):
    from consent.services.erasure import privacy_erase_step
    from consent.services.privacy import privacy_request_create, privacy_request_execute, privacy_request_verify

    post_collect("identify", {"userId": "gone", "anonymousId": "gone-device", "traits": {"country": "US"},
                              "messageId": "g1"})
    drain()
    active(call)
    assert decide({"userId": "gone", "placement": "homepage_banner"}).json()["reason"] == "matched"
    client = redis.Redis.from_url(settings.REDIS_URL)
    assert client.exists("campaigns:pending:user_id:gone")
    request = privacy_request_create(kind="deletion", regime="ccpa", identifiers=[{"type": "user_id",
                                                                                   "value": "gone"}])
    privacy_request_verify(request_id=request.pk)
    privacy_request_execute(request_id=request.pk)
    while not privacy_erase_step(request_id=request.pk):
        pass
    assert not client.keys("campaigns:*:user_id:gone")
    # The one queued before the erasure and one decided after it (a first visit now) are never written.
    decide({"anonymousId": "gone-device", "placement": "homepage_banner", "context": GRANTING})
    exposures_record_queued()
    assert not Exposure.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_recorder_waits_for_a_pipeline_batch_under_way_so_neither_misses_the_others_commit(call, decide, banner):
    import threading

    from django.db import connection, transaction

    from campaigns.services.conversions import conversions_batch_begin

    active(call)
    decide({"anonymousId": "v1", "placement": "homepage_banner", "context": GRANTING})
    batch_started, batch_may_end = threading.Event(), threading.Event()

    def pipeline_batch():
        try:
            with transaction.atomic():
                conversions_batch_begin()
                batch_started.set()
                batch_may_end.wait(10)
        finally:
            connection.close()

    def recorder():
        try:
            exposures_record_queued()
        finally:
            connection.close()

    batch = threading.Thread(target=pipeline_batch)
    batch.start()
    assert batch_started.wait(10)
    recording = threading.Thread(target=recorder)
    recording.start()
    recording.join(0.5)
    assert recording.is_alive() and not Exposure.objects.exists()
    batch_may_end.set()
    recording.join(10)
    batch.join(10)
    assert Exposure.objects.count() == 1


def test_an_exposure_still_queued_when_its_person_logs_in_or_merges_is_written_as_theirs(
        call, decide, banner, post_collect, drain):
    active(call)
    decide({"anonymousId": "early", "placement": "homepage_banner", "context": GRANTING})
    post_collect("identify", {"anonymousId": "early", "traits": {"country": "US"}, "messageId": "e1"})
    post_collect("identify", {"userId": "eve", "traits": {"country": "US"}, "messageId": "e2"})
    drain()
    assert decide({"userId": "eve", "placement": "homepage_banner"}).json()["reason"] == "matched"
    # Eve logs in on the early visitor's device before either exposure is recorded.
    post_collect("identify", {"userId": "eve", "anonymousId": "early", "messageId": "e3"})
    drain()
    exposures_record_queued()
    survivor = Identifier.objects.get(type="user_id", value="eve").profile_id
    assert list(Exposure.objects.values_list("profile_id", flat=True)) == [survivor, survivor]


def test_a_first_login_on_a_device_another_user_owns_is_not_decided_as_that_user(call, decide, banner, post_collect,
                                                                                   drain):
    post_collect("identify", {"userId": "alice", "anonymousId": "shared-laptop", "traits": {"country": "FR"},
                              "messageId": "a1"})
    drain()
    grant("alice")
    active(call)
    # Bob logs in on Alice's laptop for the first time: he is a first visit (GDPR default: no consent), not Alice.
    bob = decide({"userId": "bob", "anonymousId": "shared-laptop", "placement": "homepage_banner"}).json()
    assert bob["reason"] == "no_consent"
    assert decide({"userId": "alice", "placement": "homepage_banner"}).json()["reason"] == "matched"


def test_first_visits_under_an_id_no_profile_takes_are_linked_to_nobody(call, decide, banner, post_collect, drain):
    active(call)
    # A broken snippet sends a placeholder that identity rules block; several strangers decided under it.
    for _ in range(3):
        decide({"anonymousId": "undefined", "placement": "homepage_banner", "context": GRANTING})
    exposures_record_queued()
    post_collect("identify", {"userId": "carol", "anonymousId": "undefined", "traits": {"country": "US"},
                              "messageId": "c1"})
    drain()
    assert not Identifier.objects.filter(type="anonymous_id", value="undefined").exists()
    assert Exposure.objects.filter(profile__isnull=False).count() == 0


def test_the_grace_of_a_recorded_exposure_runs_from_its_recording_however_long_it_waited(banner):
    from campaigns.services.exposures import ExposureRecord, exposure_queue, new_decision_id

    placement = Placement.objects.get()
    version = selectors.recent_version()

    def queue(age_s: float):
        shown = (timezone.now() - timedelta(seconds=age_s)).isoformat()
        return exposure_queue(record=ExposureRecord(new_decision_id(), None, placement.pk, None, "user_id:ann",
                                                    "holdout", "web", shown),
                              schedule=lambda: None, subjects=["user_id:ann"], check="fast", version=version)

    assert queue(8) is None  # it waits 8 s on the queue (a recorder behind)
    exposures_record_queued()
    # A decision that read PostgreSQL just before that commit is still refused, and told of it.
    assert len(queue(0).pending) == 1
    client = redis.Redis.from_url(settings.REDIS_URL)
    assert 0 < client.ttl("campaigns:pending:user_id:ann") <= 5
