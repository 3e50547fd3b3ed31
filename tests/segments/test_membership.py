"""Memberships: recompute diffs with history and reasons, the realtime step of the pipeline, merges, static lists,
definition checks, erasure."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from consent.registry import handlers
from profiles.models import Identifier, Profile
from segments import rules
from segments.models import Segment, SegmentMembership, SegmentSize, StaticMember
from segments.selectors import segments_due
from segments.services import definitions
from segments.services.membership import segment_recompute

pytestmark = pytest.mark.django_db


def iso(delta: timedelta = timedelta()) -> str:
    return (timezone.now() - delta).isoformat()


def pid(value: str, kind: str = "user_id") -> int:
    return Identifier.objects.get(type=kind, value=value).profile_id


def open_members(segment: Segment) -> set[int]:
    return set(SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True)
               .values_list("profile_id", flat=True))


@pytest.fixture
def people(post_collect, drain):
    for n, (user, plan) in enumerate([("ann", "pro"), ("bo", "free"), ("cy", "pro")]):
        post_collect("identify", {"userId": user, "traits": {"plan": plan, "email": f"{user}@example.com"},
                                  "messageId": f"i{n}", "timestamp": iso(timedelta(days=1))})
    drain()


def test_a_batch_segment_diffs_members_and_keeps_history_and_reasons(people, post_collect, drain):
    segment = definitions.segment_create(key="pro", name="Pro", mode="batch",
                                         definition={"trait": "plan", "op": "eq", "value": "pro"})
    diff = segment_recompute(segment_id=segment.pk)
    assert set(diff.entered) == {pid("ann"), pid("cy")} and diff.exited == []
    ann = SegmentMembership.objects.get(segment=segment, profile_id=pid("ann"))
    assert ann.reasons == [{"path": "definition", "condition": ann.reasons[0]["condition"], "value": "pro",
                            "held": True}]
    assert "plan" in ann.reasons[0]["condition"]

    post_collect("identify", {"userId": "cy", "traits": {"plan": "free"}, "messageId": "down"})
    drain()
    diff = segment_recompute(segment_id=segment.pk)
    assert diff.entered == [] and diff.exited == [pid("cy")]
    assert open_members(segment) == {pid("ann")}
    cy = SegmentMembership.objects.get(segment=segment, profile_id=pid("cy"))
    assert cy.exited_at is not None

    post_collect("identify", {"userId": "cy", "traits": {"plan": "pro"}, "messageId": "up"})
    drain()
    segment_recompute(segment_id=segment.pk)
    # Leaving and coming back is two stays.
    assert SegmentMembership.objects.filter(segment=segment, profile_id=pid("cy")).count() == 2
    segment.refresh_from_db()
    assert segment.size == 2 and segment.status == "ready" and segment.last_computed_at is not None
    assert list(SegmentSize.objects.filter(segment=segment).order_by("at").values_list("size", "entered", "exited")) \
        == [(2, 2, 0), (1, 0, 1), (2, 1, 0)]


def test_recomputing_twice_changes_nothing(people):
    segment = definitions.segment_create(key="pro", name="Pro", mode="batch",
                                         definition={"trait": "plan", "op": "eq", "value": "pro"})
    segment_recompute(segment_id=segment.pk)
    rows = list(SegmentMembership.objects.order_by("id").values())
    diff = segment_recompute(segment_id=segment.pk)
    assert diff.entered == [] and diff.exited == []
    assert list(SegmentMembership.objects.order_by("id").values()) == rows


def test_the_pipeline_keeps_a_realtime_segment_current_with_reasons(people, post_collect, drain):
    segment = definitions.segment_create(
        key="browsers", name="Browsers", mode="realtime",
        definition={"event": "Product Viewed", "within": "24h", "count": {"op": "gte", "value": 2}})
    segment_recompute(segment_id=segment.pk)
    assert open_members(segment) == set()
    for n in range(2):
        post_collect("track", {"userId": "ann", "event": "Product Viewed", "messageId": f"v{n}", "timestamp": iso()})
    post_collect("track", {"userId": "bo", "event": "Product Viewed", "messageId": "bo1", "timestamp": iso()})
    drain()
    assert open_members(segment) == {pid("ann")}
    [reason] = SegmentMembership.objects.get(segment=segment, profile_id=pid("ann")).reasons
    assert reason["value"] == 2 and reason["held"] is True and "Product Viewed" in reason["condition"]
    post_collect("track", {"userId": "bo", "event": "Product Viewed", "messageId": "bo2", "timestamp": iso()})
    drain()
    assert open_members(segment) == {pid("ann"), pid("bo")}
    segment.refresh_from_db()
    assert segment.size == 2


def test_the_realtime_step_reads_only_the_profiles_whose_events_matter(people, post_collect, drain):
    segment = definitions.segment_create(key="buyers", name="Buyers", mode="realtime",
                                         definition={"event": "Order Completed"})
    segment_recompute(segment_id=segment.pk)
    post_collect("track", {"userId": "ann", "event": "Page Scrolled", "messageId": "s1"})
    with CaptureQueriesContext(connection) as queries:
        drain()
    # No profile of the batch received an Order Completed: the segment's query is not run.
    assert not [q for q in queries.captured_queries if "segments_segmentmembership" in q["sql"]]


def test_a_track_event_does_not_evaluate_segments_of_traits_identifiers_or_consent(people, post_collect, drain):
    for key, definition in [("pro", {"trait": "plan", "op": "eq", "value": "pro"}),
                            ("phones", {"identifier": "phone"}),
                            ("mailable", {"consent": "marketing_email", "is": "granted"})]:
        segment_recompute(segment_id=definitions.segment_create(key=key, name=key, mode="realtime",
                                                                definition=definition).pk)
    post_collect("track", {"userId": "ann", "event": "Page Scrolled", "messageId": "s1"})
    with CaptureQueriesContext(connection) as queries:
        drain()
    assert not [q for q in queries.captured_queries if "segments_segmentmembership" in q["sql"]]


def test_only_segments_that_read_a_changed_trait_or_that_an_event_can_move_are_evaluated(people, post_collect,
                                                                                         drain):
    """Shown by memberships left stale on purpose, which only an evaluation would correct."""
    pro = definitions.segment_create(key="pro", name="Pro", mode="realtime",
                                     definition={"trait": "plan", "op": "eq", "value": "pro"})
    german = definitions.segment_create(key="german", name="German", mode="realtime",
                                        definition={"trait": "country", "op": "eq", "value": "DE"})
    rarely = definitions.segment_create(key="rarely", name="Rarely", mode="realtime",
                                        definition={"event": "Viewed", "count": {"op": "lt", "value": 3}})
    for segment in (pro, german, rarely):
        segment_recompute(segment_id=segment.pk)
    assert pid("ann") in open_members(pro) and pid("ann") in open_members(rarely)
    SegmentMembership.objects.filter(profile_id=pid("ann"), segment__in=[pro, rarely]).update(
        exited_at=timezone.now())

    post_collect("identify", {"userId": "ann", "traits": {"country": "DE"}, "messageId": "c1"})
    post_collect("track", {"userId": "ann", "event": "Viewed", "messageId": "v1"})
    drain()
    # The country moved her into "german"; "pro" reads only the plan, and a view can only take her out of
    # "rarely", which she is not in: neither is evaluated, so neither notices she should be in.
    assert pid("ann") in open_members(german)
    assert pid("ann") not in open_members(pro) | open_members(rarely)

    post_collect("identify", {"userId": "ann", "traits": {"plan": "enterprise"}, "messageId": "c2"})
    post_collect("identify", {"userId": "ann", "traits": {"plan": "pro"}, "messageId": "c3"})
    drain()
    assert pid("ann") in open_members(pro)


def test_an_edited_definition_is_evaluated_whole_until_its_recompute(people, post_collect, drain):
    """Between the edit and the recompute it queues, memberships answer the old definition: a view, which can only
    bring people into "viewed at least N times", still takes out a member who no longer qualifies."""
    viewers = definitions.segment_create(key="viewers", name="Viewers", mode="realtime",
                                         definition={"event": "Viewed"})
    post_collect("track", {"userId": "ann", "event": "Viewed", "messageId": "v1"})
    drain()
    segment_recompute(segment_id=viewers.pk)
    assert pid("ann") in open_members(viewers)
    definitions.segment_update(segment=viewers, definition={"event": "Viewed", "count": {"op": "gte", "value": 5}})
    viewers.refresh_from_db()
    assert viewers.status == Segment.Status.COMPUTING
    post_collect("track", {"userId": "ann", "event": "Viewed", "messageId": "v2"})
    drain()
    assert pid("ann") not in open_members(viewers)
    segment_recompute(segment_id=viewers.pk)
    viewers.refresh_from_db()
    assert viewers.status == Segment.Status.READY


def test_realtime_segments_follow_trait_identifier_and_consent_changes(people, post_collect, drain):
    segments = {key: definitions.segment_create(key=key, name=key, mode="realtime", definition=definition)
                for key, definition in [("enterprise", {"trait": "plan", "op": "eq", "value": "enterprise"}),
                                        ("phones", {"identifier": "phone"}),
                                        ("mailable", {"consent": "marketing_email", "is": "granted"})]}
    for segment in segments.values():
        segment_recompute(segment_id=segment.pk)
    assert all(open_members(segment) == set() for segment in segments.values())
    post_collect("identify", {"userId": "ann", "traits": {"plan": "enterprise"}, "messageId": "up"})
    post_collect("identify", {"userId": "bo", "traits": {"phone": "+49 30 1234567"}, "messageId": "phone"})
    post_collect("track", {"userId": "cy", "event": "Newsletter Opened", "messageId": "ok",
                           "context": {"consent": {"categoryPreferences": {"Email": True}}}})
    drain()
    assert open_members(segments["enterprise"]) == {pid("ann")}
    assert open_members(segments["phones"]) == {pid("bo")}
    assert open_members(segments["mailable"]) == {pid("cy")}
    post_collect("identify", {"userId": "ann", "traits": {"plan": "free"}, "messageId": "down"})
    drain()
    assert open_members(segments["enterprise"]) == set()


def test_a_country_that_moves_the_consent_regime_moves_a_consent_segment(people, post_collect, drain):
    # No choice recorded: the regime's default decides, and the country decides the regime.
    mailable = definitions.segment_create(key="mailable", name="Mailable", mode="realtime",
                                          definition={"consent": "marketing_email", "is": "granted"})
    segment_recompute(segment_id=mailable.pk)
    assert open_members(mailable) == set()
    post_collect("identify", {"userId": "bo", "traits": {"country": "US"}, "messageId": "moved"})
    drain()
    assert open_members(mailable) == {pid("bo")}
    post_collect("identify", {"userId": "bo", "traits": {"country": "DE"}, "messageId": "back"})
    drain()
    assert open_members(mailable) == set()


def test_a_new_person_enters_a_segment_that_holds_for_someone_with_no_event(people, post_collect, drain):
    segment = definitions.segment_create(key="never-bought", name="Never bought", mode="realtime",
                                         definition={"not": {"event": "Order Completed"}})
    segment_recompute(segment_id=segment.pk)
    assert open_members(segment) == {pid("ann"), pid("bo"), pid("cy")}
    post_collect("track", {"userId": "dan", "event": "Page Scrolled", "messageId": "d1"})
    post_collect("track", {"userId": "ann", "event": "Order Completed", "messageId": "a1"})
    drain()
    assert open_members(segment) == {pid("bo"), pid("cy"), pid("dan")}


def test_a_realtime_segment_of_a_batch_segment_follows_its_recompute(people, post_collect, drain):
    pro = definitions.segment_create(key="pro", name="Pro", mode="batch",
                                     definition={"trait": "plan", "op": "eq", "value": "pro"})
    segment_recompute(segment_id=pro.pk)
    fans = definitions.segment_create(key="fans", name="Fans", mode="realtime",
                                      definition={"all": [{"segment": "pro"}, {"identifier": "email"}]})
    segment_recompute(segment_id=fans.pk)
    assert open_members(fans) == {pid("ann"), pid("cy")}
    post_collect("identify", {"userId": "bo", "traits": {"plan": "pro"}, "messageId": "up"})
    post_collect("identify", {"userId": "cy", "traits": {"plan": "free"}, "messageId": "down"})
    drain()
    assert open_members(fans) == {pid("ann"), pid("cy")}
    segment_recompute(segment_id=pro.pk)
    assert open_members(fans) == {pid("ann"), pid("bo")}


def test_only_segments_that_can_change_without_a_write_are_swept_often():
    definitions_by_key = {
        "window": {"event": "Product Viewed", "within": "1h"},
        "dated": {"trait": "signup", "op": "newer_than", "value": "4w"},
        "computed": {"computed": "monetary_value", "op": "gt", "value": 100},
        "consent": {"consent": "marketing_email", "is": "granted"},
        "trait": {"trait": "plan", "op": "eq", "value": "pro"},
        "ever": {"event": "Order Completed", "count": {"op": "gte", "value": 2}},
    }
    ids = {key: definitions.segment_create(key=key, name=key, mode="realtime", definition=definition).pk
           for key, definition in definitions_by_key.items()}
    now = timezone.now()
    for segment_id in ids.values():
        SegmentSize.objects.create(segment_id=segment_id, at=now - timedelta(minutes=10), size=0)
    # A static list is matched again hourly: someone who gains a listed identifier joins.
    ids["listed"] = definitions.segment_create(key="listed", name="Listed", mode="static").pk
    Segment.objects.filter(pk=ids["listed"]).update(last_computed_at=now - timedelta(minutes=10))
    due = set(segments_due(now=now, realtime_every=300, batch_every=3600))
    assert due == {ids["window"], ids["dated"], ids["computed"], ids["consent"]}
    due = set(segments_due(now=now + timedelta(hours=1), realtime_every=300, batch_every=3600))
    assert due == set(ids.values())


def test_a_window_that_passes_takes_members_out_on_the_sweep(people, post_collect, drain):
    segment = definitions.segment_create(key="recent", name="Recent", mode="realtime",
                                         definition={"event": "Product Viewed", "within": "1h"})
    post_collect("track", {"userId": "ann", "event": "Product Viewed", "messageId": "v", "timestamp": iso()})
    drain()
    segment_recompute(segment_id=segment.pk)
    assert open_members(segment) == {pid("ann")}
    segment_recompute(segment_id=segment.pk, now=timezone.now() + timedelta(hours=2))
    assert open_members(segment) == set()


def test_memberships_follow_a_merge_to_the_survivor(post_collect, drain):
    post_collect("identify", {"userId": "dee", "traits": {"plan": "pro"}, "messageId": "1"})
    post_collect("identify", {"anonymousId": "phone", "traits": {"plan": "pro"}, "messageId": "2"})
    drain()
    segment = definitions.segment_create(key="pro", name="Pro", mode="realtime",
                                         definition={"trait": "plan", "op": "eq", "value": "pro"})
    segment_recompute(segment_id=segment.pk)
    dee, phone = pid("dee"), pid("phone", "anonymous_id")
    assert open_members(segment) == {dee, phone}
    post_collect("track", {"userId": "dee", "anonymousId": "phone", "event": "Linked", "messageId": "3"})
    drain()
    survivor = pid("dee")
    assert open_members(segment) == {survivor}
    merged = ({dee, phone} - {survivor}).pop()
    assert SegmentMembership.objects.get(segment=segment, profile_id=merged).exited_at is not None
    # Two members who are one person now count once.
    segment.refresh_from_db()
    assert segment.size == 1


def test_a_static_segment_lists_identifiers_normalised(people, post_collect, drain):
    segment = definitions.segment_create(key="vip", name="VIP", mode="static")
    added = definitions.static_members_add(segment=segment, identifiers=[("email", " ANN@Example.com "),
                                                                         ("email", "nobody@example.com")])
    assert added == 2
    segment_recompute(segment_id=segment.pk)
    assert open_members(segment) == {pid("ann")}
    # Someone listed before they exist joins once they do.
    post_collect("identify", {"userId": "nb", "traits": {"email": "nobody@example.com"}, "messageId": "nb"})
    drain()
    segment_recompute(segment_id=segment.pk)
    assert open_members(segment) == {pid("ann"), pid("nb")}
    definitions.static_members_remove(segment=segment, identifiers=[("email", "ann@EXAMPLE.com")])
    segment_recompute(segment_id=segment.pk)
    assert open_members(segment) == {pid("nb")}


def test_a_segment_of_segments_and_the_cycles_it_could_make(people):
    pro = definitions.segment_create(key="pro", name="Pro", mode="batch",
                                     definition={"trait": "plan", "op": "eq", "value": "pro"})
    segment_recompute(segment_id=pro.pk)
    fans = definitions.segment_create(key="fans", name="Fans", mode="batch",
                                      definition={"all": [{"segment": "pro"}, {"identifier": "email"}]})
    segment_recompute(segment_id=fans.pk)
    assert open_members(fans) == {pid("ann"), pid("cy")}
    with pytest.raises(rules.DefinitionError) as refused:
        definitions.segment_update(segment=pro, definition={"any": [{"segment": "fans"}]})
    assert refused.value.field == "definition.any[0]" and "pro -> fans -> pro" in refused.value.message
    with pytest.raises(rules.DefinitionError) as unknown:
        definitions.segment_create(key="x", name="X", mode="batch", definition={"not": {"segment": "nope"}})
    assert unknown.value.field == "definition.not" and '"nope"' in unknown.value.message
    with pytest.raises(definitions.SegmentInUse):
        definitions.segment_delete(segment=pro)
    assert Segment.objects.filter(key="pro").exists()


def test_an_unknown_consent_purpose_is_refused_with_its_place():
    with pytest.raises(rules.DefinitionError) as refused:
        definitions.segment_create(key="x", name="X", mode="batch", definition={"all": [
            {"identifier": "email"}, {"consent": "telepathy", "is": "granted"}]})
    assert refused.value.field == "definition.all[1]" and "telepathy" in refused.value.message
    assert not Segment.objects.exists()


def test_erasure_removes_memberships_and_listed_identifiers(people):
    segment = definitions.segment_create(key="vip", name="VIP", mode="static")
    definitions.static_members_add(segment=segment, identifiers=[("email", "ann@example.com"),
                                                                 ("email", "bo@example.com")])
    segment_recompute(segment_id=segment.pk)
    [handler] = [h for h in handlers() if h.name == "segments"]
    exported = handler.export([pid("ann")])
    assert exported["static_segment_entries"] == [{"segment__key": "vip", "identifier_type": "email",
                                                   "value": "ann@example.com"}]
    assert len(exported["segment_memberships"]) == 1
    segment.refresh_from_db()
    assert segment.size == 2
    while any(handler.erase([pid("ann")], 1).values()):
        pass
    assert not SegmentMembership.objects.filter(profile_id=pid("ann")).exists()
    segment.refresh_from_db()
    assert segment.size == 1
    assert list(StaticMember.objects.values_list("value", flat=True)) == ["bo@example.com"]
    assert SegmentMembership.objects.filter(profile_id=pid("bo")).exists()


_STEP_SEGMENTS = [
    ("viewed", {"event": "Viewed", "within": "24h"}),
    ("viewed-twice", {"event": "Viewed", "count": {"op": "gte", "value": 2}}),
    ("pro", {"trait": "plan", "op": "eq", "value": "pro"}),
    ("emailed", {"identifier": "email"}),
    ("mailable", {"consent": "marketing_email", "is": "granted"}),
    ("never-bought", {"not": {"event": "Bought"}}),
    ("abandoned", {"event": "Added", "not_followed_by": {"event": "Bought", "within": "2h"}}),
    ("rich", {"event": "Bought", "sum": {"property": "revenue", "op": "gt", "value": 100}}),
    ("pro-viewers", {"all": [{"segment": "pro"}, {"segment": "viewed"}]}),
    ("phone-or-refused", {"any": [{"identifier": "phone"}, {"consent": "marketing_email", "is": "denied"}]}),
    ("rarely-viewed", {"event": "Viewed", "count": {"op": "lt", "value": 2}}),
    ("viewed-long-ago", {"event": "Viewed", "first": {"op": "older_than", "value": "2h"}}),
    ("bought-lately", {"not": {"event": "Bought", "last": {"op": "newer_than", "value": "24h"}}}),
    ("added-then-bought", {"event": "Added", "followed_by": {"event": "Bought", "within": "2h"}}),
    ("german-or-viewed", {"any": [{"trait": "country", "op": "eq", "value": "DE"},
                                  {"event": "Viewed", "count": {"op": "eq", "value": 1}}]}),
    ("big-spender", {"event": "Bought", "within": "7d", "where": [{"property": "revenue", "op": "gt", "value": 100}]}),
]
_PEOPLE = [("userId", "u0"), ("userId", "u1"), ("userId", "u2"), ("anonymousId", "a0"), ("anonymousId", "a1")]
# Hours back from now (one ahead): well inside or well outside every window above, so no boundary is crossed while
# a test runs.
_HOURS = [-1, 0.5, 1, 5, 30, 100, 400]
_message = st.one_of(
    st.tuples(st.just("track"), st.sampled_from(_PEOPLE), st.sampled_from(["Viewed", "Added", "Bought"]),
              st.sampled_from(_HOURS), st.sampled_from([0, 60, 150])),
    st.tuples(st.just("identify"), st.sampled_from(_PEOPLE), st.sampled_from([None, "pro", "free"]),
              st.sampled_from([None, "DE", "US"]), st.booleans(), st.booleans()),
    st.tuples(st.just("link"), st.sampled_from(_PEOPLE[:3]), st.sampled_from(_PEOPLE[3:])),
    st.tuples(st.just("consent"), st.sampled_from(_PEOPLE), st.booleans()),
)
_examples = iter(range(10**6))


def _body(message, prefix: str, n: int) -> tuple[str, dict]:
    kind, (id_kind, who) = message[0], message[1]
    body = {id_kind: prefix + who, "messageId": f"{prefix}m{n}"}
    if kind == "track":
        _, _, name, hours, revenue = message
        return "track", {**body, "event": name, "properties": {"revenue": revenue},
                         "timestamp": iso(timedelta(hours=hours))}
    if kind == "identify":
        _, _, plan, country, email, phone = message
        traits = {k: v for k, v in [("plan", plan), ("country", country)] if v}
        if email:
            traits["email"] = f"{prefix}{who}@example.com"
        if phone:
            traits["phone"] = f"+49 30 {1000000 + n}"
        return "identify", {**body, "traits": traits}
    if kind == "link":
        return "track", {**body, "anonymousId": prefix + message[2][1], "event": "Linked"}
    return "track", {**body, "event": "Chose", "context": {"consent": {
        "categoryPreferences": {"Email": message[2]}}}}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(batches=[[("identify", ("userId", "u0"), None, None, False, False)],
                  [("identify", ("userId", "u0"), None, "US", False, False)]])
@given(batches=st.lists(st.lists(_message, min_size=1, max_size=6), min_size=1, max_size=3))
def test_the_realtime_step_leaves_nothing_for_a_recompute_to_change(post_collect, drain, batches):
    """Whatever the batches wrote (events, traits that move the consent regime, identifiers, consent choices,
    merges), the memberships the pipeline's realtime step kept equal a full recompute's, and sizes their count."""
    prefix = f"x{next(_examples)}-"
    Segment.objects.all().delete()
    segments = {key: definitions.segment_create(key=prefix + key, name=key, mode="realtime",
                                                definition=_prefixed(definition, prefix))
                for key, definition in _STEP_SEGMENTS}
    for segment in segments.values():
        segment_recompute(segment_id=segment.pk)
    n = 0
    for batch in batches:
        for message in batch:
            n += 1
            kind, body = _body(message, prefix, n)
            assert post_collect(kind, body).status_code == 200
        drain()
    for key, segment in segments.items():
        segment.refresh_from_db()
        size = segment.size
        diff = segment_recompute(segment_id=segment.pk)
        assert (key, diff.entered, diff.exited) == (key, [], [])
        assert (key, size) == (key, len(open_members(segment)))


def _prefixed(definition, prefix: str):
    """A definition whose segment references carry the example's prefix."""
    if isinstance(definition, dict):
        return {k: (prefix + v if k == "segment" else _prefixed(v, prefix)) for k, v in definition.items()}
    if isinstance(definition, list):
        return [_prefixed(v, prefix) for v in definition]
    return definition


def test_an_admin_edit_that_only_changes_a_value_s_json_type_moves_realtime_segments(client, people):
    from tests.factories import UserFactory

    flagged = definitions.segment_create(key="flagged", name="Flagged", mode="realtime",
                                         definition={"trait": "vip", "op": "eq", "value": True})
    Profile.objects.filter(pk=pid("bo")).update(traits={"plan": "free", "vip": 1})
    segment_recompute(segment_id=flagged.pk)
    assert open_members(flagged) == set()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    form = {"traits": '{"plan": "free", "vip": true}', "identifiers-TOTAL_FORMS": "0",
            "identifiers-INITIAL_FORMS": "0", "_save": "Save"}
    assert client.post(f"/admin/profiles/profile/{pid('bo')}/change/", form).status_code == 302
    assert open_members(flagged) == {pid("bo")}


def test_an_admin_edit_of_the_traits_moves_realtime_segments(client, people):
    from tests.factories import UserFactory

    enterprise = definitions.segment_create(key="enterprise", name="Enterprise", mode="realtime",
                                            definition={"trait": "plan", "op": "eq", "value": "enterprise"})
    mailable = definitions.segment_create(key="mailable", name="Mailable", mode="realtime",
                                          definition={"consent": "marketing_email", "is": "granted"})
    for segment in (enterprise, mailable):
        segment_recompute(segment_id=segment.pk)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    form = {"traits": '{"plan": "enterprise", "country": "US"}', "identifiers-TOTAL_FORMS": "0",
            "identifiers-INITIAL_FORMS": "0", "_save": "Save"}
    assert client.post(f"/admin/profiles/profile/{pid('bo')}/change/", form).status_code == 302
    assert open_members(enterprise) == {pid("bo")}
    assert open_members(mailable) == {pid("bo")}
    enterprise.refresh_from_db()
    assert enterprise.size == 1
