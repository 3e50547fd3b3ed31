"""Computed traits: recency, frequency and monetary value from `Order Completed`, and an engagement score."""
from django.db import connection
from django.utils import timezone


def profiles_enrich(*, profile_ids: list[int] | None = None) -> int:
    """Recomputes computed traits for the given live profiles (all when None) in set-based SQL.

    recency_days: days since the last event; frequency_orders: count of `Order Completed` events;
    monetary_value: sum of their properties.revenue (or total); engagement_score: 0-100, events in
    the last 30 days weighted by recency (log-scaled so a handful of visits already counts).
    """
    now = timezone.now()
    where = "p.merged_into_id IS NULL" + (" AND p.id = ANY(%(ids)s)" if profile_ids is not None else "")
    sql = f"""
        WITH stats AS (
            SELECT e.profile_id,
                   max(e.timestamp) AS last_event,
                   count(*) FILTER (WHERE e.type = 'track' AND e.event = 'Order Completed') AS orders,
                   coalesce(sum(CASE WHEN e.type = 'track' AND e.event = 'Order Completed'
                        THEN coalesce(
                            CASE WHEN jsonb_typeof(e.payload->'properties'->'revenue') = 'number'
                                 THEN (e.payload->'properties'->>'revenue')::numeric END,
                            CASE WHEN jsonb_typeof(e.payload->'properties'->'total') = 'number'
                                 THEN (e.payload->'properties'->>'total')::numeric END, 0) END), 0) AS revenue,
                   count(*) FILTER (WHERE e.timestamp > %(now)s - interval '30 days') AS recent
            FROM profiles_event e JOIN profiles_profile p ON p.id = e.profile_id
            WHERE {where}
            GROUP BY e.profile_id
        )
        UPDATE profiles_profile p SET computed = jsonb_build_object(
            'recency_days', floor(extract(epoch FROM (%(now)s - s.last_event)) / 86400)::int,
            'frequency_orders', s.orders,
            'monetary_value', round(s.revenue, 2),
            'engagement_score', least(100, round(25 * ln(1 + s.recent))::int),
            'computed_at', to_jsonb(%(now)s::timestamptz))
        FROM stats s WHERE p.id = s.profile_id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"now": now, "ids": profile_ids})
        return cursor.rowcount
