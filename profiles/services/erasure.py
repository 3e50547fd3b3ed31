"""Erasing and exporting a subject's rows in this app's tables, for consent's data subject requests.

Consent owns the request workflow and calls these through its erasure registry; only this app writes its tables.
Each erase deletes at most `limit` rows per table per call, by profile, through the tables' profile indexes, so
one call holds row locks of the subject's rows only, briefly.
"""
from __future__ import annotations

from django.db import connection
from django.db.models import Q

from profiles.models import Event, Identifier, MergeRecord, PendingEvent, Profile, TraitChange

BY_PROFILE = "profile_id = ANY(%s::bigint[])"


def _int_array(values) -> str:
    return "{" + ",".join(str(int(v)) for v in values) + "}"


def _delete_limited(table: str, key: tuple[str, ...], where: str, profile_ids: list[int], limit: int) -> int:
    """Deletes at most `limit` rows of the table matching `where` (its %s placeholders all take the profile ids);
    `key` is the table's primary key (events are partitioned by month: their key is (id, timestamp))."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} t USING (SELECT {', '.join(key)} FROM {table} WHERE {where} LIMIT %s) d "
            f"WHERE {' AND '.join(f't.{k} = d.{k}' for k in key)}",
            [_int_array(profile_ids)] * where.count("%s") + [limit])
        return cursor.rowcount


def profile_data_erase(*, profile_ids: list[int], limit: int) -> dict[str, int]:
    """Deletes up to `limit` rows per table of these profiles' events, trait history, identifiers and merge
    records; returns the rows deleted per table. Idempotent: call until it deletes nothing."""
    return {
        "events": _delete_limited(Event._meta.db_table, ("id", "timestamp"), BY_PROFILE, profile_ids, limit),
        "trait_changes": _delete_limited(TraitChange._meta.db_table, ("id",), BY_PROFILE, profile_ids, limit),
        "identifiers": _delete_limited(Identifier._meta.db_table, ("id",), BY_PROFILE, profile_ids, limit),
        "merge_records": _delete_limited(
            MergeRecord._meta.db_table, ("id",),
            "into_profile_id = ANY(%s::bigint[]) OR other_profile_id = ANY(%s::bigint[])", profile_ids, limit),
    }


def profiles_delete(*, profile_ids: list[int]) -> dict[str, int]:
    """Deletes the profiles themselves, last: every row pointing at them is gone by now (the ORM's cascade
    would catch a straggler)."""
    Profile.objects.filter(id__in=profile_ids).update(merged_into=None)
    return {"profiles": Profile.objects.filter(id__in=profile_ids).delete()[1].get("profiles.Profile", 0)}


def profile_data_export(*, profile_ids: list[int]) -> dict:
    """Everything this app holds on these profiles, as JSON-ready values."""
    profiles = list(Profile.objects.filter(id__in=profile_ids).values(
        "id", "created_at", "merged_into_id", "traits", "computed", "first_seen", "last_seen", "event_count"))
    return {
        "profiles": profiles,
        "identifiers": list(Identifier.objects.filter(profile_id__in=profile_ids).values("type", "value",
                                                                                          "first_seen")),
        "trait_history": list(TraitChange.objects.filter(profile_id__in=profile_ids).values(
            "key", "old_value", "new_value", "changed_at")),
        "events": list(Event.objects.filter(profile_id__in=profile_ids).order_by("timestamp", "id").values(
            "id", "type", "event", "timestamp", "received_at", "payload")),
    }


def _by_ids(identifiers: list[tuple[str, str]]) -> Q | None:
    user_ids = {v for t, v in identifiers if t == "user_id"}
    anonymous_ids = {v for t, v in identifiers if t == "anonymous_id"}
    if not user_ids and not anonymous_ids:
        return None
    return Q(user_id__in=user_ids) | Q(anonymous_id__in=anonymous_ids)


def queued_events_discard(*, identifiers: list[tuple[str, str]]) -> int:
    """Deletes the events still waiting in the queue that carry these user or anonymous ids; returns how many.
    (Later ones are dropped by consent's suppression gate, or, when re-creation is allowed, start a new profile.)"""
    match = _by_ids(identifiers)
    return PendingEvent.objects.filter(match).delete()[0] if match is not None else 0


def set_aside_events_discard(*, identifiers: list[tuple[str, str]]) -> int:
    """Deletes the events the pipeline set aside without a profile that carry these user or anonymous ids: an
    erasure by profile misses them. Returns how many."""
    match = _by_ids(identifiers)
    return Event.objects.filter(profile__isnull=True).filter(match).delete()[0] if match is not None else 0
