"""Conversions: a goal event that arrives through the pipeline is attributed to the person's latest exposure to
the campaign within the goal's window, at most once per exposure."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson
from django.db import connection
from django.utils import timezone

from campaigns import rules
from campaigns.models import Campaign, Conversion, Exposure
from profiles.models import Event
from profiles.common.locks import CONVERSION_ATTRIBUTION, xact_lock
from segments.compiler import event_condition


@dataclass(frozen=True)
class GoalEvent:
    """A track event of the batch, with the person it was resolved to."""

    event_id: int
    profile_id: int
    name: str
    timestamp: datetime
    payload: dict


def conversions_batch_begin() -> None:
    """The pipeline calls this first in each batch's transaction: a shared lock that the exposure recorder takes
    exclusively while it writes exposures and attributes to them. Taken before the batch locks any row, so the
    recorder (which needs those rows' keys for its foreign keys) never waits on a batch that waits on it."""
    xact_lock(CONVERSION_ATTRIBUTION, shared=True)


def conversions_after_batch(*, events: list[GoalEvent]) -> int:
    """Attributes the batch's goal events, in one statement for all campaigns; idempotent (an exposure converts
    once, so a batch processed again adds nothing). Returns how many conversions it recorded.

    Exposures still queued are not seen here: the pipeline runs inside this batch's transaction, where recording
    (which trims the queue in Redis) cannot be undone with a rollback. The recorder attributes the goal events
    that arrived before their exposure was written (`conversions_for_recorded`); the lock both take (see
    conversions_batch_begin) keeps a goal event and an exposure committed at the same moment from each missing the
    other."""
    goals = _goals()
    names = {leaf.name for _, leaf in goals}
    candidates = [e for e in events if e.name in names]
    if not candidates:
        return 0
    now = timezone.now()
    matches, params = [], []
    for campaign_id, leaf in goals:
        condition = event_condition(leaf, "x", now)
        matches.append(f"SELECT %s::bigint AS campaign_id, %s::interval AS within, x.* FROM batch x "
                       f"WHERE {condition.sql}")
        params += [campaign_id, leaf.within, *condition.params]
    rows = orjson.dumps([{"id": e.event_id, "type": "track", "event": e.name, "profile_id": e.profile_id,
                          "payload": e.payload, "timestamp": e.timestamp.isoformat(),
                          "subjects": subjects_sent(e.payload)} for e in candidates]).decode()
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH batch AS (SELECT * FROM jsonb_to_recordset(%s::jsonb) AS b(id bigint, type text, event text, "
            "profile_id bigint, payload jsonb, \"timestamp\" timestamptz, subjects text[])), "
            f"goal AS ({' UNION ALL '.join(matches)}) "
            f"INSERT INTO {Conversion._meta.db_table} (exposure_id, event_id, converted_at) "
            "SELECT DISTINCT ON (latest.id) latest.id, g.id, g.\"timestamp\" FROM goal g CROSS JOIN LATERAL ("
            f"SELECT x.id FROM {Exposure._meta.db_table} x WHERE x.campaign_id = g.campaign_id "
            "AND (x.profile_id = g.profile_id OR x.subject = ANY(g.subjects)) AND x.shown_at <= g.\"timestamp\" "
            "AND x.shown_at >= g.\"timestamp\" - g.within "
            f"AND NOT EXISTS (SELECT 1 FROM {Conversion._meta.db_table} c WHERE c.exposure_id = x.id) "
            "ORDER BY x.shown_at DESC LIMIT 1) latest ORDER BY latest.id, g.\"timestamp\" "
            "ON CONFLICT (exposure_id) DO NOTHING",
            [rows, *params])
        return cursor.rowcount


def _goals(campaign_ids: list[int] | None = None) -> list[tuple[int, object]]:
    found = []
    campaigns = Campaign.objects.exclude(goal=None).exclude(status=Campaign.Status.DRAFT)
    if campaign_ids is not None:
        campaigns = campaigns.filter(pk__in=campaign_ids)
    for campaign_id, goal in campaigns.values_list("id", "goal"):
        try:
            found.append((campaign_id, rules.parse_goal(goal)))
        except rules.DefinitionError:
            continue
    return found


def conversions_for_recorded(*, decision_ids: list[str], campaign_ids: list[int]) -> int:
    """Attributes to exposures just recorded the goal events the pipeline processed while they waited in the queue:
    for each, the first goal event of the person after it and within the goal's window that no exposure of the
    campaign has converted with yet. One statement for all campaigns; idempotent. Returns how many it recorded."""
    goals = _goals(sorted(set(campaign_ids)))
    if not goals or not decision_ids:
        return 0
    now = timezone.now()
    parts, params = [], []
    for campaign_id, leaf in goals:
        condition = event_condition(leaf, "e", now)
        parts.append(
            "SELECT f.id AS exposure_id, ev.id AS event_id, ev.\"timestamp\" FROM fresh f CROSS JOIN LATERAL ("
            f"SELECT e.id, e.\"timestamp\" FROM {Event._meta.db_table} e WHERE e.profile_id = f.person "
            "AND e.\"timestamp\" >= f.shown_at AND e.\"timestamp\" <= f.shown_at + %s "
            f"AND {condition.sql} AND NOT EXISTS (SELECT 1 FROM {Conversion._meta.db_table} c "
            f"JOIN {Exposure._meta.db_table} o ON o.id = c.exposure_id WHERE c.event_id = e.id "
            "AND o.campaign_id = f.campaign_id) ORDER BY e.\"timestamp\", e.id LIMIT 1) ev WHERE f.campaign_id = %s")
        params += [leaf.within, *condition.params, campaign_id]
    with connection.cursor() as cursor:
        cursor.execute(
            # A first visit's exposure was given the profile holding its id, if any, as it was written.
            "WITH fresh AS MATERIALIZED (SELECT x.id, x.campaign_id, x.shown_at, x.profile_id AS person "
            f"FROM {Exposure._meta.db_table} x WHERE x.decision_id = ANY(%s::uuid[]) AND x.campaign_id IS NOT NULL "
            f"AND NOT EXISTS (SELECT 1 FROM {Conversion._meta.db_table} c WHERE c.exposure_id = x.id)) "
            f"INSERT INTO {Conversion._meta.db_table} (exposure_id, event_id, converted_at) "
            f"SELECT exposure_id, event_id, \"timestamp\" FROM ({' UNION ALL '.join(parts)}) found "
            "ON CONFLICT (exposure_id) DO NOTHING",
            ["{" + ",".join(decision_ids) + "}", *params])
        return cursor.rowcount


def subjects_sent(payload: dict) -> list[str]:
    """The ids a decision request may have sent for this person, as exposures keep them."""
    found = []
    for key, kind in (("userId", "user_id"), ("anonymousId", "anonymous_id")):
        value = payload.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
            found.append(f"{kind}:{value}")
    return found
