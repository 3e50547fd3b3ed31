"""Keeping memberships current: a full recompute per segment, the realtime step for the profiles a pipeline
batch touched, memberships following merges.

Every change of membership is one set-based diff against the compiled definition: profiles that now match and
had no open membership enter (a new row, with their reasons), open memberships that no longer match are closed
(exited_at set). Rows are never updated otherwise, so they are the membership's history.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from django.db import connection, transaction
from django.utils import timezone

from consent.selectors import consent_allowed_sql
from profiles.common.locks import SEGMENT_RECOMPUTE, xact_lock
from segments import rules
from segments.compiler import Compiled, compile_members, compile_reasons
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


def _static_target(segment_id: int, scope: list[int] | None) -> Compiled:
    sql = (f"SELECT DISTINCT p.id FROM {StaticMember._meta.db_table} s JOIN profiles_identifier i "
           "ON i.type = s.identifier_type AND i.value = s.value JOIN profiles_profile p ON p.id = i.profile_id "
           "AND p.merged_into_id IS NULL WHERE s.segment_id = %s")
    params: list = [segment_id]
    if scope is not None:
        sql += " AND p.id = ANY(%s::bigint[])"
        params.append(_int_array(scope))
    return Compiled(sql, params)


def _target(segment: Segment, *, now: datetime, segment_ids: dict[str, int], scope: list[int] | None) -> Compiled:
    if segment.mode == Segment.Mode.STATIC:
        return _static_target(segment.pk, scope)
    return compile_members(rules.parse(segment.definition), now=now, segment_ids=segment_ids,
                           consent_sql=_consent_sql, scope_ids=scope)


def _apply(segment: Segment, target: Compiled, *, now: datetime, scope: list[int] | None) -> Diff:
    """One statement: closes open memberships outside the target and opens them for new members."""
    scoped, scope_params = ("", []) if scope is None else (" AND m.profile_id = ANY(%s::bigint[])",
                                                           [_int_array(scope)])
    with connection.cursor() as cursor:
        # Anti joins (NOT EXISTS), never NOT IN: PostgreSQL hashes NOT IN only while the set fits in work_mem
        # and otherwise rescans it per row. Both sides read the statement's one snapshot, so a profile is
        # either entering or leaving, never both.
        cursor.execute(
            f"WITH target AS MATERIALIZED ({target.sql}), "
            f"closed AS (UPDATE {_MEMBERSHIPS} m SET exited_at = %s WHERE m.segment_id = %s AND m.exited_at IS NULL"
            f"{scoped} AND NOT EXISTS (SELECT 1 FROM target t WHERE t.id = m.profile_id) RETURNING m.profile_id), "
            f"opened AS (INSERT INTO {_MEMBERSHIPS} (segment_id, profile_id, entered_at, reasons) "
            f"SELECT %s, t.id, %s, '[]' FROM target t WHERE NOT EXISTS (SELECT 1 FROM {_MEMBERSHIPS} m "
            f"WHERE m.segment_id = %s AND m.profile_id = t.id AND m.exited_at IS NULL) "
            "ON CONFLICT DO NOTHING RETURNING profile_id) "
            "SELECT true, profile_id FROM opened UNION ALL SELECT false, profile_id FROM closed",
            [*target.params, now, segment.pk, *scope_params, segment.pk, now, segment.pk])
        rows = cursor.fetchall()
    diff = Diff()
    for entered, profile_id in rows:
        (diff.entered if entered else diff.exited).append(profile_id)
    diff.entered.sort()
    diff.exited.sort()
    return diff


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
            cursor.execute(
                f"WITH r AS ({reasons.sql}) UPDATE {_MEMBERSHIPS} m SET reasons = r.reasons FROM r "
                "WHERE m.segment_id = %s AND m.exited_at IS NULL AND m.profile_id = r.profile_id",
                [*reasons.params, segment.pk])


def _after_diff(segment: Segment, diff: Diff, *, now: datetime, segment_ids: dict[str, int]) -> None:
    _record_reasons(segment, diff.entered, now=now, segment_ids=segment_ids)
    if diff.entered or diff.exited:
        deliveries_enqueue(segment_id=segment.pk, entered=diff.entered, exited=diff.exited, occurred_at=now)


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
            diff = _apply(segment, _target(segment, now=now, segment_ids=segment_ids, scope=None), now=now,
                          scope=None)
            _after_diff(segment, diff, now=now, segment_ids=segment_ids)
    except rules.DefinitionError as exc:
        Segment.objects.filter(pk=segment_id).update(status=Segment.Status.FAILED,
                                                     last_error=f"{exc.field}: {exc.message}")
        logger.warning("segment %s cannot be computed: %s", segment_id, exc.message)
        return None
    size = _size(segment_id)
    SegmentSize.objects.create(segment_id=segment_id, at=now, size=size, entered=len(diff.entered),
                               exited=len(diff.exited))
    Segment.objects.filter(pk=segment_id).update(status=Segment.Status.READY, size=size, last_computed_at=now,
                                                 last_error="")
    return diff


# --- the realtime step of the pipeline -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Realtime:
    segment: Segment
    node: object
    # Track event names the definition reads; a profile without such an event in the batch cannot change
    # membership through them (windows passing are the sweep's work).
    events: frozenset[str]
    # Whether it reads anything besides events (traits, identifiers, consent, other segments, whose realtime
    # memberships this step has just updated for the same profiles): then every touched profile is evaluated.
    reads_profile: bool


def _realtime_segments() -> list[_Realtime]:
    """The realtime segments, each after the segments it names (so it reads their fresh memberships)."""
    segments = {s.key: s for s in Segment.objects.filter(mode=Segment.Mode.REALTIME).order_by("id")}
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
        names = rules.event_names(node)
        ordered.append(_Realtime(segment, node, frozenset(names), rules.reads_profile(node)))

    for key in segments:
        place(key)
    return ordered


def segments_after_batch(*, touched: dict[int, set[str]], survivors: set[int], now: datetime | None = None) -> int:
    """Re-evaluates realtime segments for the profiles a pipeline batch touched, inside its transaction.

    `touched` maps each live profile the batch wrote to the track event names it received; `survivors` are
    profiles that absorbed a merge (always re-evaluated). A segment is evaluated only for the profiles whose
    batch could change its answer, in one statement per segment whatever the number of profiles. Returns how
    many memberships changed.
    """
    if not touched and not survivors:
        return 0
    realtime = _realtime_segments()
    if not realtime:
        return 0
    now = now or timezone.now()
    segment_ids = _segment_ids()
    everyone = sorted(set(touched) | survivors)
    by_event: dict[str, set[int]] = defaultdict(set)
    for profile_id, names in touched.items():
        for name in names:
            by_event[name].add(profile_id)
    changed = 0
    for item in realtime:
        if item.reads_profile:
            scope = everyone
        else:
            scope_set = set(survivors)
            for name in item.events:
                scope_set |= by_event.get(name, set())
            scope = sorted(scope_set)
        if not scope:
            continue
        target = compile_members(item.node, now=now, segment_ids=segment_ids, consent_sql=_consent_sql,
                                 scope_ids=scope)
        diff = _apply(item.segment, target, now=now, scope=scope)
        if diff.entered or diff.exited:
            _after_diff(item.segment, diff, now=now, segment_ids=segment_ids)
            changed += len(diff.entered) + len(diff.exited)
    if changed:
        _touch_sizes([r.segment.pk for r in realtime], now)
    return changed


def _touch_sizes(segment_ids: list[int], now: datetime) -> None:
    """Keeps the realtime segments' size current, in one statement (their history gets a point per sweep)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Segment._meta.db_table} s SET size = c.n, last_computed_at = %s, status = %s FROM "
            f"(SELECT s2.id, (SELECT count(*) FROM {_MEMBERSHIPS} m WHERE m.segment_id = s2.id "
            f"AND m.exited_at IS NULL) AS n FROM {Segment._meta.db_table} s2 WHERE s2.id = ANY(%s::bigint[])) c "
            "WHERE s.id = c.id", [now, Segment.Status.READY, _int_array(segment_ids)])


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
            "WHERE o.segment_id = m.segment_id AND o.profile_id = x.dst AND o.exited_at IS NULL)", [now, pairs])
        cursor.execute(
            f"UPDATE {_MEMBERSHIPS} m SET profile_id = x.dst "
            "FROM json_to_recordset(%s::json) AS x(src bigint, dst bigint) "
            "WHERE m.profile_id = x.src AND m.exited_at IS NULL", [pairs])
        return cursor.rowcount


def _int_array(values) -> str:
    return "{" + ",".join(str(int(v)) for v in values) + "}"
