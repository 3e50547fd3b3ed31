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


# --- the privacy screens ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentRate:
    """How many live profiles of a regime the purpose is granted for now, explicitly or by the regime's default."""

    purpose: str
    name: str
    regime: str
    profiles: int
    granted: int
    explicit_grants: int
    explicit_denials: int

    @property
    def share(self) -> float:
        return self.granted / self.profiles if self.profiles else 0.0


def _regime_of(country: str | None, address_country: str | None) -> str:
    """The regime of profiles with this `country` and `address.country` (as JSON text, or None when absent)."""
    import orjson

    traits = {"country": orjson.loads(country) if country is not None else None}
    if address_country is not None:
        traits["address"] = {"country": orjson.loads(address_country)}
    return regime_for(traits, default=settings.CONSENT_DEFAULT_REGIME)


def consent_rates() -> list[ConsentRate]:
    """Per purpose and regime, the share of live profiles the purpose is granted for. Two aggregate queries
    whatever the number of profiles: profiles counted by country, and explicit choices counted by purpose and
    country; the regime of each country (a few hundred at most) is decided by the same `regime_for` as
    everywhere else."""
    from django.db import connection

    profiles = {"gdpr": 0, "ccpa": 0}
    with connection.cursor() as cursor:
        cursor.execute("SELECT (traits->'country')::text, (traits#>'{address,country}')::text, count(*) "
                       "FROM profiles_profile WHERE merged_into_id IS NULL GROUP BY 1, 2")
        for country, address_country, n in cursor.fetchall():
            profiles[_regime_of(country, address_country)] += n
        cursor.execute("""
            SELECT pu.key, pu.name, pu.gdpr_default, pu.ccpa_default, g.country, g.address_country, g.granted, g.denied
            FROM consent_purpose pu LEFT JOIN (
                SELECT s.purpose_id, (p.traits->'country')::text AS country,
                       (p.traits#>'{address,country}')::text AS address_country,
                       count(*) FILTER (WHERE s.granted) AS granted, count(*) FILTER (WHERE NOT s.granted) AS denied
                FROM consent_consentstate s JOIN profiles_profile p ON p.id = s.profile_id
                WHERE p.merged_into_id IS NULL GROUP BY 1, 2, 3) g ON g.purpose_id = pu.id
            ORDER BY pu.key""")
        rows = cursor.fetchall()
    purposes: dict[str, tuple[str, dict[str, bool]]] = {}
    explicit: dict[tuple[str, str], list[int]] = {}
    for key, name, gdpr_default, ccpa_default, country, address_country, granted, denied in rows:
        purposes[key] = (name, {"gdpr": gdpr_default, "ccpa": ccpa_default})
        if granted is not None:
            counts = explicit.setdefault((key, _regime_of(country, address_country)), [0, 0])
            counts[0] += granted
            counts[1] += denied
    rates = []
    for key, (name, defaults) in purposes.items():
        for regime in ("gdpr", "ccpa"):
            grants, denials = explicit.get((key, regime), (0, 0))
            undecided = profiles[regime] - grants - denials
            rates.append(ConsentRate(key, name, regime, profiles[regime],
                                     grants + (undecided if defaults[regime] else 0), grants, denials))
    return rates


def privacy_officer_ids() -> dict[int, str]:
    """Active users who may handle privacy requests (consent.change_privacyrequest, from a role or their own,
    or a superuser), by id, with their usernames; the people a request can be assigned to."""
    from django.contrib.auth import get_user_model
    from django.db.models import Q

    perm = {"codename": "change_privacyrequest", "content_type__app_label": "consent"}
    users = get_user_model().objects.filter(is_active=True).filter(
        Q(is_superuser=True) | Q(**{f"groups__permissions__{k}": v for k, v in perm.items()})
        | Q(**{f"user_permissions__{k}": v for k, v in perm.items()}))
    return dict(users.distinct().order_by("username").values_list("id", "username"))


def profile_traits(*, profile_ids: list[int], keys: list[str]) -> dict[int, dict]:
    """Of these profiles, the live ones' values of these traits (None where a trait is not set)."""
    rows = Profile.objects.filter(id__in=profile_ids, merged_into__isnull=True).values_list("id", "traits")
    return {pid: {key: (traits or {}).get(key) for key in keys} for pid, traits in rows}


def _search_identifier(query: str) -> list[str]:
    """The stored forms a typed identifier can have: an email lower-cased, a phone in E.164, else as typed."""
    value = query.strip()
    forms = {value.lower()}
    for kind in ("email", "phone"):
        normalised = profile_selectors.identifier_normalise(kind, value)
        if normalised:
            forms.add(normalised.lower())
    return sorted(forms)


def privacy_requests_find(*, closed: bool | None = False, query: str = "", kind: str = "", regime: str = "",
                          assignee_id: int | None = None, unassigned: bool = False):
    """The privacy officer's queue: open requests the earliest due first, or closed ones the latest closed
    first (both with `closed` None); `query` is a request id (`12` or `#12`) or an identifier of the subject (an
    email or phone normalised as the identity graph stores it)."""
    from django.db.models import BooleanField, Q
    from django.db.models.expressions import RawSQL

    from consent.models import PrivacyRequest, RequestStatus

    requests = PrivacyRequest.objects.select_related("assignee")
    done = [RequestStatus.COMPLETED, RequestStatus.REJECTED]
    if closed is not None:
        requests = (requests.filter(status__in=done).order_by("-completed_at", "-id") if closed else
                    requests.exclude(status__in=done).order_by("due_on", "id"))
    if kind:
        requests = requests.filter(kind=kind)
    if regime:
        requests = requests.filter(regime=regime)
    if unassigned:
        requests = requests.filter(assignee__isnull=True)
    elif assignee_id is not None:
        requests = requests.filter(assignee_id=assignee_id)
    query = query.strip()
    if query:
        named = RawSQL("CASE WHEN jsonb_typeof(consent_privacyrequest.identifiers) = 'array' THEN EXISTS ("
                       "SELECT 1 FROM jsonb_array_elements(consent_privacyrequest.identifiers) AS i "
                       "WHERE lower(btrim(i->>'value')) = ANY(%s)) ELSE false END", [_search_identifier(query)],
                       output_field=BooleanField())
        number = query.removeprefix("#")
        by_id = Q(pk=int(number)) if number.isdigit() and len(number) <= 18 else Q(pk__in=[])
        requests = requests.filter(by_id | Q(named))
    return requests


def privacy_request_counts(*, today) -> dict[str, int]:
    """Open requests, and of them the overdue, the due within a week and the unassigned ones. One query."""
    from datetime import timedelta

    from django.db.models import Count, Q

    from consent.models import PrivacyRequest, RequestStatus

    open_ = Q(status__in=[RequestStatus.RECEIVED, RequestStatus.VERIFYING, RequestStatus.IN_PROGRESS])
    return PrivacyRequest.objects.aggregate(
        open=Count("id", filter=open_), overdue=Count("id", filter=open_ & Q(due_on__lt=today)),
        due_soon=Count("id", filter=open_ & Q(due_on__gte=today, due_on__lte=today + timedelta(days=7))),
        unassigned=Count("id", filter=open_ & Q(assignee__isnull=True)),
        closed=Count("id", filter=~open_))


def audit_entries(*, request_id: int | None = None, profile_id: int | None = None, actor: str = "",
                  start: datetime | None = None, end: datetime | None = None, before_id: int | None = None,
                  limit: int = 50) -> list:
    """Audit entries, newest first, filtered; at most `limit` + 1, so the caller knows whether more follow.
    Paged by id (`before_id`), which costs the same on the millionth page as on the first."""
    from consent.models import AuditEntry

    entries = AuditEntry.objects.order_by("-id")
    if request_id is not None:
        entries = entries.filter(target_type="privacy_request", target_id=request_id)
    if profile_id is not None:
        entries = entries.filter(target_type="profile", target_id=profile_id)
    if actor:
        entries = entries.filter(actor__iexact=actor)
    if start is not None:
        entries = entries.filter(at__gte=start)
    if end is not None:
        entries = entries.filter(at__lt=end)
    if before_id is not None:
        entries = entries.filter(id__lt=before_id)
    return list(entries[:limit + 1])


def privacy_requests_open_and_closed(*, requests) -> dict[str, int]:
    """How many of these requests (privacy_requests_find with `closed` None) are open and closed. One query."""
    from django.db.models import Count, Q

    from consent.models import RequestStatus

    done = Q(status__in=[RequestStatus.COMPLETED, RequestStatus.REJECTED])
    return requests.order_by().aggregate(open=Count("id", filter=~done), closed=Count("id", filter=done))
