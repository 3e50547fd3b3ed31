"""Erase and export handlers for the profiles app's tables and for consent's own.

They live here, not in profiles, because profiles sits below consent and may not import its registry.
Each erase deletes at most `limit` rows per table per call, by profile, through the tables' profile indexes.
"""
from __future__ import annotations

from django.db import connection
from django.db.models import Q

from consent.models import ConsentEntry, ConsentState, PrivacyExport
from consent.registry import Handler, register
from profiles.models import Event, Identifier, MergeRecord, Profile, TraitChange


def _ids(profile_ids: list[int]) -> str:
    return "{" + ",".join(str(int(i)) for i in profile_ids) + "}"


def _delete_limited(model, where: str, profile_ids: list[int], limit: int, q: Q) -> int:
    """Deletes at most `limit` rows of the model matching the profiles: raw SQL on PostgreSQL (`where`, keyed
    by the table's primary key columns), the ORM (`q`) in the embedded SQLite mode."""
    if connection.vendor != "postgresql":
        ids = list(model.objects.filter(q).values_list("pk", flat=True)[:limit])
        return model.objects.filter(pk__in=ids).delete()[0] if ids else 0
    table = model._meta.db_table
    # Events are partitioned by month: their key is (id, timestamp).
    key = "id, timestamp" if model is Event else "id"
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} t USING (SELECT {key} FROM {table} WHERE {where} LIMIT %s) d "
            f"WHERE {' AND '.join(f't.{k} = d.{k}' for k in key.split(', '))}",
            [_ids(profile_ids)] * where.count("%s") + [limit])
        return cursor.rowcount


BY_PROFILE = "profile_id = ANY(%s::bigint[])"


def erase_profile_data(profile_ids: list[int], limit: int) -> dict[str, int]:
    mine = Q(profile_id__in=profile_ids)
    counts = {
        "events": _delete_limited(Event, BY_PROFILE, profile_ids, limit, mine),
        "trait_changes": _delete_limited(TraitChange, BY_PROFILE, profile_ids, limit, mine),
        "identifiers": _delete_limited(Identifier, BY_PROFILE, profile_ids, limit, mine),
        "merge_records": _delete_limited(
            MergeRecord, "into_profile_id = ANY(%s::bigint[]) OR other_profile_id = ANY(%s::bigint[])",
            profile_ids, limit, Q(into_profile_id__in=profile_ids) | Q(other_profile_id__in=profile_ids)),
    }
    return counts


def finish_profiles(profile_ids: list[int]) -> dict[str, int]:
    """Deletes the profiles themselves; every row pointing at them is gone by now (the ORM's cascade would
    catch a straggler)."""
    Profile.objects.filter(id__in=profile_ids).update(merged_into=None)
    return {"profiles": Profile.objects.filter(id__in=profile_ids).delete()[1].get("profiles.Profile", 0)}


def export_profile_data(profile_ids: list[int]) -> dict:
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


def erase_consent_data(profile_ids: list[int], limit: int) -> dict[str, int]:
    """Ledger entries stay, reduced to a record without personal data; the current state goes."""
    entries = list(ConsentEntry.objects.filter(profile_id__in=profile_ids).values_list("id", flat=True)[:limit])
    anonymised = ConsentEntry.objects.filter(id__in=entries).update(
        profile=None, ip_hash="", user_agent="", tc_string="", message_id="") if entries else 0
    return {"consent_entries_anonymised": anonymised,
            "consent_states": _delete_limited(ConsentState, BY_PROFILE, profile_ids, limit,
                                              Q(profile_id__in=profile_ids))}


def export_consent_data(profile_ids: list[int]) -> dict:
    return {"consent_history": list(ConsentEntry.objects.filter(profile_id__in=profile_ids).order_by("recorded_at")
                                    .values("purpose__key", "granted", "source", "regime", "recorded_at",
                                            "policy_version", "reason"))}


def register_handlers() -> None:
    from consent.services.exports import erase_exports

    register(Handler("consent", (ConsentEntry, ConsentState), erase_consent_data, export_consent_data))
    register(Handler("exports", (PrivacyExport,), erase_exports, lambda profile_ids: {}))
    register(Handler("profiles", (Profile, Identifier, Event, TraitChange, MergeRecord), erase_profile_data,
                     export_profile_data, last=True, finish=finish_profiles))
