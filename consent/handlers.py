"""The erase and export handlers of consent's own tables, and the registration of every app's handler.

The profiles app sits below consent and may not import its registry, so its handler is registered here; its
rows are erased and exported by its own services.
"""
from __future__ import annotations

from consent.models import ConsentEntry, ConsentState, PrivacyExport
from consent.registry import Handler, register
from profiles.models import Event, Identifier, MergeRecord, Profile, TraitChange
from consent.services.exports import erase_exports
from profiles.services.erasure import profile_data_erase, profile_data_export, profiles_delete


def erase_consent_data(profile_ids: list[int], limit: int) -> dict[str, int]:
    """Ledger entries stay, reduced to a record without personal data; the current state goes."""
    entries = list(ConsentEntry.objects.filter(profile_id__in=profile_ids).values_list("id", flat=True)[:limit])
    anonymised = ConsentEntry.objects.filter(id__in=entries).update(
        profile=None, ip_hash="", user_agent="", tc_string="", message_id="") if entries else 0
    states = list(ConsentState.objects.filter(profile_id__in=profile_ids).values_list("id", flat=True)[:limit])
    deleted = ConsentState.objects.filter(id__in=states).delete()[0] if states else 0
    return {"consent_entries_anonymised": anonymised, "consent_states": deleted}


def export_consent_data(profile_ids: list[int]) -> dict:
    return {"consent_history": list(ConsentEntry.objects.filter(profile_id__in=profile_ids).order_by("recorded_at")
                                    .values("purpose__key", "granted", "source", "regime", "recorded_at",
                                            "policy_version", "reason"))}


def register_handlers() -> None:
    register(Handler("consent", (ConsentEntry, ConsentState), erase_consent_data, export_consent_data))
    register(Handler("exports", (PrivacyExport,), erase_exports, lambda profile_ids: {}))
    register(Handler(
        "profiles", (Profile, Identifier, Event, TraitChange, MergeRecord),
        lambda profile_ids, limit: profile_data_erase(profile_ids=profile_ids, limit=limit),
        lambda profile_ids: profile_data_export(profile_ids=profile_ids),
        last=True, finish=lambda profile_ids: profiles_delete(profile_ids=profile_ids)))
