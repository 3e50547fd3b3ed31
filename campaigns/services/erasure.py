"""Erasure and export of what campaigns hold on a person: exposures (with the id the request sent), their
conversions, triggered sends, and what waits in Redis under the ids they sent."""
from __future__ import annotations

from django.db.models import Q

from campaigns.models import Conversion, Exposure, TriggeredSend
from campaigns.services.exposures import exposures_forget_queued
from campaigns.services.triggers import triggered_sends_erase
from profiles.selectors import identifiers_held

# The ids a decision request sends, as exposures keep them.
_SENT = ("user_id", "anonymous_id")


def _subjects(profile_ids: list[int]) -> list[str]:
    return [f"{kind}:{value}" for kind, value in identifiers_held(profile_ids=profile_ids) if kind in _SENT]


def _theirs(profile_ids: list[int], subjects: list[str]) -> Q:
    """By profile, and by the ids they hold: a first visit's exposures were recorded before the profile existed."""
    return Q(profile_id__in=profile_ids) | Q(subject__in=subjects)


def campaign_data_erase(*, profile_ids: list[int], limit: int) -> dict[str, int]:
    """Deletes up to `limit` exposures of these profiles (their conversions with them); idempotent. Exposures are
    found by the identifiers the profiles still hold: consent runs the profiles' own handler last."""
    subjects = _subjects(profile_ids)
    # Those still queued are dropped by the recorder (an erased person's exposure is never written).
    exposures_forget_queued(subjects=subjects)
    sends = triggered_sends_erase(profile_ids=profile_ids, limit=limit)
    ids = list(Exposure.objects.filter(_theirs(profile_ids, subjects)).values_list("id", flat=True)[
        :max(0, limit - sends)])
    if not ids:
        return {"campaign_exposures": 0, "campaign_conversions": 0, "campaign_triggered_sends": sends}
    conversions = Conversion.objects.filter(exposure_id__in=ids).delete()[0]
    exposures = Exposure.objects.filter(id__in=ids).delete()[0]
    return {"campaign_exposures": exposures, "campaign_conversions": conversions, "campaign_triggered_sends": sends}


def campaign_data_export(*, profile_ids: list[int]) -> dict:
    exposures = list(Exposure.objects.filter(_theirs(profile_ids, _subjects(profile_ids))).order_by("shown_at").values(
        "decision_id", "campaign__key", "placement__key", "variant", "shown_at", "conversion__converted_at"))
    sends = list(TriggeredSend.objects.filter(profile_id__in=profile_ids).order_by("created_at").values(
        "send_id", "campaign__key", "entered_at", "status", "reason", "variant", "sent_at"))
    return {"campaign_exposures": exposures, "campaign_triggered_sends": sends}
