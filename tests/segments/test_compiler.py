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
from segments.compiler import compile_members, compile_realtime, compile_reasons
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
@given(definition=definitions, other=definitions, world=worlds, scope_picks=st.sets(st.integers(0, 4)))
def test_the_compiled_query_selects_what_the_reference_selects(stage, definition, other, world, scope_picks):
    # Each example in a savepoint rolled back at its end: the next starts from the same empty tables.
    with transaction.atomic():
        _check(stage, definition, other, world, scope_picks)
        transaction.set_rollback(True)


def _check(stage, definition, other, world, scope_picks):
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
    assert set(by_profile) == set(live)
    paths = rules.leaves(node)
    for pid in live:
        got = by_profile[pid] if isinstance(by_profile[pid], list) else orjson.loads(by_profile[pid])
        assert [r["path"] for r in got] == [p for p, _ in paths]
        assert [r["held"] for r in got] == [reference.leaf_holds(state, leaf, pid, NOW) for _, leaf in paths]


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
