"""The rule language compiled to one parameterised PostgreSQL query: no value is ever pasted into the SQL, and the
only names in it are our own tables and aliases.

Pure: no database access. Consent enters as SQL from `consent_sql(purpose, alias)` (consent.selectors'
consent_allowed_sql), other segments as their ids.

How behaviour compiles, and why: each event condition becomes one aggregate over the matching events grouped by
profile, which the profile is IN (or, when the condition holds for someone with no such event, NOT IN the
profiles for whom it fails). PostgreSQL turns IN into a hash semi join and keeps NOT IN as a hashed subplan: one
pass over the events whatever the number of profiles, also under OR and NOT where a correlated EXISTS would run
once per profile. Restricted to a few profiles (`scope_ids`), the same restriction goes inside every aggregate, so
it reads those profiles' events by index instead of the whole table. For a few people and many segments at once
(campaigns' targeting, compile_realtime; the pipeline's realtime step, compile_step), every event condition is
instead a column of one shared aggregate over each person's events.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orjson

from segments import rules
from segments.rules import (All, Any, Compare, Consent, Context, Event, HasIdentifier, InSegment, Measure, Not, Trait,
                            Where)

ConsentSql = Callable[[str, str], tuple[str, list]]
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
EVENTS = "profiles_event"
MEMBERSHIPS = "segments_segmentmembership"


@dataclass(frozen=True)
class Compiled:
    sql: str
    params: list


class _Sql:
    """SQL text and its parameters, built together so they can never get out of order."""

    def __init__(self, text: str = "", params: list | None = None):
        self.text, self.params = text, list(params or [])

    def __add__(self, other: _Sql | str) -> _Sql:
        if isinstance(other, str):
            return _Sql(self.text + other, self.params)
        return _Sql(self.text + other.text, self.params + other.params)

    def __radd__(self, other: str) -> _Sql:
        return _Sql(other + self.text, self.params)


def _join(parts: list[_Sql], sep: str) -> _Sql:
    out = _Sql()
    for i, part in enumerate(parts):
        out = out + (sep if i else "") + part
    return out


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "string" if isinstance(value, str) else "number"


def _number(value: object) -> _Sql:
    return _Sql("%s::numeric", [str(value)])


def compare_sql(value: _Sql, compare: Compare, now: datetime) -> _Sql:
    """A condition on a jsonb value (NULL when absent) that is true, false or NULL (NULL meaning false)."""
    op, target = compare.op, compare.value
    typeof = "jsonb_typeof(" + value + ")"
    text = "(" + value + " #>> '{}')"
    if op == "exists":
        return "(" + typeof + " IS NOT NULL AND " + typeof + " <> 'null')"
    if op == "not_exists":
        return "(" + typeof + " IS NULL OR " + typeof + " = 'null')"
    if op == "eq":
        return "(" + value + _Sql(" = %s::jsonb)", [orjson.dumps(target).decode()])
    if op == "neq":
        return ("(" + typeof + _Sql(" = %s AND ", [_json_type(target)]) + value
                + _Sql(" <> %s::jsonb)", [orjson.dumps(target).decode()]))
    if op in ("in", "not_in"):
        listed = "(" + value + _Sql(" = ANY(%s::jsonb[]))", [[orjson.dumps(v).decode() for v in target]])
        if op == "in":
            return listed
        return "(" + typeof + " IN ('string', 'number', 'boolean') AND NOT " + listed + ")"
    if op == "contains":
        return "(" + typeof + " = 'string' AND strpos(" + text + _Sql(", %s) > 0)", [target])
    if op == "starts_with":
        return "(" + typeof + " = 'string' AND starts_with(" + text + _Sql(", %s))", [target])
    if op in ("older_than", "newer_than"):
        instant = "segments_try_timestamptz(" + text + ")"
        sign = "<" if op == "older_than" else ">="
        return "(" + typeof + " = 'string' AND " + instant + _Sql(f" {sign} %s)", [now - target])
    # gt, gte, lt, lte, between: numbers as numbers, strings by code point. The type test is inside a CASE, never
    # beside the cast in an AND: PostgreSQL may evaluate either side of an AND first, and casting a string to
    # numeric raises.
    sample = target[0] if op == "between" else target
    if isinstance(sample, str):
        operand = "(CASE WHEN " + typeof + " = 'string' THEN " + text + ' END) COLLATE "C"'

        def const(v):
            return _Sql('%s COLLATE "C"', [v])
    else:
        operand = "(CASE WHEN " + typeof + " = 'number' THEN (" + value + ")::numeric END)"
        const = _number
    if op == "between":
        return "(" + operand + " >= " + const(target[0]) + " AND " + operand + " <= " + const(target[1]) + ")"
    sign = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
    return "(" + operand + f" {sign} " + const(target) + ")"


def _number_compare(value: _Sql, compare: Compare) -> _Sql:
    """A count, sum or average (numeric, maybe NULL) against the measure's comparison."""
    if compare.op == "between":
        return "(" + value + " >= " + _number(compare.value[0]) + " AND " + value + " <= " + _number(
            compare.value[1]) + ")"
    sign = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[compare.op]
    return "(" + value + f" {sign} " + _number(compare.value) + ")"


def number_holds(compare: Compare, value: float) -> bool:
    """The measure's comparison in Python (used to know whether it holds for someone with no event)."""
    op, target = compare.op, compare.value
    if op == "between":
        return target[0] <= value <= target[1]
    return {"eq": value == target, "neq": value != target, "gt": value > target, "gte": value >= target,
            "lt": value < target, "lte": value <= target}[op]


def _at(column: str, parts: tuple[str, ...]) -> _Sql:
    """The jsonb value at a key path of a jsonb column (NULL when absent): `->` per key, cheaper than `#>` with
    a text[] path, which is parsed and walked generically."""
    return _Sql("(" + column + " -> %s::text" * len(parts) + ")", list(parts))


def _property(alias: str, prop: tuple[str, ...]) -> _Sql:
    return _at(f"{alias}.payload", ("properties", *prop))


def _event_filter(alias: str, name: str, where: tuple[Where, ...], now: datetime, within: timedelta | None,
                  scope: str | None, tracked: bool = False) -> _Sql:
    """`tracked`: the rows are known to be track events of a profile (a person's events read for the shared
    aggregate), so only the name is tested, first: most rows are some other condition's event."""
    if tracked:
        sql = _Sql(f"{alias}.event = %s", [name])
    else:
        sql = _Sql(f"{alias}.type = 'track' AND {alias}.event = %s AND {alias}.profile_id IS NOT NULL", [name])
    if within is not None:
        sql = sql + _Sql(f' AND {alias}."timestamp" >= %s', [now - within])
    if scope is not None:
        sql = sql + _Sql(f" AND {alias}.profile_id = ANY(%s::bigint[])", [scope])
    for condition in where:
        sql = sql + " AND " + compare_sql(_property(alias, condition.property), condition.compare, now)
    return sql


def event_condition(leaf: Event, alias: str, now: datetime) -> Compiled:
    """The condition on a row `alias` (with type, event, profile_id and payload columns) of being an occurrence
    of the leaf's event that satisfies its `where`, whatever its time (campaigns' goals)."""
    sql = _event_filter(alias, leaf.name, leaf.where, now, None, None)
    return Compiled(sql.text, sql.params)


def _occurrences(leaf: Event, now: datetime, scope: str | None, tracked: bool = False) -> _Sql:
    """The condition on an event row `e` of being one of the leaf's qualifying occurrences."""
    occurrences = _event_filter("e", leaf.name, leaf.where, now, leaf.within, scope, tracked)
    if leaf.follow:
        follow = leaf.follow
        inner = _Sql(f"SELECT 1 FROM {EVENTS} f WHERE f.profile_id = e.profile_id AND ") + _event_filter(
            "f", follow.event, follow.where, now, None, None) + _Sql(
            ' AND f."timestamp" > e."timestamp" AND f."timestamp" <= e."timestamp" + %s', [follow.within])
        if follow.negated:
            # Only once the window has passed can "not followed" be known.
            occurrences = occurrences + _Sql(' AND e."timestamp" + %s <= %s', [follow.within, now]) + (
                " AND NOT EXISTS (" + inner + ")")
        else:
            occurrences = occurrences + " AND EXISTS (" + inner + ")"
    return occurrences


def _aggregate(leaf: Event, now: datetime, scope: str | None) -> _Sql:
    """SELECT profile_id, v: the measure of each profile with at least one qualifying occurrence."""
    measure: Measure = leaf.measure
    occurrences = _occurrences(leaf, now, scope)
    return "SELECT e.profile_id, " + _measure_value(measure) + f" AS v FROM {EVENTS} e WHERE " + occurrences + (
        " GROUP BY e.profile_id")


def _measure_value(measure: Measure, only: _Sql | None = None) -> _Sql:
    """The aggregate of a measure over the grouped event rows `e` (those satisfying `only`, when given)."""
    where = _Sql() if only is None else " FILTER (WHERE " + only + ")"
    if measure.kind == "count":
        return "(count(*)" + where + ")::numeric"
    if measure.kind in ("sum", "avg"):
        prop = _property("e", measure.property)
        numeric = "CASE WHEN jsonb_typeof(" + prop + ") = 'number' THEN (" + prop + ")::numeric END"
        if measure.kind == "sum":
            return "coalesce(sum(" + numeric + ")" + where + ", 0)"
        return "avg(" + numeric + ")" + where
    return _Sql('min(e."timestamp")' if measure.kind == "first" else 'max(e."timestamp")') + where


def _measure_holds(measure: Measure, value: _Sql, now: datetime) -> _Sql:
    if measure.kind in ("first", "last"):
        sign = "<" if measure.compare.op == "older_than" else ">="
        return "(" + value + _Sql(f" {sign} %s)", [now - measure.compare.value])
    return _number_compare(value, measure.compare)


def _holds_at_zero(measure: Measure) -> bool:
    """Whether the condition holds for a profile without any qualifying occurrence."""
    return measure.kind in ("count", "sum") and number_holds(measure.compare, 0)


def _is_any_occurrence(measure: Measure) -> bool:
    """Whether the measure asks only for at least one occurrence (a count is a whole number)."""
    return (measure.kind == "count" and measure.compare.op in ("gt", "gte")
            and number_holds(measure.compare, 1) and not number_holds(measure.compare, 0))


@dataclass(frozen=True)
class ContextValue:
    """A parameter standing for the value at `key` of a request's context, for a statement compiled once and run
    for many requests (compile_realtime with context=DEFERRED_CONTEXT); `resolve` gives the parameter itself."""

    key: tuple[str, ...]

    def resolve(self, context: dict | None) -> str:
        value = context or {}
        for part in self.key:
            value = value.get(part) if isinstance(value, dict) else None
        return orjson.dumps(value).decode()


# compile_realtime(context=DEFERRED_CONTEXT): context conditions become ContextValue parameters.
DEFERRED_CONTEXT = {"\x00deferred": True}


class _Compiler:
    def __init__(self, *, now: datetime, segment_ids: dict[str, int], consent_sql: ConsentSql,
                 scope: str | None, context: dict | None, measured: dict[str, str] | None = None):
        self.now, self.segment_ids, self.consent_sql = now, segment_ids, consent_sql
        self.scope, self.context = scope, context or {}
        # compile_realtime and compile_step: each event condition's measure is a column of the shared aggregate `a`
        # (by repr).
        self.measured = measured

    def node(self, node, path: str, conjunct: bool = False) -> _Sql:
        """`conjunct`: the node is ANDed into the WHERE clause (the root, or under `all`s only). There an
        "any occurrence" condition becomes EXISTS or NOT EXISTS, which PostgreSQL plans as a semi or anti join
        of its own choosing (index probes for a few candidates, a hash for many); under `any` a correlated
        EXISTS would run once per profile, so IN over a grouped aggregate stays."""
        if isinstance(node, (All, Any)):
            kind, joiner = ("all", " AND ") if isinstance(node, All) else ("any", " OR ")
            inner = conjunct and isinstance(node, All)
            return "(" + _join([self.node(c, f"{path}.{kind}[{i}]", inner) for i, c in enumerate(node.children)],
                               joiner) + ")"
        conjunct = conjunct and self.measured is None
        if isinstance(node, Not):
            if conjunct and isinstance(node.child, Event) and _is_any_occurrence(node.child.measure):
                return "NOT " + self.occurrence_exists(node.child)
            # A condition is true or false for every profile, never NULL: NOT (NULL) would drop the profile.
            return "NOT coalesce(" + self.node(node.child, f"{path}.not") + ", false)"
        if conjunct and isinstance(node, Event) and _is_any_occurrence(node.measure):
            return self.occurrence_exists(node)
        # A leaf may be NULL (a missing trait): false in WHERE, under AND and OR alike; only NOT needs it made false.
        return self.leaf(node, path)

    def occurrence_exists(self, leaf: Event) -> _Sql:
        return (_Sql(f"EXISTS (SELECT 1 FROM {EVENTS} e WHERE e.profile_id = p.id AND ")
                + _occurrences(leaf, self.now, self.scope) + ")")

    def leaf(self, leaf, path: str) -> _Sql:
        if isinstance(leaf, Trait):
            column = "computed" if leaf.computed else "traits"
            return compare_sql(_at(f"p.{column}", leaf.key), leaf.compare, self.now)
        if isinstance(leaf, Context):
            value = ContextValue(tuple(leaf.key))
            resolved = value if self.context is DEFERRED_CONTEXT else value.resolve(self.context)
            return compare_sql(_Sql("%s::jsonb", [resolved]), leaf.compare, self.now)
        if isinstance(leaf, Event) and self.measured is not None:
            value = _Sql(f"a.{self.measured[repr(leaf)]}")
            if leaf.measure.kind in ("count", "sum"):
                value = "coalesce(" + value + ", 0)"
            return "coalesce(" + _measure_holds(leaf.measure, value, self.now) + ", false)"
        if isinstance(leaf, Event):
            aggregate = _aggregate(leaf, self.now, self.scope)
            if _holds_at_zero(leaf.measure):
                return ("p.id NOT IN (SELECT a.profile_id FROM (" + aggregate + ") a WHERE NOT coalesce("
                        + _measure_holds(leaf.measure, _Sql("a.v"), self.now) + ", false))")
            return ("p.id IN (SELECT a.profile_id FROM (" + aggregate + ") a WHERE "
                    + _measure_holds(leaf.measure, _Sql("a.v"), self.now) + ")")
        # For a shared aggregate's few people, a lookup per person, never a hash of the whole table: the planner
        # may hash an EXISTS it can rewrite as IN, and OFFSET 0 is what keeps it from rewriting.
        probe = " OFFSET 0" if self.measured is not None else ""
        if isinstance(leaf, Consent):
            sql, params = self.consent_sql(leaf.purpose, "p")
            allowed = _Sql(f"(SELECT ({sql}){probe})" if probe else f"({sql})", params)
            return allowed if leaf.granted else ("NOT " + allowed)
        if isinstance(leaf, InSegment):
            if self.measured is not None:
                # The few people's open memberships were read once, with the people (`p.segments`).
                return _Sql("%s = ANY(p.segments)", [self.segment_id(leaf.key, path)])
            return _Sql(f"EXISTS (SELECT 1 FROM {MEMBERSHIPS} m WHERE m.segment_id = %s AND m.profile_id = p.id "
                        f"AND m.exited_at IS NULL)", [self.segment_id(leaf.key, path)])
        if isinstance(leaf, HasIdentifier):
            return _Sql("EXISTS (SELECT 1 FROM profiles_identifier i WHERE i.profile_id = p.id AND i.type = %s"
                        f"{probe})", [leaf.type])
        raise TypeError(f"not a condition: {leaf!r}")

    def segment_id(self, key: str, path: str) -> int:
        if key not in self.segment_ids:
            raise rules.DefinitionError(f'no segment has the key "{key}"', path)
        return self.segment_ids[key]


def _scope_literal(scope_ids: list[int] | None) -> str | None:
    if scope_ids is None:
        return None
    return "{" + ",".join(map(str, map(int, scope_ids))) + "}"


def compile_members(node, *, now: datetime, segment_ids: dict[str, int], consent_sql: ConsentSql,
                    scope_ids: list[int] | None = None, context: dict | None = None) -> Compiled:
    """SELECT p.id of the live profiles the definition selects at `now` (within `scope_ids` when given)."""
    scope = _scope_literal(scope_ids)
    compiler = _Compiler(now=now, segment_ids=segment_ids, consent_sql=consent_sql, scope=scope, context=context)
    where = compiler.node(node, "definition", conjunct=True)
    head = _Sql("SELECT p.id FROM profiles_profile p WHERE p.merged_into_id IS NULL")
    if scope is not None:
        head = head + _Sql(" AND p.id = ANY(%s::bigint[])", [scope])
    sql = head + " AND " + where
    return Compiled(sql.text, sql.params)


def compile_realtime(segments: list[tuple[int, object, list[int]]], *, now: datetime, segment_ids: dict[str, int],
                     consent_sql: ConsentSql, context: dict | None = None, visitors: bool = False) -> Compiled:
    """Rows (segment_id, id): for each (segment id, node, scope), the live profiles of its scope it selects, for
    all the segments in one query (campaigns' targeting of one person, with the request's `context`, labelled by
    campaign id). With `visitors`, the scopes' ids are people without a
    profile (a first visit): no traits, and nothing of theirs is found in any table.

    Every event condition of every segment is one FILTERed aggregate of a single pass over the events of all the
    scopes' profiles, so each profile's events are read once, by index, whatever the number of segments; each
    (segment, profile) pair then evaluates only its own segment's condition."""
    everyone = _scope_literal(sorted({pid for _, _, scope in segments for pid in scope}))
    # Only the people of segments with event conditions have their events read (a trait segment's scope is the
    # people whose traits changed; their histories are not its business).
    readers = _scope_literal(sorted({pid for _, node, scope in segments
                                     if any(isinstance(leaf, Event) for _, leaf in rules.leaves(node))
                                     for pid in scope}))
    measured: dict[str, str] = {}
    aggregates: list[_Sql] = []
    names: set[str] = set()
    since: list[datetime | None] = []
    for _, node, _ in segments:
        for _, leaf in rules.leaves(node):
            if isinstance(leaf, Event) and repr(leaf) not in measured:
                measured[repr(leaf)] = f"v{len(measured)}"
                aggregates.append(_measure_value(leaf.measure, _occurrences(leaf, now, None, tracked=True))
                                  + f" AS {measured[repr(leaf)]}")
                names.add(leaf.name)
                since.append(None if leaf.within is None else now - leaf.within)
    compiler = _Compiler(now=now, segment_ids=segment_ids, consent_sql=consent_sql, scope=everyone, context=context,
                         measured=measured)
    cases = _join([_Sql("WHEN %s THEN ", [segment_id]) + compiler.node(node, "definition")
                   for segment_id, node, _ in segments], " ")
    pairs = _Sql("unnest(%s::bigint[], %s::bigint[]) AS s(segment_id, profile_id)", [
        "{" + ",".join(str(int(sid)) for sid, _, scope in segments for _ in scope) + "}",
        "{" + ",".join(str(int(pid)) for _, _, scope in segments for pid in scope) + "}"])
    # The scopes' people read once by index (joined to the pairs, a stale estimate could scan every profile).
    # Only the columns conditions read: the others (event counts, trait times) would be detoasted for nothing.
    # Each person's open memberships in one array, read once by index when a segment condition looks them up: one
    # probe per person instead of one per condition and person.
    in_segments = any(isinstance(leaf, InSegment) for _, node, _ in segments for _, leaf in rules.leaves(node))
    memberships = (f"ARRAY(SELECT m.segment_id FROM {MEMBERSHIPS} m WHERE m.profile_id = profiles_profile.id "
                   "AND m.exited_at IS NULL)") if in_segments else "'{}'::bigint[]"
    head = _Sql(f"WITH p AS MATERIALIZED (SELECT id, traits, computed, {memberships} AS segments "
                "FROM profiles_profile WHERE id = ANY(%s::bigint[]) AND merged_into_id IS NULL)", [everyone])
    if visitors:
        head = _Sql("WITH p AS MATERIALIZED (SELECT id, '{}'::jsonb AS traits, '{}'::jsonb AS computed, "
                    "'{}'::bigint[] AS segments FROM unnest(%s::bigint[]) AS visitor(id))", [everyone])
    joined = _Sql()
    if aggregates:
        bounded = _Sql()
        if all(at is not None for at in since):
            bounded = _Sql(' AND e."timestamp" >= %s', [min(since)])
        head = (head + ", a AS MATERIALIZED (SELECT e.profile_id, " + _join(aggregates, ", ") + f" FROM {EVENTS} e "
                + _Sql("WHERE e.profile_id = ANY(%s::bigint[]) AND e.type = 'track' AND e.event = ANY(%s::text[])",
                       [readers, sorted(names)]) + bounded + " GROUP BY e.profile_id)")
        joined = _Sql(" LEFT JOIN a ON a.profile_id = p.id")
    sql = (head + " SELECT s.segment_id, p.id FROM " + pairs + " JOIN p ON p.id = s.profile_id" + joined
           + " WHERE CASE s.segment_id " + cases + " ELSE false END")
    return Compiled(sql.text, sql.params)


def _reasons(node, compiler: _Compiler, event_value: Callable[[int, Event], _Sql]) -> _Sql:
    """jsonb_build_array of each condition in document order, with the profile's own value and whether the
    condition holds for it: {"path", "condition", "value", "held"}. `event_value(n, leaf)` is the measure of the
    n-th condition (an event condition) for the profile `p`."""
    items: list[_Sql] = []
    for n, (path, leaf) in enumerate(rules.leaves(node)):
        label = _Sql("'path', %s::text, 'condition', %s::text, ", [path, rules.describe(leaf)])
        if isinstance(leaf, Event):
            value = event_value(n, leaf)
            if leaf.measure.kind in ("count", "sum"):
                value = "coalesce(" + value + ", 0)"
            held = _measure_holds(leaf.measure, value, compiler.now)
            shown = "to_jsonb(" + value + ")"
        elif isinstance(leaf, (Trait, Context)):
            if isinstance(leaf, Trait):
                column = "computed" if leaf.computed else "traits"
                shown = _at(f"p.{column}", leaf.key)
            else:
                value_obj = compiler.context
                for part in leaf.key:
                    value_obj = value_obj.get(part) if isinstance(value_obj, dict) else None
                shown = _Sql("%s::jsonb", [orjson.dumps(value_obj).decode()])
            held = compiler.leaf(leaf, path)
        else:
            held = compiler.leaf(leaf, path)
            shown = "to_jsonb(coalesce(" + held + ", false))"
        items.append("jsonb_build_object(" + label + "'value', " + shown + ", 'held', coalesce(" + held
                     + ", false))")
    return "jsonb_build_array(" + _join(items, ", ") + ")"


def compile_reasons(node, *, now: datetime, segment_ids: dict[str, int], consent_sql: ConsentSql,
                    profile_ids: list[int], context: dict | None = None) -> Compiled:
    """Rows (profile_id, reasons): for each given profile, each condition in document order with the profile's
    own value and whether the condition holds for it:
    [{"path", "condition", "value", "held"}, ...]."""
    scope = _scope_literal(profile_ids)
    compiler = _Compiler(now=now, segment_ids=segment_ids, consent_sql=consent_sql, scope=scope, context=context)
    joins: list[_Sql] = []

    def event_value(n: int, leaf: Event) -> _Sql:
        joins.append(" LEFT JOIN (" + _aggregate(leaf, now, scope) + f") a{n} ON a{n}.profile_id = p.id")
        return _Sql(f"a{n}.v")

    reasons = _reasons(node, compiler, event_value)
    sql = ("SELECT p.id AS profile_id, " + reasons + " AS reasons FROM profiles_profile p" + _join(joins, "")
           + _Sql(" WHERE p.id = ANY(%s::bigint[])", [scope]))
    return Compiled(sql.text, sql.params)


def compile_step(segments: dict[int, object], pairs: list[tuple[int, int, int, bool]], *, now: datetime,
                 segment_ids: dict[str, int], consent_sql: ConsentSql,
                 written: list[tuple[int, datetime]] = ()) -> Compiled:
    """Rows (segment_id, profile_id, holds, reasons) of the memberships the realtime step of a pipeline batch
    changes: for each pair (segment id, profile id, way, by_events), whether the segment (`segments`, by id) now
    holds for the live profile, where that differs from its open membership; `reasons` for those entering (as
    compile_reasons gives them). `way` 1 says the profile can only have entered, -1 only left, 0 either: a member
    who could only enter, or a non-member who could only leave, is not evaluated at all. Neither is a pair that
    only the batch's events (`written`, as (id, timestamp)) can have moved when none of the profile's among them
    is an occurrence an event condition of the segment could count: of its event, its window and its `where`
    (and, for a not_followed_by, whose window to be followed has passed), or of the event, and the `where`, that
    follows.

    Each profile's events are read once, by index, back to the earliest window of the segments it is evaluated
    for (all its history when one has no window), and every event condition of every segment is one FILTERed
    aggregate over them. The pairs are sent once, as arrays."""
    measured: dict[str, str] = {}
    aggregates: list[_Sql] = []
    names: set[str] = set()
    since: dict[int, str | None] = {}
    # Per segment, whether an event row `e` is one its event conditions could count; the names of those events.
    counts: list[_Sql] = []
    counted_names: list[tuple[int, str]] = []
    for segment_id, node in segments.items():
        windows: list[datetime | None] = []
        filters: list[_Sql] = []
        for _, leaf in rules.leaves(node):
            if not isinstance(leaf, Event):
                continue
            windows.append(None if leaf.within is None else now - leaf.within)
            names.add(leaf.name)
            occurrence = _event_filter("e", leaf.name, leaf.where, now, leaf.within, None, tracked=True)
            if leaf.follow and leaf.follow.negated:
                # An occurrence whose window to be followed has not passed is not counted yet.
                occurrence = occurrence + _Sql(' AND e."timestamp" + %s <= %s', [leaf.follow.within, now])
            filters.append(occurrence)
            counted_names.append((segment_id, leaf.name))
            if leaf.follow:
                filters.append(_event_filter("e", leaf.follow.event, leaf.follow.where, now, None, None,
                                             tracked=True))
                counted_names.append((segment_id, leaf.follow.event))
            if repr(leaf) not in measured:
                measured[repr(leaf)] = f"v{len(measured)}"
                aggregates.append(_measure_value(leaf.measure, _occurrences(leaf, now, None, tracked=True))
                                  + f" AS {measured[repr(leaf)]}")
        since[segment_id] = None if not windows else (
            "-infinity" if None in windows else min(windows).isoformat())
        if filters:
            counts.append(_Sql("WHEN %s THEN ", [segment_id]) + "(" + _join(filters, ") OR (") + ")")
    compiler = _Compiler(now=now, segment_ids=segment_ids, consent_sql=consent_sql, scope=None, context=None,
                         measured=measured)
    holds = _join([_Sql("WHEN %s THEN ", [segment_id]) + compiler.node(node, "definition")
                   for segment_id, node in segments.items()], " ")
    reasons = _join([_Sql("WHEN %s THEN ", [segment_id]) + _reasons(
        node, compiler, lambda n, leaf: _Sql(f"a.{measured[repr(leaf)]}")) for segment_id, node in segments.items()],
        " ")
    counted_names = sorted(set(counted_names))
    if not counts or not written:
        # No event condition, or no event: no event counts for any of the segments.
        pairs = [pair for pair in pairs if not pair[3]]
    by_events = any(pair[3] for pair in pairs)
    # The batch's events by their key (each lookup finds its one partition by the timestamp, also in a backfill
    # spanning months; sent as microseconds since the epoch, exact and cheap to write), and the (segment, profile)
    # pairs one of them can count for, each event tried only against the segments that read its name.
    counted = _Sql(
        "WITH written AS MATERIALIZED (SELECT x.profile_id, x.event, x.\"timestamp\", x.payload FROM "
        f"unnest(%s::bigint[], %s::bigint[]) AS k(id, us) CROSS JOIN LATERAL (SELECT * FROM {EVENTS} x "
        "WHERE x.id = k.id AND x.\"timestamp\" = timestamptz 'epoch' + k.us * interval '1 microsecond' "
        "AND x.type = 'track' AND x.profile_id IS NOT NULL) x), "
        "counted AS MATERIALIZED (SELECT DISTINCT c.segment_id, e.profile_id FROM written e JOIN "
        "unnest(%s::bigint[], %s::text[]) AS c(segment_id, event) ON c.event = e.event WHERE CASE c.segment_id ",
        [_scope_literal([key[0] for key in written]), _scope_literal([(key[1] - _EPOCH) // _MICROSECOND
                                                                      for key in written]),
         _scope_literal([segment_id for segment_id, _ in counted_names]), [name for _, name in counted_names]]
    ) + _join(counts, " ") + " ELSE false END), " if by_events else _Sql("WITH ")
    # One index probe per pair for its open membership, whatever the table's statistics say (LIMIT keeps the
    # lateral from being flattened into a join that a stale estimate can turn into sorting every membership).
    head = counted + _Sql(
        "s AS MATERIALIZED (SELECT s.segment_id, s.profile_id, w.since, m.profile_id IS NOT NULL AS member "
        "FROM unnest(%s::bigint[], %s::bigint[], %s::int[], %s::boolean[]) AS s(segment_id, profile_id, way, "
        "by_events) JOIN unnest(%s::bigint[], %s::timestamptz[]) AS w(segment_id, since) "
        f"ON w.segment_id = s.segment_id LEFT JOIN LATERAL (SELECT o.profile_id FROM {MEMBERSHIPS} o "
        "WHERE o.segment_id = s.segment_id AND o.profile_id = s.profile_id AND o.exited_at IS NULL LIMIT 1) m "
        "ON true WHERE (s.way = 0 OR (s.way = 1) <> (m.profile_id IS NOT NULL))"
        + (" AND (NOT s.by_events OR (s.segment_id, s.profile_id) IN (SELECT segment_id, profile_id FROM counted))"
           if by_events else "") + "), ",
        [_scope_literal([pair[0] for pair in pairs]), _scope_literal([pair[1] for pair in pairs]),
         _scope_literal([pair[2] for pair in pairs]), "{" + ",".join(["t" if pair[3] else "f" for pair in pairs]) + "}",
         _scope_literal(list(since)), "{" + ",".join(["NULL" if at is None else at for at in since.values()]) + "}"])
    # Only the columns conditions read (the others would be detoasted for nothing); each person's open memberships
    # in one array, read once by index, when a segment condition looks them up.
    in_segments = any(isinstance(leaf, InSegment) for node in segments.values() for _, leaf in rules.leaves(node))
    memberships = (f"ARRAY(SELECT m.segment_id FROM {MEMBERSHIPS} m WHERE m.profile_id = profiles_profile.id "
                   "AND m.exited_at IS NULL)") if in_segments else "'{}'::bigint[]"
    head = head + _Sql(
        f"p AS MATERIALIZED (SELECT id, traits, computed, {memberships} AS segments FROM profiles_profile "
        "WHERE id = ANY(ARRAY(SELECT DISTINCT profile_id FROM s)) AND merged_into_id IS NULL)")
    joined = ""
    if aggregates:
        # Each person's events by index, back to their own earliest window, aggregated inside the lateral: an
        # aggregate subquery is never flattened into a join (which a stale estimate could turn into scanning a
        # month of events), and rows that arrive grouped by person need no sort to be grouped again.
        head = (head + ", r AS MATERIALIZED (SELECT profile_id, min(since) AS since FROM s WHERE since IS NOT NULL "
                "GROUP BY profile_id), a AS MATERIALIZED (SELECT r.profile_id, e.* FROM r CROSS JOIN LATERAL "
                "(SELECT " + _join(aggregates, ", ")
                + f" FROM {EVENTS} e WHERE e.profile_id = r.profile_id AND "
                + _Sql("e.\"timestamp\" >= r.since AND e.type = 'track' AND e.event = ANY(%s::text[])) e)",
                       [sorted(names)]))
        joined = " LEFT JOIN a ON a.profile_id = p.id"
    sql = (head + ", t AS MATERIALIZED (SELECT s.segment_id, s.profile_id, s.member, p.id IS NOT NULL AND coalesce("
           "CASE s.segment_id " + holds + " END, false) AS holds FROM s LEFT JOIN p ON p.id = s.profile_id"
           + joined + ") SELECT t.segment_id, t.profile_id, t.holds, CASE WHEN t.holds THEN CASE t.segment_id "
           + reasons + " END END AS reasons FROM t LEFT JOIN p ON p.id = t.profile_id" + joined
           + " WHERE t.holds <> t.member")
    return Compiled(sql.text, sql.params)
