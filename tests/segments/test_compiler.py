"""The compiler proven against the reference: random definitions over random worlds written to PostgreSQL must
select the same profiles, with or without a scope, and give the same reasons."""
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from consent.selectors import consent_allowed_sql, consent_granted
from consent.services.ledger import ConsentChoice, consent_record
from profiles.models import Source
from segments import rules
from segments.compiler import compile_members, compile_realtime, compile_reasons, compile_step
from segments.models import Segment
from tests.segments import reference
from tests.segments.reference import World, WorldEvent

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
PURPOSES = ["marketing_email", "analytics", "sale_sharing", "personalization"]
TRAIT_KEYS = ["plan", "age", "signup", "address.country", "flag"]
NAMES = ["A", "B", "C"]
DURATIONS = ["30m", "1h", "2h", "1d", "1w"]
# Mostly exactly a window back (and apart), where >= and > differ; a few just outside.
MINUTES_AGO = [-30, 0, 30, 60, 90, 120, 1440, 10080, 31, 61, 121, 1441, 20000]

scalars = st.one_of(st.booleans(), st.integers(-3, 3), st.sampled_from([0.5, 1.0, -2.25, 2.5]),
                    st.sampled_from(["pro", "free", "Pro", "p", "", "ö", "2026-11-20", "2026-11-25T11:30:00Z",
                                     "2026-02-30", "2025-01-01 08:30", "x2026-01-01", "2026-11-25T11:00:00+01:00"]))
json_values = st.one_of(st.none(), scalars, st.lists(st.integers(0, 2), max_size=2),
                        st.fixed_dictionaries({"country": st.sampled_from(["DE", "US", 1])}))


@st.composite
def comparisons(draw, ops=tuple(sorted(rules.SCALAR_OPS))):
    op = draw(st.sampled_from(ops))
    if op in ("exists", "not_exists"):
        return {"op": op}
    if op in ("in", "not_in"):
        return {"op": op, "value": draw(st.lists(scalars, min_size=1, max_size=3))}
    if op == "between":
        numbers = draw(st.booleans())
        low, high = (draw(st.integers(-3, 3)), draw(st.integers(-3, 3))) if numbers else (
            draw(st.sampled_from(["a", "f", "p", "2026"])), draw(st.sampled_from(["p", "q", "z", "2027"])))
        return {"op": op, "value": [low, high]}
    if op in ("older_than", "newer_than"):
        return {"op": op, "value": draw(st.sampled_from(DURATIONS))}
    if op in ("contains", "starts_with"):
        return {"op": op, "value": draw(st.sampled_from(["p", "pro", "", "2026", "ö", "x"]))}
    if op in ("gt", "gte", "lt", "lte"):
        return {"op": op, "value": draw(st.one_of(st.integers(-3, 3), st.sampled_from(["f", "p", "2026-11-21"])))}
    return {"op": op, "value": draw(scalars)}


@st.composite
def count_compare(draw):
    op = draw(st.sampled_from(sorted(rules.COUNT_OPS)))
    if op == "between":
        return {"op": op, "value": sorted([draw(st.integers(0, 3)), draw(st.integers(0, 3))])}
    return {"op": op, "value": draw(st.one_of(st.integers(0, 3), st.sampled_from([1.5])))}


@st.composite
def event_nodes(draw):
    node = {"event": draw(st.sampled_from(NAMES))}
    if draw(st.booleans()):
        node["within"] = draw(st.sampled_from(DURATIONS))
    if draw(st.integers(0, 3)) == 0:
        node["where"] = [{"property": draw(st.sampled_from(["cat", "rev", "when"])), **draw(comparisons())}]
    measure = draw(st.sampled_from(["default", "count", "sum", "avg", "first", "last"]))
    if measure == "count":
        node["count"] = draw(count_compare())
    elif measure in ("sum", "avg"):
        node[measure] = {"property": "rev", **draw(count_compare())}
    elif measure in ("first", "last"):
        node[measure] = {"op": draw(st.sampled_from(["older_than", "newer_than"])),
                         "value": draw(st.sampled_from(DURATIONS))}
    sequence = draw(st.sampled_from([None, "followed_by", "not_followed_by"]))
    if sequence:
        node[sequence] = {"event": draw(st.sampled_from(NAMES)), "within": draw(st.sampled_from(DURATIONS))}
    return node


leaves = st.one_of(
    st.builds(lambda k, c: {"trait": k, **c}, st.sampled_from(TRAIT_KEYS), comparisons()),
    st.builds(lambda k, c: {"computed": k, **c}, st.sampled_from(["score", "rfm"]), comparisons()),
    event_nodes(),
    st.builds(lambda p, s: {"consent": p, "is": s}, st.sampled_from(PURPOSES), st.sampled_from(["granted", "denied"])),
    st.builds(lambda k: {"segment": k}, st.sampled_from(["s1", "s2"])),
    st.builds(lambda t: {"identifier": t}, st.sampled_from(["email", "phone", "user_id"])),
)
definitions = st.recursive(leaves, lambda inner: st.one_of(
    st.builds(lambda c: {"all": c}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda c: {"any": c}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda c: {"not": c}, inner)), max_leaves=6)

profile_strategy = st.fixed_dictionaries({
    "traits": st.dictionaries(st.sampled_from(["plan", "age", "signup", "flag"]), json_values, max_size=4).flatmap(
        lambda t: st.builds(lambda a: {**t, **({"address": a} if a is not None else {})},
                            st.one_of(st.none(), st.fixed_dictionaries({"country": json_values})))),
    "computed": st.dictionaries(st.sampled_from(["score", "rfm"]), json_values, max_size=2),
    "identifiers": st.sets(st.sampled_from(["email", "phone", "user_id"])),
    "regime": st.sampled_from(["", "gdpr", "ccpa"]),
    "consent": st.dictionaries(st.sampled_from(PURPOSES), st.booleans(), max_size=2),
    "segments": st.sets(st.sampled_from(["s1", "s2"])),
})
event_strategy = st.tuples(st.integers(0, 2), st.sampled_from(NAMES + ["page"]), st.sampled_from(MINUTES_AGO),
                           st.dictionaries(st.sampled_from(["cat", "rev", "when"]), json_values, max_size=3))
worlds = st.tuples(st.lists(profile_strategy, min_size=5, max_size=5), st.lists(event_strategy, max_size=25))


@pytest.fixture
def stage(db):
    source = Source.objects.create(name="compiler")
    segment_ids = {key: Segment.objects.create(key=key, name=key, definition={"identifier": "email"}).pk
                   for key in ("s1", "s2")}
    return source, segment_ids


def _write(source, segment_ids, people, events) -> tuple[World, list[int]]:
    """Writes the world and returns it with the live profile ids."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO profiles_profile (created_at, updated_at, traits, trait_times, computed, event_count, "
            "event_counts, regime) SELECT now(), now(), t.traits, '{}', t.computed, 0, '{}', t.regime FROM "
            "jsonb_to_recordset(%s::jsonb) AS t(traits jsonb, computed jsonb, regime text, n int) "
            "ORDER BY n RETURNING id",
            [orjson.dumps([{"traits": p["traits"], "computed": p["computed"], "regime": p["regime"], "n": n}
                           for n, p in enumerate(people)]
                          + [{"traits": {"plan": "pro"}, "computed": {}, "regime": "", "n": len(people)}]).decode()])
        ids = sorted(r[0] for r in cur.fetchall())
        live, tombstone = ids[:-1], ids[-1]
        cur.execute("UPDATE profiles_profile SET merged_into_id = %s WHERE id = %s", [live[0], tombstone])
        world = World(merged={tombstone}, traits={tombstone: {"plan": "pro"}}, computed={tombstone: {}})
        rows = []
        for pid, person in zip(live, people):
            world.traits[pid], world.computed[pid] = person["traits"], person["computed"]
            world.identifiers[pid] = set(person["identifiers"])
            rows += [(kind, f"{kind}-{pid}", pid) for kind in person["identifiers"]]
            for key in person["segments"]:
                world.members.setdefault(key, set()).add(pid)
        rows.append(("email", f"email-{tombstone}", tombstone))
        cur.execute("INSERT INTO profiles_identifier (type, value, profile_id, first_seen) "
                    "SELECT t, v, p, now() FROM jsonb_to_recordset(%s::jsonb) AS r(t text, v text, p bigint)",
                    [orjson.dumps([{"t": t, "v": v, "p": p} for t, v, p in rows]).decode()])
        memberships = [{"s": segment_ids[key], "p": pid, "x": False} for key, pids in world.members.items()
                       for pid in pids]
        # Stays that ended do not count.
        memberships += [{"s": segment_ids["s2"], "p": live[1], "x": True}] if live[1] not in world.members.get(
            "s2", set()) else []
        cur.execute("INSERT INTO segments_segmentmembership (segment_id, profile_id, entered_at, exited_at, reasons) "
                    "SELECT s, p, now(), CASE WHEN x THEN now() END, '[]' FROM jsonb_to_recordset(%s::jsonb) "
                    "AS r(s bigint, p bigint, x boolean)", [orjson.dumps(memberships).decode()])
        stored = []
        for n, (who, name, ago, properties) in enumerate(events):
            at = NOW - timedelta(minutes=ago)
            kind, pid = ("page", live[who]) if name == "page" else ("track", live[who])
            world.events.append(WorldEvent(pid, "A" if kind == "page" else name, at, properties, kind))
            stored.append({"i": n + 1, "t": kind, "e": "A" if kind == "page" else name, "ts": at.isoformat(),
                           "p": pid, "pl": {"type": kind, "properties": properties}})
        # An event set aside without a profile never counts for anyone.
        stored.append({"i": 10_000, "t": "track", "e": "A", "ts": NOW.isoformat(), "p": None, "pl": {}})
        cur.execute(
            "INSERT INTO profiles_event (id, source_id, message_id, type, event, user_id, anonymous_id, \"timestamp\", "
            "received_at, payload, profile_id, processed_at, error) SELECT i, %s, 'm' || i, t, e, '', '', ts, now(), "
            "pl, p, now(), '' FROM jsonb_to_recordset(%s::jsonb) AS r(i bigint, t text, e text, ts timestamptz, "
            "p bigint, pl jsonb)", [source.pk, orjson.dumps(stored).decode()])
    choices = [ConsentChoice(profile_id=pid, purpose=purpose, granted=granted, source="api", recorded_at=NOW)
               for pid, person in zip(live, people) for purpose, granted in person["consent"].items()]
    if choices:
        consent_record(choices=choices)
    world.allowed = {purpose: consent_granted(profile_ids=live, purpose=purpose) for purpose in PURPOSES}
    return world, live


def _consent(purpose, alias):
    return consent_allowed_sql(purpose=purpose, profile_alias=alias)


def _run(compiled) -> set[int]:
    with connection.cursor() as cur:
        cur.execute(compiled.sql, compiled.params)
        return {r[0] for r in cur.fetchall()}


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(definition=definitions, other=definitions, world=worlds, scope_picks=st.sets(st.integers(0, 4)),
       ways=st.lists(st.tuples(st.sampled_from([0, 1, -1]), st.booleans()), min_size=10, max_size=10),
       written_picks=st.sets(st.integers(0, 24)))
def test_the_compiled_query_selects_what_the_reference_selects(stage, definition, other, world, scope_picks, ways,
                                                               written_picks):
    # Each example in a savepoint rolled back at its end: the next starts from the same empty tables.
    with transaction.atomic():
        _check(stage, definition, other, world, scope_picks, ways, written_picks)
        transaction.set_rollback(True)


def _counts(event: WorldEvent, node) -> bool:
    """Whether an event is an occurrence one of the definition's event conditions could count (its event, window
    and where, and for a not_followed_by a window to be followed that has passed), or its followed_by or
    not_followed_by event."""
    for _, leaf in rules.leaves(node):
        if isinstance(leaf, rules.Event):
            if (reference._matches(event, leaf.name, leaf.where, event.profile_id, NOW)
                    and (leaf.within is None or event.timestamp >= NOW - leaf.within)
                    and not (leaf.follow and leaf.follow.negated and event.timestamp + leaf.follow.within > NOW)):
                return True
            if leaf.follow and reference._matches(event, leaf.follow.event, leaf.follow.where, event.profile_id, NOW):
                return True
    return False


def _check(stage, definition, other, world, scope_picks, ways, written_picks=frozenset()):
    source, segment_ids = stage
    people, events = world
    state, live = _write(source, segment_ids, people, events)
    node = rules.parse(definition)
    expected = reference.members(state, node, NOW)

    assert _run(compile_members(node, now=NOW, segment_ids=segment_ids, consent_sql=_consent)) == expected
    scope = [live[i] for i in sorted(scope_picks)]
    assert _run(compile_members(node, now=NOW, segment_ids=segment_ids, consent_sql=_consent,
                                scope_ids=scope)) == expected & set(scope)

    # The realtime step: several segments in one query, each within its own scope, sharing one event aggregate.
    other_node = rules.parse(other)
    other_expected = reference.members(state, other_node, NOW)
    together = compile_realtime([(1, node, scope), (2, other_node, live), (3, node, live[1::2])], now=NOW,
                                segment_ids=segment_ids, consent_sql=_consent)
    with connection.cursor() as cur:
        cur.execute(together.sql, together.params)
        pairs = set(cur.fetchall())
    assert pairs == ({(1, p) for p in expected & set(scope)} | {(2, p) for p in other_expected}
                     | {(3, p) for p in expected & set(live[1::2])})

    reasons = compile_reasons(node, now=NOW, segment_ids=segment_ids, consent_sql=_consent, profile_ids=live)
    with connection.cursor() as cur:
        cur.execute(reasons.sql, reasons.params)
        by_profile = dict(cur.fetchall())
    other_reasons = compile_reasons(other_node, now=NOW, segment_ids=segment_ids, consent_sql=_consent,
                                    profile_ids=live)
    with connection.cursor() as cur:
        cur.execute(other_reasons.sql, other_reasons.params)
        by_profile_other = dict(cur.fetchall())

    # The pipeline's step: the memberships of s1 (the definition) and s2 (the other) that change, for everyone
    # and the tombstone, except where the way a profile can move is where it already is, or where it is in scope
    # through a batch's events (some of the world's) and none of them counts; entering with reasons.
    s1, s2 = segment_ids["s1"], segment_ids["s2"]
    people_and_tombstone = live + sorted(state.merged)
    pairs = [(segment, pid, *ways[(n + 3 * k) % 10]) for k, segment in enumerate((s1, s2))
             for n, pid in enumerate(people_and_tombstone)]
    stored_ids = list(range(1, len(state.events) + 1))
    batch = [n for n in sorted(written_picks) if n < len(state.events)]
    step = compile_step({s1: node, s2: other_node}, pairs, now=NOW, segment_ids=segment_ids, consent_sql=_consent,
                        written=[(stored_ids[n], state.events[n].timestamp) for n in batch])
    with connection.cursor() as cur:
        cur.execute(step.sql, step.params)
        changed = {(segment, pid): (holds, reasons) for segment, pid, holds, reasons in cur.fetchall()}
    holding = {s1: expected, s2: other_expected}
    nodes = {s1: node, s2: other_node}
    members = {s1: state.members.get("s1", set()), s2: state.members.get("s2", set())}
    counted = {(segment, state.events[n].profile_id) for segment in (s1, s2) for n in batch
               if _counts(state.events[n], nodes[segment])}
    expected_changes = {(segment, pid): pid in holding[segment] for segment, pid, way, by_events in pairs
                        if (pid in holding[segment]) != (pid in members[segment])
                        and way != (1 if pid in members[segment] else -1)
                        and (not by_events or (segment, pid) in counted)}
    assert {key: holds for key, (holds, _) in changed.items()} == expected_changes
    for (segment, pid), (holds, got) in changed.items():
        if holds:
            want = (by_profile if segment == s1 else by_profile_other)[pid]
            assert _json(got) == _json(want)
        else:
            assert got is None
    assert set(by_profile) == set(live)
    paths = rules.leaves(node)
    for pid in live:
        got = by_profile[pid] if isinstance(by_profile[pid], list) else orjson.loads(by_profile[pid])
        assert [r["path"] for r in got] == [p for p, _ in paths]
        assert [r["held"] for r in got] == [reference.leaf_holds(state, leaf, pid, NOW) for _, leaf in paths]


def _json(value):
    return orjson.loads(value) if isinstance(value, str) else value


# Events near the windows' edges, with properties their conditions sometimes match.
recent_events = st.tuples(st.just(0), st.sampled_from(NAMES), st.sampled_from([-30, 0, 30, 60, 90, 121, 1441]),
                          st.fixed_dictionaries({}, optional={"cat": scalars, "rev": st.integers(-3, 3)}))


@st.composite
def measured_events(draw):
    """An event condition of every measure and op, with small values its history crosses."""
    node = {"event": "A"}
    if draw(st.booleans()):
        node["within"] = draw(st.sampled_from(["1h", "1d"]))
    kind = draw(st.sampled_from(["count", "sum", "avg", "first", "last"]))
    if kind in ("first", "last"):
        node[kind] = {"op": draw(st.sampled_from(["older_than", "newer_than"])), "value": "1h"}
    elif kind == "count":
        node[kind] = {"op": draw(st.sampled_from(["gt", "gte", "lt", "lte", "eq"])), "value": draw(st.integers(0, 2))}
    else:
        node[kind] = {"property": "rev", "op": draw(st.sampled_from(["gt", "lt", "eq"])), "value": 1}
    sequence = draw(st.sampled_from([None, "followed_by", "not_followed_by"]))
    if sequence:
        node[sequence] = {"event": draw(st.sampled_from(["A", "B"])), "within": "1h"}
    return node


@hsettings(max_examples=400, deadline=None)
@given(definition=st.one_of(measured_events(), st.builds(lambda e: {"not": e}, measured_events()),
                            st.builds(lambda e: {"any": [{"trait": "plan", "op": "eq", "value": "pro"}, e]},
                                      measured_events()), definitions),
       traits=profile_strategy, history=st.lists(recent_events, max_size=6),
       properties=st.fixed_dictionaries({}, optional={"cat": scalars, "rev": st.integers(-3, 3)}))
def test_an_event_moves_a_definition_only_the_ways_event_moves_says(definition, traits, history, properties):
    """Whatever the history, one more event of a name moves a definition's answer only in a way event_moves
    gives for that name (and not at all for a name it does not give), and only if one of its event conditions
    counts that event: what lets the realtime step skip a member whom an event could only bring in, a non-member
    whom it could only take out, and everyone whose events no condition of the segment counts."""
    node = rules.parse(definition)
    moves = rules.event_moves(node)
    world = World(traits={1: traits["traits"]}, computed={1: traits["computed"]},
                  identifiers={1: set(traits["identifiers"])}, members={k: {1} for k in traits["segments"]},
                  allowed={purpose: {1} for purpose, granted in traits["consent"].items() if granted})
    past = [WorldEvent(1, name, NOW - timedelta(minutes=ago), props) for _, name, ago, props in history]
    world.events = past
    before = reference.holds(world, node, 1, NOW)
    for name in NAMES:
        for ago in (-30, 0, 60, 90, 1441, 20000):
            written = WorldEvent(1, name, NOW - timedelta(minutes=ago), properties)
            world.events = past + [written]
            after = reference.holds(world, node, 1, NOW)
            if before != after:
                assert (rules.ENTER if after else rules.LEAVE) in moves.get(name, frozenset()), (name, ago)
                # And it is an occurrence one of the definition's event conditions counts.
                assert _counts(written, node), (name, ago)


@pytest.mark.parametrize("definition, moves", [
    ({"event": "A", "within": "1h"}, {"A": {rules.ENTER}}),
    ({"not": {"event": "A", "count": {"op": "lt", "value": 3}}}, {"A": {rules.ENTER}}),
    ({"event": "A", "sum": {"property": "rev", "op": "gt", "value": 1}}, {"A": {rules.ENTER, rules.LEAVE}}),
    ({"event": "A", "not_followed_by": {"event": "B", "within": "2h"}}, {"A": {rules.ENTER}, "B": {rules.LEAVE}}),
    ({"event": "A", "followed_by": {"event": "A", "within": "2h"}}, {"A": {rules.ENTER}}),
    ({"event": "A", "last": {"op": "older_than", "value": "1d"}}, {"A": {rules.ENTER, rules.LEAVE}}),
    ({"event": "A", "first": {"op": "newer_than", "value": "1d"}}, {"A": {rules.ENTER, rules.LEAVE}}),
    ({"event": "A", "first": {"op": "older_than", "value": "1d"}}, {"A": {rules.ENTER}}),
    ({"event": "A", "count": {"op": "lte", "value": 2}}, {"A": {rules.LEAVE}}),
    ({"all": [{"event": "A"}, {"not": {"event": "A", "within": "1h"}}]}, {"A": {rules.ENTER, rules.LEAVE}}),
])
def test_event_moves_by_example(definition, moves):
    assert rules.event_moves(rules.parse(definition)) == {name: frozenset(m) for name, m in moves.items()}


@pytest.mark.parametrize("definition, member", [
    ({"event": "A", "within": "1h"}, True),  # exactly a window back is inside it
    ({"event": "A", "within": "30m"}, False),
    ({"event": "B", "within": "1d", "followed_by": {"event": "A", "within": "1h"}}, True),  # exactly at the end
    ({"event": "B", "within": "1d", "followed_by": {"event": "A", "within": "30m"}}, False),
    ({"event": "B", "within": "1d", "not_followed_by": {"event": "C", "within": "2h"}}, True),  # window just passed
    ({"event": "B", "within": "1d", "not_followed_by": {"event": "C", "within": "3h"}}, False),  # not yet passed
    ({"trait": "signup", "op": "newer_than", "value": "1h"}, True),
    ({"trait": "signup", "op": "older_than", "value": "1h"}, False),
])
def test_window_edges(stage, definition, member):
    """Windows include their start; a sequence's window includes its end; not_followed_by waits for its end."""
    source, segment_ids = stage
    people = [{"traits": {"signup": (NOW - timedelta(hours=1)).isoformat()}, "computed": {}, "identifiers": set(),
               "regime": "", "consent": {}, "segments": set()}] * 5
    events = [(0, "B", 120, {}), (0, "A", 60, {})]
    state, live = _write(source, segment_ids, people, events)
    node = rules.parse(definition)
    assert (live[0] in reference.members(state, node, NOW)) is member
    assert (live[0] in _run(compile_members(node, now=NOW, segment_ids=segment_ids, consent_sql=_consent))) is member
    together = compile_realtime([(7, node, live)], now=NOW, segment_ids=segment_ids, consent_sql=_consent)
    with connection.cursor() as cur:
        cur.execute(together.sql, together.params)
        assert ((7, live[0]) in set(cur.fetchall())) is member


def test_the_step_reads_each_person_back_to_the_earliest_window_and_all_history_without_one(stage):
    source, segment_ids = stage
    person = {"traits": {}, "computed": {}, "identifiers": set(), "regime": "", "consent": {}, "segments": set()}
    events = [(0, "A", 10, {}), (0, "B", 2 * 1440, {}), (1, "A", 10, {}), (1, "C", 60 * 1440, {})]
    state, live = _write(source, segment_ids, [person] * 5, events)
    recent_and_week = rules.parse({"all": [{"event": "A", "within": "1h"}, {"event": "B", "within": "1w"}]})
    ever = rules.parse({"all": [{"event": "A", "within": "1h"}, {"event": "C"}]})
    s1, s2 = segment_ids["s1"], segment_ids["s2"]
    step = compile_step({s1: recent_and_week, s2: ever}, [(s1, live[0], 0, False), (s2, live[1], 0, False)], now=NOW,
                        segment_ids=segment_ids, consent_sql=_consent)
    with connection.cursor() as cur:
        cur.execute(step.sql, step.params)
        assert {(segment, pid, holds) for segment, pid, holds, _ in cur.fetchall()} == {
            (s1, live[0], True), (s2, live[1], True)}


def test_an_occurrence_whose_not_followed_by_window_is_open_moves_no_one_yet(stage):
    """Cart abandonment cannot be known for a cart added 30 minutes ago: the step leaves the person where they were
    (here a member the definition no longer selects, left so on purpose), while a cart added 90 minutes ago and not
    followed is counted and decides."""
    source, segment_ids = stage
    person = {"traits": {}, "computed": {}, "identifiers": set(), "regime": "", "consent": {}, "segments": {"s1"}}
    state, live = _write(source, segment_ids, [person] * 5, [(0, "A", 30, {}), (1, "A", 90, {})])
    abandoned = rules.parse({"event": "A", "within": "1d", "not_followed_by": {"event": "B", "within": "1h"}})
    s1 = segment_ids["s1"]
    written = [(1, state.events[0].timestamp), (2, state.events[1].timestamp)]
    for pid, holds in ((live[0], False), (live[1], True)):
        assert (pid in reference.members(state, abandoned, NOW)) is holds
    stale = live[2]
    step = compile_step({s1: abandoned}, [(s1, live[0], 0, True), (s1, live[1], 0, True), (s1, stale, 0, False)],
                        now=NOW, segment_ids=segment_ids, consent_sql=_consent, written=written)
    with connection.cursor() as cur:
        cur.execute(step.sql, step.params)
        # live[1] was a member already; the one who never added a cart leaves.
        assert {(segment, pid, holds) for segment, pid, holds, _ in cur.fetchall()} == {(s1, stale, False)}
    step = compile_step({s1: abandoned}, [(s1, live[0], 0, False)], now=NOW, segment_ids=segment_ids,
                        consent_sql=_consent, written=written)
    with connection.cursor() as cur:
        cur.execute(step.sql, step.params)
        assert {(segment, pid, holds) for segment, pid, holds, _ in cur.fetchall()} == {(s1, live[0], False)}


def test_a_date_condition_is_never_planned_in_parallel(db):
    """The date parser catches bad dates in a subtransaction, which no process of a parallel plan may start, the
    leader included: a query that calls it is planned without workers, however cheap they are made."""
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE test_dates (x text)")
        cur.execute("INSERT INTO test_dates SELECT CASE WHEN g % 2 = 0 THEN '2026-02-30' ELSE '2026-11-25' END "
                    "FROM generate_series(1, 100000) g")
        cur.execute("ANALYZE test_dates")
        for setting in ("parallel_setup_cost", "parallel_tuple_cost", "min_parallel_table_scan_size"):
            cur.execute(f"SET LOCAL {setting} = 0")
        cur.execute("SELECT t.x, segments_try_timestamptz(t.x) IS NULL FROM (SELECT x FROM test_dates GROUP BY x) t "
                    "ORDER BY t.x")
        assert cur.fetchall() == [("2026-02-30", True), ("2026-11-25", False)]
