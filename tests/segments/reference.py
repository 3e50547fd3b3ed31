"""A small pure-Python evaluator of the rule language: the reference the SQL compiler is proven against.

It reads a world held in memory (profiles, their identifiers and events, consent, memberships) and follows the
language's definition line by line, with exact decimal arithmetic as PostgreSQL's numeric.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

from segments import rules
from segments.rules import All, Any, Consent, Context, Event, HasIdentifier, InSegment, Not, Trait

MISSING = object()


@dataclass
class WorldEvent:
    profile_id: int | None
    name: str
    timestamp: datetime
    properties: dict
    type: str = "track"


@dataclass
class World:
    traits: dict[int, dict] = field(default_factory=dict)
    computed: dict[int, dict] = field(default_factory=dict)
    merged: set[int] = field(default_factory=set)
    identifiers: dict[int, set[str]] = field(default_factory=dict)
    events: list[WorldEvent] = field(default_factory=list)
    # purpose -> the profiles it is allowed for (consent's own selector decides, and has its own proof).
    allowed: dict[str, set[int]] = field(default_factory=dict)
    members: dict[str, set[int]] = field(default_factory=dict)


def _get(data, path: tuple[str, ...]):
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return MISSING
        data = data[part]
    return data


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _json_type(v) -> str | None:
    if v is MISSING:
        return None
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if _is_number(v):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


def _dec(v) -> Decimal:
    return Decimal(repr(v)) if isinstance(v, float) else Decimal(v)


def _json_equal(a, b) -> bool:
    ta, tb = _json_type(a), _json_type(b)
    if ta != tb:
        return False
    if ta == "number":
        return _dec(a) == _dec(b)
    return a == b


def instant(text: str) -> datetime | None:
    if not rules.ISO_INSTANT.fullmatch(text):
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def compare(value, c: rules.Compare, now: datetime) -> bool:
    op, target = c.op, c.value
    kind = _json_type(value)
    if op == "exists":
        return kind not in (None, "null")
    if op == "not_exists":
        return kind in (None, "null")
    if op == "eq":
        return _json_equal(value, target)
    if op == "neq":
        return kind == _json_type(target) and not _json_equal(value, target)
    if op == "in":
        return any(_json_equal(value, t) for t in target)
    if op == "not_in":
        return kind in ("string", "number", "boolean") and not any(_json_equal(value, t) for t in target)
    if op == "contains":
        return kind == "string" and target in value
    if op == "starts_with":
        return kind == "string" and value.startswith(target)
    if op in ("older_than", "newer_than"):
        if kind != "string" or (at := instant(value)) is None:
            return False
        return at < now - target if op == "older_than" else at >= now - target
    sample = target[0] if op == "between" else target
    if isinstance(sample, str):
        if kind != "string":
            return False
        v, bounds = value, target
    else:
        if kind != "number":
            return False
        v = _dec(value)
        bounds = (_dec(target[0]), _dec(target[1])) if op == "between" else _dec(target)
    if op == "between":
        return bounds[0] <= v <= bounds[1]
    return {"gt": v > bounds, "gte": v >= bounds, "lt": v < bounds, "lte": v <= bounds}[op]


def _number_compare(value: Decimal | None, c: rules.Compare) -> bool:
    if value is None:
        return False
    if c.op == "between":
        return _dec(c.value[0]) <= value <= _dec(c.value[1])
    t = _dec(c.value)
    return {"eq": value == t, "neq": value != t, "gt": value > t, "gte": value >= t, "lt": value < t,
            "lte": value <= t}[c.op]


def _matches(e: WorldEvent, name: str, where, pid: int, now: datetime) -> bool:
    return (e.profile_id == pid and e.type == "track" and e.name == name
            and all(compare(_get(e.properties, w.property), w.compare, now) for w in where))


def event_value(world: World, leaf: Event, pid: int, now: datetime):
    """The measure's value for one profile (count, sum, avg, first or last timestamp; None when undefined)."""
    occurrences = [e for e in world.events if _matches(e, leaf.name, leaf.where, pid, now)
                   and (leaf.within is None or e.timestamp >= now - leaf.within)]
    if leaf.follow:
        f = leaf.follow

        def followed(e):
            return any(_matches(x, f.event, f.where, pid, now) and e.timestamp < x.timestamp <= e.timestamp + f.within
                       for x in world.events)
        if f.negated:
            occurrences = [e for e in occurrences if e.timestamp + f.within <= now and not followed(e)]
        else:
            occurrences = [e for e in occurrences if followed(e)]
    m = leaf.measure
    if m.kind == "count":
        return Decimal(len(occurrences))
    if m.kind in ("sum", "avg"):
        numbers = [_dec(v) for e in occurrences if _is_number(v := _get(e.properties, m.property))]
        if m.kind == "sum":
            return sum(numbers, Decimal(0))
        return (sum(numbers, Decimal(0)) / len(numbers)) if numbers else None
    if not occurrences:
        return None
    return (min if m.kind == "first" else max)(e.timestamp for e in occurrences)


def leaf_holds(world: World, leaf, pid: int, now: datetime, context: dict | None = None) -> bool:
    if isinstance(leaf, Trait):
        source = world.computed if leaf.computed else world.traits
        return compare(_get(source.get(pid, {}), leaf.key), leaf.compare, now)
    if isinstance(leaf, Context):
        return compare(_get(context or {}, leaf.key), leaf.compare, now)
    if isinstance(leaf, Event):
        value = event_value(world, leaf, pid, now)
        if leaf.measure.kind in ("first", "last"):
            if value is None:
                return False
            d = leaf.measure.compare.value
            return value < now - d if leaf.measure.compare.op == "older_than" else value >= now - d
        return _number_compare(value, leaf.measure.compare)
    if isinstance(leaf, Consent):
        allowed = pid in world.allowed.get(leaf.purpose, set())
        return allowed if leaf.granted else not allowed
    if isinstance(leaf, InSegment):
        return pid in world.members.get(leaf.key, set())
    if isinstance(leaf, HasIdentifier):
        return leaf.type in world.identifiers.get(pid, set())
    raise TypeError(leaf)


def holds(world: World, node, pid: int, now: datetime, context: dict | None = None) -> bool:
    if isinstance(node, All):
        return all(holds(world, c, pid, now, context) for c in node.children)
    if isinstance(node, Any):
        return any(holds(world, c, pid, now, context) for c in node.children)
    if isinstance(node, Not):
        return not holds(world, node.child, pid, now, context)
    return leaf_holds(world, node, pid, now, context)


def members(world: World, node, now: datetime, context: dict | None = None) -> set[int]:
    return {pid for pid in world.traits if pid not in world.merged and holds(world, node, pid, now, context)}
