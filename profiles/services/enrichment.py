"""Computed traits: recency, frequency and monetary value from `Order Completed`, an engagement score, the RFM
quintile scores and group, and the values other apps compute (a model's scores) set through this module."""
from __future__ import annotations

from django.db import connection
from django.utils import timezone

# The RFM keys, removed from people who are no longer customers (their orders were erased, say).
RFM_KEYS = ["rfm_recency", "rfm_frequency", "rfm_monetary", "rfm_score", "rfm_group"]

# An order event's money (alias e): properties.revenue, else properties.total (the e-commerce spec's two names).
ORDER_REVENUE_SQL = """coalesce(
    CASE WHEN jsonb_typeof(e.payload->'properties'->'revenue') = 'number'
         THEN (e.payload->'properties'->>'revenue')::numeric END,
    CASE WHEN jsonb_typeof(e.payload->'properties'->'total') = 'number'
         THEN (e.payload->'properties'->>'total')::numeric END, 0)"""

# The usual names of RFM cells, on recency and frequency (monetary value follows frequency closely), first
# match wins. The cells follow the map most RFM tools share (Putler's, the "RFM segmentation" notebooks).
_RFM_GROUP = """CASE
    WHEN r = 5 AND f >= 4 THEN 'Champions'
    WHEN r >= 3 AND f >= 4 THEN 'Loyal'
    WHEN r >= 4 AND f >= 2 THEN 'Potential loyalists'
    WHEN r = 5 THEN 'New customers'
    WHEN r = 4 THEN 'Promising'
    WHEN r = 3 AND f = 3 THEN 'Need attention'
    WHEN r = 3 THEN 'About to sleep'
    WHEN f = 5 THEN 'Cannot lose them'
    WHEN f >= 3 THEN 'At risk'
    WHEN r = 1 AND f = 1 THEN 'Lost'
    ELSE 'Hibernating' END"""


def profiles_enrich(*, profile_ids: list[int] | None = None) -> int:
    """Recomputes computed traits for the given live profiles (all when None) in set-based SQL.

    recency_days: days since the last event; frequency_orders: count of `Order Completed` events;
    monetary_value: sum of their properties.revenue (or total); engagement_score: 0-100, events in
    the last 30 days weighted by recency (log-scaled so a handful of visits already counts).
    Customers (one order or more) also get rfm_recency, rfm_frequency and rfm_monetary, 1 to 5: the quintile
    among all customers of the last order's date, the orders and the money (ties share the score of their
    lowest place, as percent_rank gives it: when most customers ordered once, they all have frequency 1),
    rfm_score ("545") and rfm_group ("Champions", ...). Other keys (a model's scores) are kept. The quintiles
    are ranks among every customer, so the events of all profiles are read whichever profiles are updated.
    """
    now = timezone.now()
    where = "p.merged_into_id IS NULL" + (" AND p.id = ANY(%(ids)s)" if profile_ids is not None else "")
    sql = f"""
        WITH stats AS (
            SELECT e.profile_id,
                   max(e.timestamp) AS last_event,
                   max(e.timestamp) FILTER (WHERE e.type = 'track' AND e.event = 'Order Completed') AS last_order,
                   count(*) FILTER (WHERE e.type = 'track' AND e.event = 'Order Completed') AS orders,
                   coalesce(sum(CASE WHEN e.type = 'track' AND e.event = 'Order Completed'
                        THEN {ORDER_REVENUE_SQL} END), 0) AS revenue,
                   count(*) FILTER (WHERE e.timestamp > %(now)s - interval '30 days') AS recent
            FROM profiles_event e JOIN profiles_profile p ON p.id = e.profile_id
            WHERE p.merged_into_id IS NULL
            GROUP BY e.profile_id
        ),
        -- Quintiles are ranks among every customer, whichever profiles this call updates.
        rfm AS (
            SELECT profile_id, r, f, m, {_RFM_GROUP} AS grp FROM (
                SELECT profile_id,
                       least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY last_order)))::int AS r,
                       least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY orders)))::int AS f,
                       least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY revenue)))::int AS m
                FROM stats WHERE orders > 0) scored
        )
        UPDATE profiles_profile p SET computed = (p.computed - %(rfm_keys)s::text[]) || jsonb_build_object(
            'recency_days', floor(extract(epoch FROM (%(now)s - s.last_event)) / 86400)::int,
            'frequency_orders', s.orders,
            'monetary_value', round(s.revenue, 2),
            'engagement_score', least(100, round(25 * ln(1 + s.recent))::int),
            'computed_at', to_jsonb(%(now)s::timestamptz))
            || CASE WHEN q.profile_id IS NULL THEN '{{}}'::jsonb ELSE jsonb_build_object(
                'rfm_recency', q.r, 'rfm_frequency', q.f, 'rfm_monetary', q.m,
                'rfm_score', concat(q.r, q.f, q.m), 'rfm_group', q.grp) END
        FROM stats s LEFT JOIN rfm q ON q.profile_id = s.profile_id
        WHERE p.id = s.profile_id AND {where}
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"now": now, "ids": profile_ids, "rfm_keys": RFM_KEYS})
        return cursor.rowcount


def profiles_computed_set(*, key: str, values: dict[int, float], keep_others: bool = False) -> int:
    """Sets the computed trait `key` of these profiles (merged ones are skipped) to their value, in one
    statement; unless `keep_others`, removes it from every other profile, so the trait is exactly this set.
    Returns the profiles set."""
    ids, numbers = list(values), list(values.values())
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE profiles_profile p SET computed = p.computed || jsonb_build_object(%s::text, v.value) "
            "FROM unnest(%s::bigint[], %s::float8[]) AS v(id, value) "
            "WHERE p.id = v.id AND p.merged_into_id IS NULL", [key, ids, numbers])
        written = cursor.rowcount
        if not keep_others:
            cursor.execute("UPDATE profiles_profile SET computed = computed - %s::text "
                           "WHERE computed ? %s AND NOT id = ANY(%s::bigint[])", [key, key, ids])
    return written


def profiles_computed_remove(*, key: str) -> int:
    """Removes the computed trait `key` from every profile (its model was deleted)."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE profiles_profile SET computed = computed - %s::text WHERE computed ? %s", [key, key])
        return cursor.rowcount
