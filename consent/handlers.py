"""Erase and export handlers for the profiles app's tables and for consent's own.

They live here, not in profiles, because profiles sits below consent and may not import its registry.
Each erase deletes at most `limit` rows per table per call, by profile, through the tables' profile indexes.
"""
from __future__ import annotations

from django.db import connection

from consent.models import ConsentEntry, ConsentState, PrivacyExport
from consent.registry import Handler, register
from profiles.models import Event, Identifier, MergeRecord, Profile, TraitChange


def _ids(profile_ids: list[int]) -> str:
    return "{" + ",".join(str(int(i)) for i in profile_ids) + "}"


def _delete_limited(table: str, where: str, profile_ids: list[int], limit: int, key: str = "id") -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} t USING (SELECT {key} FROM {table} WHERE {where} LIMIT %s) d "
            f"WHERE {' AND '.join(f't.{k} = d.{k}' for k in key.split(', '))}",
            [_ids(profile_ids)] * where.count("%s") + [limit])
        return cursor.rowcount


def erase_profile_data(profile_ids: list[int], limit: int) -> dict[str, int]:
    by_profile = "profile_id = ANY(%s::bigint[])"
    counts = {
        # Events are partitioned by month: their key is (id, timestamp).
        "events": _delete_limited("profiles_event", by_profile, profile_ids, limit, key="id, timestamp"),
        "trait_changes": _delete_limited("profiles_traitchange", by_profile, profile_ids, limit),
        "identifiers": _delete_limited("profiles_identifier", by_profile, profile_ids, limit),
        "merge_records": _delete_limited(
            "profiles_mergerecord", "into_profile_id = ANY(%s::bigint[]) OR other_profile_id = ANY(%s::bigint[])",
            profile_ids, limit),
    }
    if not any(counts.values()):
        # Last, in one transaction with their locks: a pipeline batch that attached an event meanwhile has
        # committed (we waited for its lock) and its rows are deleted with the profiles.
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM profiles_profile WHERE id = ANY(%s::bigint[]) FOR UPDATE",
                           [_ids(profile_ids)])
            counts["events"] = _delete_limited("profiles_event", by_profile, profile_ids, 10**9, key="id, timestamp")
            counts["identifiers"] = _delete_limited("profiles_identifier", by_profile, profile_ids, 10**9)
            cursor.execute("UPDATE profiles_profile SET merged_into_id = NULL WHERE id = ANY(%s::bigint[])",
                           [_ids(profile_ids)])
            cursor.execute("DELETE FROM profiles_profile WHERE id = ANY(%s::bigint[])", [_ids(profile_ids)])
            counts["profiles"] = cursor.rowcount
    return counts


def export_profile_data(profile_ids: list[int]) -> dict:
    profiles = list(Profile.objects.filter(id__in=profile_ids).values(
        "id", "created_at", "merged_into_id", "traits", "computed", "first_seen", "last_seen", "event_count"))
    return {
        "profiles": profiles,
        "identifiers": list(Identifier.objects.filter(profile_id__in=profile_ids).values("type", "value", "first_seen")),
        "trait_history": list(TraitChange.objects.filter(profile_id__in=profile_ids).values(
            "key", "old_value", "new_value", "changed_at")),
        "events": list(Event.objects.filter(profile_id__in=profile_ids).order_by("timestamp", "id").values(
            "id", "type", "event", "timestamp", "received_at", "payload")),
    }


def erase_consent_data(profile_ids: list[int], limit: int) -> dict[str, int]:
    """Ledger entries stay, reduced to a record without personal data; the current state goes."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE consent_consententry e SET profile_id = NULL, ip_hash = '', user_agent = '', tc_string = '', "
            "message_id = '' FROM (SELECT id FROM consent_consententry WHERE profile_id = ANY(%s::bigint[]) LIMIT %s) d "
            "WHERE e.id = d.id", [_ids(profile_ids), limit])
        anonymised = cursor.rowcount
    return {"consent_entries_anonymised": anonymised,
            "consent_states": _delete_limited("consent_consentstate", "profile_id = ANY(%s::bigint[])",
                                              profile_ids, limit)}


def export_consent_data(profile_ids: list[int]) -> dict:
    return {"consent_history": list(ConsentEntry.objects.filter(profile_id__in=profile_ids).order_by("recorded_at")
                                    .values("purpose__key", "granted", "source", "regime", "recorded_at",
                                            "policy_version", "reason"))}


def register_handlers() -> None:
    from consent.services.exports import erase_exports

    register(Handler("consent", (ConsentEntry, ConsentState), erase_consent_data, export_consent_data))
    register(Handler("exports", (PrivacyExport,), erase_exports, lambda profile_ids: {}))
    register(Handler("profiles", (Profile, Identifier, Event, TraitChange, MergeRecord), erase_profile_data,
                     export_profile_data, last=True))
