"""Removes a bench run's data with set-based statements: its events, the profiles they made, its source."""
from __future__ import annotations

from django.db import connection, models, transaction

from profiles.models import Event, MessageKey, PendingEvent, Profile, Source


def profile_relations() -> list:
    """Every foreign key to a profile from another table, those declared without a reverse accessor
    (related_name="+") included: `_meta.related_objects` leaves those out."""
    return [f for f in Profile._meta.get_fields(include_hidden=True)
            if f.auto_created and not f.concrete and (f.one_to_many or f.one_to_one)]


def bench_cleanup(source: Source) -> dict:
    """Deletes the source's events and the profiles they created that hold no other source's events.

    Rows of other tables that point at those profiles follow their on_delete: CASCADE rows are deleted,
    SET_NULL columns cleared. Returns how many events and profiles were deleted.
    """
    event_table, profile_table = Event._meta.db_table, Profile._meta.db_table
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("CREATE TEMP TABLE bench_doomed (id bigint PRIMARY KEY) ON COMMIT DROP")
        # Profiles its events ended on, profiles its identifiers live on, and the tombstones merged into those.
        cur.execute(
            f"""INSERT INTO bench_doomed (id)
            WITH RECURSIVE seeds AS (
                SELECT profile_id AS id FROM {event_table} WHERE source_id = %s AND profile_id IS NOT NULL
                UNION
                SELECT i.profile_id FROM profiles_identifier i JOIN {event_table} e ON e.id = i.source_event_id
                WHERE e.source_id = %s
            ), tree AS (
                SELECT id FROM seeds
                UNION
                SELECT p.id FROM {profile_table} p JOIN tree t ON p.merged_into_id = t.id
            )
            SELECT id FROM tree""",
            [source.pk, source.pk],
        )
        cur.execute(f"DELETE FROM bench_doomed d USING {event_table} e WHERE e.profile_id = d.id AND e.source_id <> %s",
                    [source.pk])
        cur.execute(f"DELETE FROM {event_table} WHERE source_id = %s", [source.pk])
        events = cur.rowcount
        for model in (PendingEvent, MessageKey):
            cur.execute(f"DELETE FROM {model._meta.db_table} WHERE source_id = %s", [source.pk])
        for rel in profile_relations():
            if rel.related_model is Event and rel.field.column == "profile_id":
                continue
            table, column = rel.related_model._meta.db_table, rel.field.column
            if rel.on_delete is models.SET_NULL:
                cur.execute(f"UPDATE {table} SET {column} = NULL WHERE {column} IN (SELECT id FROM bench_doomed)")
            else:
                cur.execute(f"DELETE FROM {table} WHERE {column} IN (SELECT id FROM bench_doomed)")
        # Events of other sources never point at these profiles (filtered above); clear any left for safety.
        cur.execute(f"UPDATE {event_table} SET profile_id = NULL WHERE profile_id IN (SELECT id FROM bench_doomed)")
        cur.execute(f"DELETE FROM {profile_table} WHERE id IN (SELECT id FROM bench_doomed)")
        profiles = cur.rowcount
        Source.objects.filter(pk=source.pk).delete()
    return {"events": events, "profiles": profiles}
