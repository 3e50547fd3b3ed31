"""The segment rule language: a definition (one JSON node) parsed and checked into frozen nodes.

Pure: no database. Every error names the JSON path of the first bad place ("definition.all[2].op") in words a
marketer can act on. The language is documented in the README ("Segments").
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

MAX_DEPTH = 20
DURATION = re.compile(r"([1-9][0-9]{0,5})([mhdw])")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
SCALAR_OPS = {"eq", "neq", "contains", "starts_with", "in", "not_in", "gt", "gte", "lt", "lte", "between", "exists",
              "not_exists", "older_than", "newer_than"}
COUNT_OPS = {"eq", "neq", "gt", "gte", "lt", "lte", "between"}
DATE_OPS = {"older_than", "newer_than"}
CONSENT_STATES = {"granted", "denied"}
# What a date-valued trait must look like for older_than/newer_than (and segments_try_timestamptz in SQL): a date,
# or a date and time with an optional offset; no offset means UTC.
ISO_INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?"
                         r"(Z|[+-](0[0-9]|1[0-5]):[0-5][0-9])?)?")


class DefinitionError(ValueError):
    def __init__(self, message: str, field: str):
        super().__init__(f"{field}: {message}")
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Compare:
    """An op and its value, checked: `value` is a number, a string, a boolean, a list of those (in/not_in), a
    (low, high) pair (between), a timedelta (older_than/newer_than) or None (exists/not_exists)."""

    op: str
    value: object = None


@dataclass(frozen=True)
class All:
    children: tuple


@dataclass(frozen=True)
class Any:
    children: tuple


@dataclass(frozen=True)
class Not:
    child: object


@dataclass(frozen=True)
class Trait:
    key: tuple[str, ...]
    compare: Compare
    computed: bool = False


@dataclass(frozen=True)
class Where:
    property: tuple[str, ...]
    compare: Compare


@dataclass(frozen=True)
class Follow:
    event: str
    within: timedelta
    where: tuple[Where, ...] = ()
    negated: bool = False


@dataclass(frozen=True)
class Measure:
    """count (property None), sum or avg of a property, or first/last occurrence."""

    kind: str
    compare: Compare
    property: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Event:
    name: str
    where: tuple[Where, ...]
    within: timedelta | None
    measure: Measure
    follow: Follow | None = None


@dataclass(frozen=True)
class Consent:
    purpose: str
    granted: bool


@dataclass(frozen=True)
class InSegment:
    key: str


@dataclass(frozen=True)
class HasIdentifier:
    type: str


@dataclass(frozen=True)
class Context:
    """A value of the request's context (campaigns' targeting), compared like a trait."""

    key: tuple[str, ...]
    compare: Compare


Node = All | Any | Not | Trait | Event | Consent | InSegment | HasIdentifier | Context
DEFAULT_COUNT = Measure("count", Compare("gte", 1))


def parse_duration(text: object, *, path: str) -> timedelta:
    if not isinstance(text, str) or not (match := DURATION.fullmatch(text.strip())):
        raise DefinitionError(f"{_show(text)} is not a duration: write a whole number and a unit m, h, d or w, like "
                              '"30m", "24h", "7d" or "4w"', path)
    return timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


def _show(value: object) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != float(
        "inf")


def _is_scalar(value: object) -> bool:
    return isinstance(value, (str, bool)) or _is_number(value)


def _key_path(value: object, *, path: str, what: str) -> tuple[str, ...]:
    if not isinstance(value, str) or not value.strip():
        raise DefinitionError(f"{what} must be a non-empty name", path)
    parts = tuple(value.split("."))
    if any(not p for p in parts) or len(parts) > 8 or "\x00" in value:
        raise DefinitionError(f"{_show(value)} is not a {what}: names separated by dots, like \"address.country\"",
                              path)
    return parts


def _compare(node: dict, *, path: str, ops: set[str], what: str) -> Compare:
    op = node.get("op")
    if not isinstance(op, str) or op not in ops:
        if "op" not in node:
            raise DefinitionError(f"{what} needs an operator (op): one of {', '.join(sorted(ops))}", path)
        raise DefinitionError(f"unknown operator {_show(op)}", f"{path}.op")
    at = f"{path}.value"
    if op in ("exists", "not_exists"):
        if "value" in node:
            raise DefinitionError(f"{op} takes no value", at)
        return Compare(op)
    if "value" not in node:
        raise DefinitionError(f"{op} needs a value", path)
    value = node["value"]
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise DefinitionError(f"{op} needs a non-empty list of values", at)
        for i, item in enumerate(value):
            if not _is_scalar(item):
                raise DefinitionError("each value must be a string, a number or true/false", f"{at}[{i}]")
        return Compare(op, tuple(value))
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise DefinitionError("between needs [low, high]", at)
        low, high = value
        if not ((_is_number(low) and _is_number(high)) or (isinstance(low, str) and isinstance(high, str))):
            raise DefinitionError("between needs two numbers or two strings", at)
        return Compare(op, (low, high))
    if op in DATE_OPS:
        return Compare(op, parse_duration(value, path=at))
    if op in ("contains", "starts_with"):
        if not isinstance(value, str):
            raise DefinitionError(f"{op} needs a string", at)
        return Compare(op, value)
    if op in ("gt", "gte", "lt", "lte"):
        if not (_is_number(value) or isinstance(value, str)):
            raise DefinitionError(f"{op} needs a number or a string", at)
        return Compare(op, value)
    if not _is_scalar(value):
        raise DefinitionError(f"{op} needs a string, a number or true/false", at)
    return Compare(op, value)


def _only(node: dict, allowed: set[str], *, path: str, what: str) -> None:
    for key in node:
        if key not in allowed:
            raise DefinitionError(f"{what} has no field {_show(key)} (it has {', '.join(sorted(allowed))})",
                                  f"{path}.{key}")


def _wheres(value: object, *, path: str) -> tuple[Where, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise DefinitionError("where must be a list of property conditions", path)
    out = []
    for i, item in enumerate(value):
        at = f"{path}[{i}]"
        if not isinstance(item, dict):
            raise DefinitionError('a property condition is an object: {"property": ..., "op": ..., "value": ...}', at)
        _only(item, {"property", "op", "value"}, path=at, what="a property condition")
        out.append(Where(_key_path(item.get("property"), path=f"{at}.property", what="property name"),
                         _compare(item, path=at, ops=SCALAR_OPS, what="a property condition")))
    return tuple(out)


def _event_name(value: object, *, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DefinitionError("an event condition needs the event's name", path)
    return value.strip()[:200]


def _event(node: dict, *, path: str) -> Event:
    allowed = {"event", "where", "within", "count", "sum", "avg", "first", "last", "followed_by", "not_followed_by"}
    _only(node, allowed, path=path, what="an event condition")
    name = _event_name(node["event"], path=f"{path}.event")
    where = _wheres(node.get("where"), path=f"{path}.where")
    within = parse_duration(node["within"], path=f"{path}.within") if node.get("within") is not None else None
    measures = [k for k in ("count", "sum", "avg", "first", "last") if k in node]
    if len(measures) > 1:
        raise DefinitionError(f"use one of count, sum, avg, first and last, not {' and '.join(measures)}",
                              f"{path}.{measures[1]}")
    measure = DEFAULT_COUNT
    if measures:
        kind = measures[0]
        at = f"{path}.{kind}"
        body = node[kind]
        if not isinstance(body, dict):
            raise DefinitionError(f"{kind} is an object with op and value", at)
        if kind == "count":
            _only(body, {"op", "value"}, path=at, what="count")
            compare = _compare(body, path=at, ops=COUNT_OPS, what="count")
            values = compare.value if compare.op == "between" else (compare.value,)
            if any(not _is_number(v) for v in values):
                raise DefinitionError("a count compares with numbers", f"{at}.value")
            measure = Measure("count", compare)
        elif kind in ("sum", "avg"):
            _only(body, {"property", "op", "value"}, path=at, what=kind)
            prop = _key_path(body.get("property"), path=f"{at}.property", what="property name")
            compare = _compare(body, path=at, ops=COUNT_OPS, what=kind)
            values = compare.value if compare.op == "between" else (compare.value,)
            if any(not _is_number(v) for v in values):
                raise DefinitionError(f"a {kind} compares with numbers", f"{at}.value")
            measure = Measure(kind, compare, prop)
        else:
            _only(body, {"op", "value"}, path=at, what=kind)
            measure = Measure(kind, _compare(body, path=at, ops=DATE_OPS, what=kind))
    follows = [k for k in ("followed_by", "not_followed_by") if k in node]
    if len(follows) > 1:
        raise DefinitionError("use followed_by or not_followed_by, not both", f"{path}.not_followed_by")
    follow = None
    if follows:
        at = f"{path}.{follows[0]}"
        body = node[follows[0]]
        if not isinstance(body, dict):
            raise DefinitionError(f'{follows[0]} is an object: {{"event": ..., "within": "2h"}}', at)
        _only(body, {"event", "within", "where"}, path=at, what=follows[0])
        if "within" not in body:
            raise DefinitionError(f"{follows[0]} needs a window (within)", at)
        follow = Follow(_event_name(body.get("event"), path=f"{at}.event"),
                        parse_duration(body["within"], path=f"{at}.within"),
                        _wheres(body.get("where"), path=f"{at}.where"), follows[0] == "not_followed_by")
    return Event(name, where, within, measure, follow)


KINDS = ("all", "any", "not", "trait", "computed", "event", "consent", "segment", "identifier", "context")


def parse(definition: object, *, path: str = "definition", context_allowed: bool = False, _depth: int = 0) -> Node:
    """The checked node of a definition; raises DefinitionError at the first bad place."""
    if _depth > MAX_DEPTH:
        raise DefinitionError(f"conditions are nested more than {MAX_DEPTH} deep", path)
    if not isinstance(definition, dict) or not definition:
        raise DefinitionError("a condition is a JSON object such as {\"trait\": \"plan\", \"op\": \"eq\", "
                              "\"value\": \"pro\"}", path)
    kinds = [k for k in KINDS if k in definition]
    if not kinds:
        raise DefinitionError(f"unknown condition: it needs one of {', '.join(KINDS[:-1])}",
                              f"{path}.{next(iter(definition))}")
    if len(kinds) > 1:
        raise DefinitionError(f"a condition is one of {', '.join(KINDS[:-1])}; this one has both {kinds[0]} and "
                              f"{kinds[1]}", f"{path}.{kinds[1]}")
    kind = kinds[0]
    body = definition[kind]
    if kind in ("all", "any"):
        _only(definition, {kind}, path=path, what=f"an {kind} group")
        if not isinstance(body, list) or not body:
            raise DefinitionError(f"{kind} needs a non-empty list of conditions", f"{path}.{kind}")
        children = tuple(parse(child, path=f"{path}.{kind}[{i}]", context_allowed=context_allowed,
                               _depth=_depth + 1) for i, child in enumerate(body))
        return All(children) if kind == "all" else Any(children)
    if kind == "not":
        _only(definition, {"not"}, path=path, what="a not")
        return Not(parse(body, path=f"{path}.not", context_allowed=context_allowed, _depth=_depth + 1))
    if kind in ("trait", "computed"):
        _only(definition, {kind, "op", "value"}, path=path, what=f"a {kind} condition")
        key = _key_path(body, path=f"{path}.{kind}", what=f"{kind} name")
        return Trait(key, _compare(definition, path=path, ops=SCALAR_OPS, what=f"a {kind} condition"),
                     computed=kind == "computed")
    if kind == "context":
        if not context_allowed:
            raise DefinitionError("context conditions belong to a campaign's targeting, not a segment",
                                  f"{path}.context")
        _only(definition, {"context", "op", "value"}, path=path, what="a context condition")
        key = _key_path(body, path=f"{path}.context", what="context name")
        return Context(key, _compare(definition, path=path, ops=SCALAR_OPS, what="a context condition"))
    if kind == "event":
        return _event(definition, path=path)
    if kind == "consent":
        _only(definition, {"consent", "is"}, path=path, what="a consent condition")
        if not isinstance(body, str) or not body.strip():
            raise DefinitionError("consent needs a purpose's key, like \"marketing_email\"", f"{path}.consent")
        state = definition.get("is")
        if state not in CONSENT_STATES:
            raise DefinitionError('is must be "granted" or "denied"', f"{path}.is")
        return Consent(body.strip(), state == "granted")
    if kind == "segment":
        _only(definition, {"segment"}, path=path, what="a segment condition")
        if not isinstance(body, str) or not body.strip():
            raise DefinitionError("segment needs another segment's key", f"{path}.segment")
        return InSegment(body.strip())
    _only(definition, {"identifier"}, path=path, what="an identifier condition")
    if not isinstance(body, str) or not body.strip():
        raise DefinitionError('identifier needs a type, like "email"', f"{path}.identifier")
    return HasIdentifier(body.strip())


def leaves(node: Node, path: str = "definition") -> list[tuple[str, Node]]:
    """Every condition that is not a group, with its JSON path, in document order."""
    if isinstance(node, (All, Any)):
        kind = "all" if isinstance(node, All) else "any"
        return [leaf for i, child in enumerate(node.children) for leaf in leaves(child, f"{path}.{kind}[{i}]")]
    if isinstance(node, Not):
        return leaves(node.child, f"{path}.not")
    return [(path, node)]


def references(node: Node) -> set[str]:
    return {leaf.key for _, leaf in leaves(node) if isinstance(leaf, InSegment)}


def purposes(node: Node) -> set[str]:
    return {leaf.purpose for _, leaf in leaves(node) if isinstance(leaf, Consent)}


# The ways a written event can move a definition's answer: a profile can enter (false to true) or leave.
ENTER, LEAVE = "enter", "leave"
EITHER = frozenset({ENTER, LEAVE})


@dataclass(frozen=True)
class Reads:
    """What a definition's answer depends on, so the realtime step evaluates it only where that changed."""

    # Each event name it reads, with the ways a newly written occurrence of it can move the answer (event_moves).
    events: dict[str, frozenset[str]]
    # The top-level keys of the traits it reads.
    traits: frozenset[str]
    computed: bool
    identifiers: bool
    consent: bool
    segments: frozenset[str]
    # Whether the answer can change while nothing is written: a window moving with now, a date compared with
    # now, a not_followed_by whose window has yet to pass. Only the sweep notices those.
    clock: bool


def _event_reads_clock(leaf: Event) -> bool:
    wheres = leaf.where + (leaf.follow.where if leaf.follow else ())
    return (leaf.within is not None or leaf.measure.compare.op in DATE_OPS
            or (leaf.follow is not None and leaf.follow.negated)
            or any(w.compare.op in DATE_OPS for w in wheres))


def _measure_moves(measure: Measure, *, adding: bool) -> frozenset[str]:
    """How one more qualifying occurrence (or, not `adding`, one fewer) can move an event condition, whatever its
    time, properties or window: a count only grows, the first occurrence only gets older, the last only newer.
    A sum or an average can go either way (a property can be negative), and so can a condition that an
    occurrence can both make true and false (a count equal to 2, a first occurrence newer than a week)."""
    op, kind = measure.compare.op, measure.kind
    if kind == "count" and op in ("gt", "gte", "lt", "lte"):
        grows = op in ("gt", "gte")
    elif (kind, op) in (("first", "older_than"), ("last", "newer_than")):
        grows = True
    else:
        return EITHER
    return frozenset({ENTER if grows == adding else LEAVE})


def event_moves(node: Node) -> dict[str, frozenset[str]]:
    """For each event name the definition reads, the ways a newly written occurrence of it can move the answer.
    An occurrence of an event condition's own event can only add a qualifying occurrence; one of its followed_by
    event can only make more of its occurrences followed (add them), one of its not_followed_by event fewer
    (remove them). Under `not` the moves swap; `all` and `any` keep them (so does SQL's three-valued logic,
    where a condition that held stays held or NULL)."""
    moves: dict[str, set[str]] = {}

    def add(name: str, found: frozenset[str], positive: bool) -> None:
        if not positive:
            found = frozenset({LEAVE if move == ENTER else ENTER for move in found})
        moves.setdefault(name, set()).update(found)

    def walk(node: Node, positive: bool) -> None:
        if isinstance(node, (All, Any)):
            for child in node.children:
                walk(child, positive)
        elif isinstance(node, Not):
            walk(node.child, not positive)
        elif isinstance(node, Event):
            add(node.name, _measure_moves(node.measure, adding=True), positive)
            if node.follow:
                add(node.follow.event, _measure_moves(node.measure, adding=not node.follow.negated), positive)

    walk(node, True)
    return {name: frozenset(found) for name, found in moves.items()}


def reads(node: Node) -> Reads:
    found = [leaf for _, leaf in leaves(node)]
    events = [leaf for leaf in found if isinstance(leaf, Event)]
    traits = [leaf for leaf in found if isinstance(leaf, Trait)]
    return Reads(
        events=event_moves(node),
        traits=frozenset(t.key[0] for t in traits if not t.computed),
        computed=any(t.computed for t in traits),
        identifiers=any(isinstance(leaf, HasIdentifier) for leaf in found),
        consent=any(isinstance(leaf, Consent) for leaf in found),
        segments=frozenset(references(node)),
        clock=any(_event_reads_clock(e) for e in events)
        or any(t.compare.op in DATE_OPS for t in traits))


def _duration_text(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


_OP_WORDS = {"eq": "=", "neq": "≠", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "contains": "contains",
             "starts_with": "starts with", "in": "in", "not_in": "not in", "between": "between",
             "older_than": "older than", "newer_than": "newer than"}


def _compare_text(compare: Compare) -> str:
    if compare.op in ("exists", "not_exists"):
        return "is set" if compare.op == "exists" else "is not set"
    value = compare.value
    if isinstance(value, timedelta):
        shown = _duration_text(value)
    elif compare.op == "between":
        shown = f"{_show(value[0])} and {_show(value[1])}"
    elif isinstance(value, tuple):
        shown = "[" + ", ".join(_show(v) for v in value) + "]"
    else:
        shown = _show(value)
    return f"{_OP_WORDS[compare.op]} {shown}"


def describe(node: Node) -> str:
    """One line of words for a condition: '"Product Viewed" count in 24h >= 3'."""
    if isinstance(node, Trait):
        return f"{'computed ' if node.computed else ''}{'.'.join(node.key)} {_compare_text(node.compare)}"
    if isinstance(node, Context):
        return f"context {'.'.join(node.key)} {_compare_text(node.compare)}"
    if isinstance(node, Consent):
        return f"consent to {node.purpose} {'granted' if node.granted else 'denied'}"
    if isinstance(node, InSegment):
        return f'in segment "{node.key}"'
    if isinstance(node, HasIdentifier):
        return f"has an identifier of type {node.type}"
    if isinstance(node, Event):
        text = f'"{node.name}"'
        if node.where:
            text += " where " + " and ".join(f"{'.'.join(w.property)} {_compare_text(w.compare)}"
                                             for w in node.where)
        if node.follow:
            text += (f" {'not ' if node.follow.negated else ''}followed by \"{node.follow.event}\" within "
                     f"{_duration_text(node.follow.within)}")
        window = f" in {_duration_text(node.within)}" if node.within else ""
        measure = node.measure
        if measure.kind == "count":
            return f"{text} count{window} {_compare_text(measure.compare)}"
        if measure.kind in ("sum", "avg"):
            return f"{text} {measure.kind} of {'.'.join(measure.property)}{window} {_compare_text(measure.compare)}"
        return f"{text} {measure.kind} time{window} {_compare_text(measure.compare)}"
    if isinstance(node, Not):
        return "not (" + describe(node.child) + ")"
    kind = "all" if isinstance(node, All) else "any"
    return f"{kind} of {len(node.children)} conditions"
