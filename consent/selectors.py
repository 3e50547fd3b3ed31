"""Consent reads: the state per profile and purpose, its history, and the checks every other app enforces.

Enforcement lives here, one function per use, so segments, campaigns, exports and webhooks cannot each
decide differently: personalised decisions need `personalization`, marketing on a channel needs that
channel's purpose, and an export or webhook needs `sale_sharing` not to be opted out.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import QuerySet

from consent.models import ConsentEntry, ConsentState, Purpose
from consent.regimes import regime_for
from profiles import selectors as profile_selectors
from profiles.models import Profile

PERSONALIZATION = "personalization"
SALE_SHARING = "sale_sharing"
CHANNEL_PURPOSES = {"email": "marketing_email", "sms": "marketing_sms"}


@dataclass(frozen=True)
class PurposeState:
    purpose: str
    name: str
    granted: bool
    explicit: bool
    source: str
    recorded_at: datetime | None


def consent_regime(*, profile: Profile) -> str:
    return regime_for(profile.traits, default=settings.CONSENT_DEFAULT_REGIME)


def consent_current(*, profile: Profile) -> list[PurposeState]:
    """Every purpose's state for one live profile: its latest choice, or the default of its regime."""
    regime = consent_regime(profile=profile)
    states = {s.purpose_id: s for s in ConsentState.objects.filter(profile=profile)}
    out = []
    for purpose in Purpose.objects.all():
        state = states.get(purpose.pk)
        default = purpose.gdpr_default if regime == "gdpr" else purpose.ccpa_default
        out.append(PurposeState(purpose.key, purpose.name, state.granted if state else default, state is not None,
                                state.source if state else "default", state.recorded_at if state else None))
    return out


def consent_history(*, profile: Profile) -> QuerySet[ConsentEntry]:
    """The ledger of a profile and of every profile merged into it, newest first."""
    ids = profile_selectors.profile_merged_ids(profile=profile)
    return (ConsentEntry.objects.filter(profile_id__in=ids).select_related("purpose")
            .order_by("-recorded_at", "-id"))


def consent_granted(*, profile_ids: list[int], purpose: str) -> set[int]:
    """Of these live profiles, those for which the purpose is granted now. Three queries for any number.

    Raises Purpose.DoesNotExist for an unknown purpose: failing closed beats treating it as granted.
    """
    row = Purpose.objects.get(key=purpose)
    explicit = dict(ConsentState.objects.filter(profile_id__in=profile_ids, purpose=row)
                    .values_list("profile_id", "granted"))
    undecided = [pid for pid in profile_ids if pid not in explicit]
    granted = {pid for pid, ok in explicit.items() if ok}
    if undecided:
        default = settings.CONSENT_DEFAULT_REGIME
        for pid, traits in Profile.objects.filter(id__in=undecided).values_list("id", "traits"):
            if (row.gdpr_default if regime_for(traits, default=default) == "gdpr" else row.ccpa_default):
                granted.add(pid)
    return granted


def personalization_allowed(*, profile_ids: list[int]) -> set[int]:
    """Profiles that may get a personalised decision (segments, campaign content)."""
    return consent_granted(profile_ids=profile_ids, purpose=PERSONALIZATION)


def marketing_allowed(*, profile_ids: list[int], channel: str) -> set[int]:
    """Profiles that may get marketing on this channel ("email" or "sms")."""
    return consent_granted(profile_ids=profile_ids, purpose=CHANNEL_PURPOSES[channel])


def sharing_allowed(*, profile_ids: list[int]) -> set[int]:
    """Profiles that may leave the platform (exports, webhooks): not opted out of sale/sharing."""
    return consent_granted(profile_ids=profile_ids, purpose=SALE_SHARING)


def privacy_request_queue(*, kind: str = "", status: str = "", regime: str = "", open_only: bool = False):
    """Requests, the earliest due first, filtered as the privacy officer's queue asks."""
    from consent.models import PrivacyRequest, RequestStatus

    requests = PrivacyRequest.objects.select_related("assignee").order_by("due_on", "id")
    if kind:
        requests = requests.filter(kind=kind)
    if status:
        requests = requests.filter(status=status)
    if regime:
        requests = requests.filter(regime=regime)
    if open_only:
        requests = requests.exclude(status__in=[RequestStatus.COMPLETED, RequestStatus.REJECTED])
    return requests


def privacy_request_subject(*, request) -> list[Profile]:
    """The live profiles the request's identifiers resolve to (for the request page)."""
    if request.receipt and request.kind == "deletion":
        return []
    return list(Profile.objects.filter(id__in=subject_profile_ids(identifiers=request.identifiers),
                                       merged_into__isnull=True))


def subject_profile_ids(*, identifiers: list[dict]) -> list[int]:
    """Every profile the identifiers resolve to through the identity graph, and every profile merged into them."""
    ids: set[int] = set()
    for item in identifiers:
        profile = profile_selectors.profile_lookup(identifier_type=item["type"], value=item["value"])
        if profile is not None:
            ids |= profile_selectors.profile_merged_ids(profile=profile)
    return sorted(ids)
