"""Keeping memberships current: a full recompute per segment, the realtime step for the profiles a pipeline
batch touched, memberships following merges.

Every change of membership is one set-based diff against the compiled definition: profiles that now match and
had no open membership enter (a new row, with their reasons), open memberships that no longer match are closed
(exited_at set). Rows are never updated otherwise, so they are the membership's history.
"""
from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from consent.selectors import consent_allowed_sql
from profiles.common.locks import SEGMENT_RECOMPUTE, xact_lock
from segments import rules
from segments.compiler import Compiled, compile_members, compile_reasons, compile_step
from segments.entries import segment_entries_notify
from segments.models import Segment, SegmentMembership, SegmentSize, StaticMember
from segments.services.deliveries import deliveries_enqueue

logger = logging.getLogger(__name__)
# Reasons are computed for this many entering profiles per statement: a first computation of a segment of a
# million people stays a handful of statements, each with a bounded parameter.
REASONS_CHUNK = 50_000

_MEMBERSHIPS = SegmentMembership._meta.db_table


def _consent_sql(purpose: str, alias: str) -> tuple[str, list]:
    return consent_allowed_sql(purpose=purpose, profile_alias=alias)


def _segment_ids() -> dict[str, int]:
    return dict(Segment.objects.values_list("key", "id"))


@dataclass
class Diff:
    entered: list[int] = field(default_factory=list)
    exited: list[int] = field(default_factory=list)


def _static_target(segment_id: int) -> Compiled:
    return Compiled(
        f"SELECT DISTINCT p.id FROM {StaticMember._meta.db_table} s JOIN profiles_identifier i "
        "ON i.type = s.identifier_type AND i.value = s.value JOIN profiles_profile p ON p.id = i.profile_id "
        "AND p.merged_into_id IS NULL WHERE s.segment_id = %s", [segment_id])


def _target(segment: Segment, *, now: datetime, segment_ids: dict[str, int]) -> Compiled:
    if segment.mode == Segment.Mode.STATIC:
        return _static_target(segment.pk)
    return compile_members(rules.parse(segment.definition), now=now, segment_ids=segment_ids,
                           consent_sql=_consent_sql)


def _apply(segment: Segment, target: Compiled, *, now: datetime) -> Diff:
    """One statement: closes open memberships outside the target and opens them for new members."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH target AS MATERIALIZED (SELECT %s::bigint AS segment_id, id FROM ({target.sql}) t), "
            f"current AS MATERIALIZED (SELECT segment_id, profile_id FROM {_MEMBERSHIPS} WHERE segment_id = %s "
            "AND exited_at IS NULL), " + _DIFF,
            [segment.pk, *target.params, segment.pk, now, now])
        rows = cursor.fetchall()
    return _diffs(rows, {segment.pk: segment}).get(segment, Diff())


# The diff as set operations (hashed or sorted, never a nested loop): a membership table that has just grown, or
# whose statistics are stale, cannot lead the planner into re-reading the target once per member. Both sides read
# the statement's one snapshot, so a profile is either entering or leaving, never both.
_DIFF = (
    "leaving AS (SELECT segment_id, profile_id FROM current EXCEPT SELECT segment_id, id FROM target), "
    "entering AS (SELECT segment_id, id FROM target EXCEPT SELECT segment_id, profile_id FROM current), "
    f"closed AS (UPDATE {_MEMBERSHIPS} m SET exited_at = %s FROM leaving l WHERE m.segment_id = l.segment_id "
    "AND m.profile_id = l.profile_id AND m.exited_at IS NULL RETURNING m.segment_id, m.profile_id), "
    f"opened AS (INSERT INTO {_MEMBERSHIPS} (segment_id, profile_id, entered_at, reasons) "
    "SELECT segment_id, id, %s, '[]' FROM entering ON CONFLICT DO NOTHING RETURNING segment_id, profile_id) "
    "SELECT true, segment_id, profile_id FROM opened UNION ALL SELECT false, segment_id, profile_id FROM closed")


def _diffs(rows: list[tuple], segments: dict[int, Segment]) -> dict[Segment, Diff]:
    by_id: defaultdict[int, Diff] = defaultdict(Diff)
    for entered, segment_id, profile_id in rows:
        diff = by_id[segment_id]
        (diff.entered if entered else diff.exited).append(profile_id)
    for diff in by_id.values():
        diff.entered.sort()
        diff.exited.sort()
    return {segments[segment_id]: diff for segment_id, diff in by_id.items()}


def _record_reasons(segment: Segment, entered: list[int], *, now: datetime, segment_ids: dict[str, int]) -> None:
    if not entered:
        return
    if segment.mode == Segment.Mode.STATIC:
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {_MEMBERSHIPS} SET reasons = %s::jsonb WHERE segment_id = %s AND exited_at IS NULL "
                "AND profile_id = ANY(%s::bigint[])",
                [orjson.dumps([{"path": "static", "condition": "on the segment's list of identifiers",
                                "value": True, "held": True}]).decode(), segment.pk, _int_array(entered)])
        return
    node = rules.parse(segment.definition)
    for start in range(0, len(entered), REASONS_CHUNK):
        chunk = entered[start:start + REASONS_CHUNK]
        reasons = compile_reasons(node, now=now, segment_ids=segment_ids, consent_sql=_consent_sql,
                                  profile_ids=chunk)
        with connection.cursor() as cursor:
            # Materialised: computed once, whatever the planner believes of a membership table that has just
            # grown inside this transaction (a nested loop would re-run the event aggregates per member).
            cursor.execute(
                f"WITH r AS MATERIALIZED ({reasons.sql}) UPDATE {_MEMBERSHIPS} m SET reasons = r.reasons FROM r "
                "WHERE m.segment_id = %s AND m.exited_at IS NULL AND m.profile_id = r.profile_id",
                [*reasons.params, segment.pk])


def _after_diff(segment: Segment, diff: Diff, *, now: datetime, segment_ids: dict[str, int]) -> None:
    _record_reasons(segment, diff.entered, now=now, segment_ids=segment_ids)
    if diff.entered or diff.exited:
        deliveries_enqueue(segment_id=segment.pk, entered=diff.entered, exited=diff.exited, occurred_at=now)
    segment_entries_notify(segment_id=segment.pk, profile_ids=diff.entered, occurred_at=now)


def _size(segment_id: int) -> int:
    return SegmentMembership.objects.filter(segment_id=segment_id, exited_at__isnull=True).count()


@transaction.atomic
def segment_recompute(*, segment_id: int, now: datetime | None = None) -> Diff | None:
    """Recomputes one segment whole in one transaction: memberships, reasons of new members, deliveries, the
    size and a point of its history. Returns the diff, or None when the segment is gone. A definition that no
    longer compiles (a segment it named was deleted) marks the segment failed with the reason."""
    now = now or timezone.now()
    xact_lock(SEGMENT_RECOMPUTE, [segment_id])
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        return None
    segment_ids = _segment_ids()
    with connection.cursor() as cursor:
        # Hash joins over a million members want more than the 4 MB default.
        cursor.execute("SET LOCAL work_mem = '64MB'")
    try:
        with transaction.atomic():
            diff = _apply(segment, _target(segment, now=now, segment_ids=segment_ids), now=now)
            _after_diff(segment, diff, now=now, segment_ids=segment_ids)
    except rules.DefinitionError as exc:
        Segment.objects.filter(pk=segment_id).update(status=Segment.Status.FAILED,
                                                     last_error=f"{exc.field}: {exc.message}")
        logger.warning("segment %s cannot be computed: %s", segment_id, exc.message)
        return None
    followers = realtime_follow(segment=segment, diff=diff, now=now)
    # The segment's row (and those of the realtime segments that followed it) locked before counting, in id order
    # like every size change: a pipeline batch that has added members not yet visible to the count then adds
    # them to this size once this commits, instead of having its growth overwritten.
    _lock_segments([segment_id, *followers.growth])
    size = _size(segment_id)
    SegmentSize.objects.create(segment_id=segment_id, at=now, size=size, entered=len(diff.entered),
                               exited=len(diff.exited))
    Segment.objects.filter(pk=segment_id).update(status=Segment.Status.READY, size=size, last_computed_at=now,
                                                 last_error="")
    sizes_shift(growth=followers.growth, now=now)
    return diff


# --- the realtime step of the pipeline -----------------------------------------------------------------------


@dataclass(frozen=True)
class WrittenEvent:
    """A track event a batch wrote: its key in the events table (id, timestamp), its live profile and its name."""

    id: int
    timestamp: datetime
    profile_id: int
    name: str


@dataclass(frozen=True)
class BatchChanges:
    """What one pipeline batch changed, by live profile: everything a realtime segment's answer can depend on,
    except the clock and enrichment (the sweep's work)."""

    # The track events it wrote.
    events: list[WrittenEvent] = field(default_factory=list)
    created: frozenset[int] = frozenset()
    # Each profile whose traits changed value, with the top-level keys that did.
    traits: dict[int, frozenset[str]] = field(default_factory=dict)
    identifiers: frozenset[int] = frozenset()
    consent: frozenset[int] = frozenset()
    # Profiles that absorbed a merge: everything about them may have changed.
    survivors: frozenset[int] = frozenset()


@dataclass(frozen=True)
class _Realtime:
    segment: Segment
    node: object
    reads: rules.Reads
    # Whether the segment sends its moves to an active destination.
    delivers: bool
    # Whether its open memberships answer its definition as of its last evaluation, so that a change which can
    # move a profile only one way, or not at all, can leave the profile where it is. Not so between an edit of the
    # definition and the recompute it queued, nor before the first one, nor after a failed one.
    trusted: bool


def _realtime_segments() -> list[_Realtime]:
    """The realtime segments, each after the segments it names (so it reads their fresh memberships)."""
    segments = {s.key: s for s in Segment.objects.filter(mode=Segment.Mode.REALTIME).annotate(
        delivers=Exists(Segment.destinations.through.objects.filter(segment_id=OuterRef("pk"),
                                                                     destination__active=True))).order_by("id")}
    ordered: list[_Realtime] = []
    placed: set[str] = set()

    def place(key: str, depth: int = 0) -> None:
        if key in placed or key not in segments or depth > len(segments):
            return
        for ref in segments[key].references:
            place(ref, depth + 1)
        placed.add(key)
        segment = segments[key]
        try:
            node = rules.parse(segment.definition)
        except rules.DefinitionError:
            return
        ordered.append(_Realtime(segment, node, rules.reads(node), segment.delivers,
                                 segment.status == Segment.Status.READY))

    for key in segments:
        place(key)
    return ordered


@dataclass
class _Scope:
    """The profiles whose membership of one segment a change can have moved; of those, the ones it can have moved
    one way only (rules.ENTER or rules.LEAVE: a member who could only enter, or a non-member who could only
    leave, is where they were)."""

    profiles: set[int] = field(default_factory=set)
    one_way: dict[int, str] = field(default_factory=dict)
    # The profiles in it through the batch's events alone (so only if one of them counts for the segment).
    by_events: set[int] = field(default_factory=set)


def _scope_of(item: _Realtime, changes: BatchChanges, by_event: dict[str, set[int]],
              moved: dict[str, set[int]]) -> _Scope:
    """The profiles whose membership this batch can have changed: those whose events, traits, identifiers or
    consent the definition reads changed, new profiles (a condition can hold for someone with nothing), merge
    survivors, and profiles that have just entered or left a segment it names. Only events can move a profile
    one way only; anything else can move it either way."""
    reads = item.reads
    either = set(changes.survivors) | changes.created
    if reads.traits:
        either.update(pid for pid, keys in changes.traits.items() if keys & reads.traits)
    if reads.identifiers:
        either |= changes.identifiers
    if reads.consent:
        # A trait change can change the profile's regime, and with it the default of every purpose.
        either |= changes.consent | changes.traits.keys()
    for key in reads.segments:
        either |= moved.get(key, set())
    by_events: dict[int, set[str]] = defaultdict(set)
    for name, moves in reads.events.items():
        for pid in by_event.get(name, ()):
            by_events[pid] |= moves
    if not item.trusted:
        return _Scope(either | by_events.keys())
    one_way = {pid: next(iter(moves)) for pid, moves in by_events.items() if len(moves) == 1 and pid not in either}
    return _Scope(either | by_events.keys(), one_way, by_events.keys() - either)


def segments_after_batch(*, changes: BatchChanges, now: datetime | None = None) -> int:
    """Re-evaluates realtime segments for the profiles a pipeline batch (or an edit in the admin) changed, inside
    its transaction; returns how many memberships changed."""
    if not any((changes.events, changes.created, changes.traits, changes.identifiers, changes.consent,
                changes.survivors)):
        return 0
    realtime = _realtime_segments()
    if not realtime:
        return 0
    now = now or timezone.now()
    by_event: dict[str, set[int]] = defaultdict(set)
    for event in changes.events:
        by_event[event.name].add(event.profile_id)
    step = _evaluate_realtime(realtime, lambda item, moved: _scope_of(item, changes, by_event, moved), now=now,
                              written=[(event.id, event.timestamp) for event in changes.events])
    sizes_shift(growth=step.growth, now=now)
    return step.moved


def realtime_follow(*, segment: Segment, diff: Diff, now: datetime) -> _Step:
    """Realtime segments that name `segment` (directly or through each other) re-evaluated for the profiles that
    have just entered or left it, so a segment of segments does not wait for its sweep. Their sizes are left to
    the caller, which changes them together with its own (segment rows are locked in one order)."""
    changed = set(diff.entered) | set(diff.exited)
    if not changed:
        return _Step()
    realtime = [item for item in _realtime_segments() if item.segment.pk != segment.pk]
    if not any(segment.key in item.reads.segments for item in realtime):
        return _Step()
    moved_in_recompute = {segment.key: changed}

    def scope(item: _Realtime, moved: dict[str, set[int]]) -> _Scope:
        found: set[int] = set()
        for key in item.reads.segments:
            found |= moved.get(key, set()) | moved_in_recompute.get(key, set())
        return _Scope(found)

    return _evaluate_realtime(realtime, scope, now=now)


@dataclass
class _Step:
    """What a realtime evaluation did: memberships changed, and each segment's change of size."""

    moved: int = 0
    growth: dict[int, int] = field(default_factory=dict)


def _evaluate_realtime(realtime: list[_Realtime], scope_of, *, now: datetime,
                       written: list[tuple[int, datetime]] = ()) -> _Step:
    """Evaluates the segments in order, each for its scope (a function of the segment and the profiles that have
    already moved in earlier segments of this step, by key); one statement for all segments that do not name one
    another."""
    segment_ids = _segment_ids()
    moved: dict[str, set[int]] = {}
    growth: dict[int, int] = {}
    restore_jit = None
    for level in _levels(realtime):
        items = []
        for item in level:
            scope = scope_of(item, moved)
            missing = item.reads.segments - set(segment_ids)
            if missing:
                # A segment it names is gone: its own recompute marks it failed; the batch goes on without it.
                logger.warning("realtime segment %s skipped: it names unknown segments %s", item.segment.pk,
                               sorted(missing))
            elif scope.profiles:
                items.append((item, scope))
        if not items:
            continue
        if restore_jit is None:
            restore_jit = _tune_session()
        _evaluate_level(items, moved, growth, now=now, segment_ids=segment_ids, written=written)
    if restore_jit is not None:
        # A failure above aborts the transaction (or its savepoint), which undoes the setting by itself.
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('jit', %s, true)", [restore_jit])
    return _Step(sum(len(profiles) for profiles in moved.values()), growth)


def _tune_session() -> str:
    """For the rest of the transaction: no JIT (the statement's estimated cost is that of reading many segments,
    its real work a few index probes per person, and compiling it to machine code would cost more than running
    it), and work_mem of at least 32 MB (the hashes that join each pair to its person's profile and aggregates,
    and the pairs the batch's events count for, stay in memory, not on disk, for a batch of many people).
    Returns the JIT setting to restore afterwards; work_mem is only ever raised."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('jit'), set_config('jit', 'off', true), set_config('work_mem', CASE WHEN "
            "pg_size_bytes(current_setting('work_mem')) < pg_size_bytes('32MB') THEN '32MB' "
            "ELSE current_setting('work_mem') END, true)")
        return cursor.fetchone()[0]


def _evaluate_level(items: list[tuple[_Realtime, _Scope]], moved: dict[str, set[int]], growth: dict[int, int],
                    *, now: datetime, segment_ids: dict[str, int], written: list[tuple[int, datetime]]) -> None:
    """Segments that do not name one another, each within its scope, in one statement; records what moved."""
    diffs = _apply_scoped(items, now=now, segment_ids=segment_ids, written=written)
    delivers = {item.segment.pk for item, _ in items if item.delivers}
    for segment, diff in diffs.items():
        if segment.pk in delivers:
            deliveries_enqueue(segment_id=segment.pk, entered=diff.entered, exited=diff.exited, occurred_at=now)
        segment_entries_notify(segment_id=segment.pk, profile_ids=diff.entered, occurred_at=now)
        moved[segment.key] = set(diff.entered) | set(diff.exited)
        growth[segment.pk] = len(diff.entered) - len(diff.exited)


def _levels(realtime: list[_Realtime]) -> list[list[_Realtime]]:
    """Groups segments (already in dependency order) so that none reads a segment of its own group or later."""
    level_of: dict[str, int] = {}
    levels: list[list[_Realtime]] = []
    for item in realtime:
        level = 1 + max((level_of[k] for k in item.reads.segments if k in level_of), default=-1)
        level_of[item.segment.key] = level
        if level == len(levels):
            levels.append([])
        levels[level].append(item)
    return levels


_WAYS = {rules.ENTER: 1, rules.LEAVE: -1}


def _apply_scoped(items: list[tuple[_Realtime, _Scope]], *, now: datetime, segment_ids: dict[str, int],
                  written: list[tuple[int, datetime]]) -> dict[Segment, Diff]:
    """The diff of several segments, each within its scope, in one statement: new members enter with their
    reasons, leavers' stays are closed. Returns the segments that changed."""
    pairs = []
    for item, scope in items:
        segment_id, one_way, by_events = item.segment.pk, scope.one_way, scope.by_events
        pairs.extend((segment_id, pid, _WAYS.get(one_way.get(pid), 0), pid in by_events)
                     for pid in sorted(scope.profiles))
    step = compile_step({item.segment.pk: item.node for item, _ in items}, pairs, now=now, segment_ids=segment_ids,
                        consent_sql=_consent_sql, written=written)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH step AS MATERIALIZED ({step.sql}), "
            f"closed AS (UPDATE {_MEMBERSHIPS} m SET exited_at = %s FROM step WHERE NOT step.holds "
            "AND m.segment_id = step.segment_id AND m.profile_id = step.profile_id AND m.exited_at IS NULL "
            "RETURNING m.segment_id, m.profile_id), "
            f"opened AS (INSERT INTO {_MEMBERSHIPS} (segment_id, profile_id, entered_at, reasons) "
            "SELECT segment_id, profile_id, %s, reasons FROM step WHERE step.holds ON CONFLICT DO NOTHING "
            "RETURNING segment_id, profile_id) "
            "SELECT true, segment_id, profile_id FROM opened "
            "UNION ALL SELECT false, segment_id, profile_id FROM closed", [*step.params, now, now])
        rows = cursor.fetchall()
    return _diffs(rows, {item.segment.pk: item.segment for item, _ in items})


def _lock_segments(segment_ids) -> None:
    """Locks segment rows in id order, the one order every size change takes (two transactions that each change
    several sizes then never wait for each other in a circle)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {Segment._meta.db_table} WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE",
                       [_int_array(sorted(set(segment_ids)))])


def sizes_shift(*, growth: dict[int, int], now: datetime | None = None) -> None:
    """Keeps segments' size current from their diffs, in one statement (counting the members of every segment per
    batch would read them all; sweeps and recomputes count them afresh). A segment not yet computed has no size
    to shift: its first recompute counts. With `now`, the segments' memberships are current as of then."""
    growth = {segment_id: n for segment_id, n in growth.items() if n}
    if not growth:
        return
    _lock_segments(growth)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Segment._meta.db_table} s SET size = greatest(0, s.size + g.n), "
            "last_computed_at = coalesce(%s, s.last_computed_at) "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS g(id, n) WHERE s.id = g.id AND s.status = %s",
            [now, _int_array(growth), _int_array(growth.values()), Segment.Status.READY])


def memberships_follow_merges(*, merges: list[tuple[int, int]], now: datetime | None = None) -> int:
    """A merged profile's open memberships move to its survivor (which the realtime step then re-evaluates);
    where the survivor is already a member, the merged profile's stay is closed. One statement each; returns how
    many memberships moved."""
    if not merges:
        return 0
    now = now or timezone.now()
    pairs = orjson.dumps([{"src": src, "dst": dst} for src, dst in merges]).decode()
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_MEMBERSHIPS} m SET exited_at = %s FROM json_to_recordset(%s::json) AS x(src bigint, dst bigint) "
            f"WHERE m.profile_id = x.src AND m.exited_at IS NULL AND EXISTS (SELECT 1 FROM {_MEMBERSHIPS} o "
            "WHERE o.segment_id = m.segment_id AND o.profile_id = x.dst AND o.exited_at IS NULL) "
            "RETURNING m.segment_id", [now, pairs])
        # Two people who were both members are one now.
        closed = Counter(segment_id for segment_id, in cursor.fetchall())
        cursor.execute(
            f"UPDATE {_MEMBERSHIPS} m SET profile_id = x.dst "
            "FROM json_to_recordset(%s::json) AS x(src bigint, dst bigint) "
            "WHERE m.profile_id = x.src AND m.exited_at IS NULL", [pairs])
        followed = cursor.rowcount
    sizes_shift(growth={segment_id: -n for segment_id, n in closed.items()})
    return followed


def _int_array(values) -> str:
    return "{" + ",".join(str(int(v)) for v in values) + "}"
