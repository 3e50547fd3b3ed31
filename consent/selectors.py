"""Consent reads: the state per profile and purpose, its history, and the checks every other app enforces.

Enforcement lives here, one function per use, so segments, campaigns, exports and webhooks cannot each
decide differently: personalised decisions need `personalization`, marketing on a channel needs that
channel's purpose, and an export or webhook needs `sale_sharing` not to be opted out. Apps that select
profiles in bulk put the same rule into their own query: `consent_allowed_q` (the ORM) or
`consent_allowed_sql` (hand-written SQL such as the segment compiler's).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.db.models import BooleanField, Exists, ExpressionWrapper, FilteredRelation, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce

from consent.collected import message_signals
from consent.models import ConsentEntry, ConsentState, Purpose
from profiles import selectors as profile_selectors
from profiles.models import Profile

PERSONALIZATION = "personalization"
SALE_SHARING = "sale_sharing"
CHANNEL_PURPOSES = {"email": "marketing_email", "sms": "marketing_sms"}
_SQL_ALIAS = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class PurposeState:
    purpose: str
    name: str
    granted: bool
    explicit: bool
    source: str
    recorded_at: datetime | None


def consent_regime(*, profile: Profile) -> str:
    """The regime of a profile: the one its country names (stored on it), else CONSENT_DEFAULT_REGIME."""
    return profile.regime or settings.CONSENT_DEFAULT_REGIME


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


@dataclass(frozen=True)
class _Rule:
    """"Purpose allowed" for one purpose, as it reads now: a profile's latest choice, else its regime's default.

    The purpose's defaults and the default regime are read when the filter is built, so the query compares a
    column with constants: the planner sees which profiles need which kind of choice.
    """

    purpose_id: int
    gdpr_default: bool
    ccpa_default: bool
    # The stored regimes that mean GDPR: "" is a profile whose country names none, so the setting decides.
    gdpr_regimes: tuple[str, ...]


def _rule(purpose: str) -> _Rule:
    """Raises Purpose.DoesNotExist for an unknown purpose: failing closed beats treating it as granted."""
    row = Purpose.objects.only("gdpr_default", "ccpa_default").get(key=purpose)
    gdpr = ("gdpr", "") if settings.CONSENT_DEFAULT_REGIME == "gdpr" else ("gdpr",)
    return _Rule(row.pk, row.gdpr_default, row.ccpa_default, gdpr)


# How the filter reads in SQL, chosen from EXPLAIN ANALYZE over a million profiles:
# - a purpose whose default is the same under every regime is a plain semi join (only a grant gives it) or anti
#   join (only a denial takes it away) with its states, which PostgreSQL hashes, in parallel;
# - a purpose whose default depends on the regime is one EXISTS over the profile joined (LEFT) to its state of
#   that purpose: COALESCE(the choice, the regime's default). The profile appears again inside so that the whole
#   rule is a single semi join, which PostgreSQL runs as a parallel hash join over the table, or as index probes
#   for a few profiles. Written as "(default AND NOT EXISTS denial) OR (NOT default AND EXISTS grant)" instead,
#   the OR keeps both EXISTS as per-row subplans: one process only, and a cost estimate so high (PostgreSQL
#   prices the per-row alternative) that every count pays for JIT compilation.
# Each EXISTS is correlated by the profile id only, so wherever a caller puts it (under OR, NOT) PostgreSQL can
# still fall back to index probes per profile; an uncorrelated IN (...) could fall back to a quadratic scan.


def consent_allowed_q(*, purpose: str, via: str = "") -> Q:
    """A filter for profiles that allow the purpose now: `Profile.objects.filter(consent_allowed_q(...))`.

    `via` names the profile relation when filtering another model (`via="profile"`: rows whose profile allows
    it; rows without a profile never do). The same answers as consent_allowed_sql and consent_granted.
    Raises Purpose.DoesNotExist for an unknown purpose.
    """
    rule = _rule(purpose)
    profile = OuterRef(via or "pk")
    if rule.gdpr_default == rule.ccpa_default:
        # Where the default grants, only a denial takes the purpose away; where it denies, only a grant gives it.
        states = ConsentState.objects.filter(profile_id=profile, purpose_id=rule.purpose_id)
        allowed = (Q(~Exists(states.filter(granted=False))) if rule.gdpr_default
                   else Q(Exists(states.filter(granted=True))))
    else:
        under_gdpr = Q(regime__in=rule.gdpr_regimes)
        by_default = under_gdpr if rule.gdpr_default else ~under_gdpr
        # COALESCE(the state's choice, the default), as in the SQL form: the same plan and estimates.
        allowed = Q(Exists(
            Profile.objects.filter(pk=profile)
            .alias(state=FilteredRelation("consent_states", condition=Q(consent_states__purpose_id=rule.purpose_id)))
            .filter(Coalesce("state__granted", ExpressionWrapper(by_default, output_field=BooleanField()),
                             output_field=BooleanField()))))
    return (allowed & Q(**{f"{via}__isnull": False})) if via else allowed


def consent_allowed_sql(*, purpose: str, profile_alias: str = "p") -> tuple[str, list]:
    """The same filter as consent_allowed_q as a SQL condition on `profile_alias` (a profiles_profile row in
    the caller's FROM), with its parameters: `f"... WHERE {sql}"`, params in that place.

    Raises Purpose.DoesNotExist for an unknown purpose, ValueError for an alias that is not a plain lower-case
    SQL name.
    """
    if not _SQL_ALIAS.fullmatch(profile_alias):
        raise ValueError(f"not a plain SQL alias: {profile_alias!r}")
    rule = _rule(purpose)
    p, cp, cs = profile_alias, f"cp_{profile_alias}", f"cs_{profile_alias}"
    states = ConsentState._meta.db_table
    if rule.gdpr_default == rule.ccpa_default:
        # A denial where the default grants, a grant where it denies.
        choice = (f"EXISTS (SELECT 1 FROM {states} {cs} WHERE {cs}.profile_id = {p}.id AND {cs}.purpose_id = %s "
                  f"AND {'NOT ' if rule.gdpr_default else ''}{cs}.granted)")
        return (f"NOT {choice}" if rule.gdpr_default else choice), [rule.purpose_id]
    regimes = ", ".join(["%s"] * len(rule.gdpr_regimes))
    by_default = f"{cp}.regime {'' if rule.gdpr_default else 'NOT '}IN ({regimes})"
    sql = (f"EXISTS (SELECT 1 FROM {Profile._meta.db_table} {cp} LEFT JOIN {states} {cs} ON {cs}.profile_id = {cp}.id "
           f"AND {cs}.purpose_id = %s WHERE {cp}.id = {p}.id AND COALESCE({cs}.granted, {by_default}))")
    return sql, [rule.purpose_id, *rule.gdpr_regimes]


def consent_granted(*, profile_ids: list[int], purpose: str) -> set[int]:
    """Of these live profiles, those for which the purpose is granted now: its latest choice, else the default
    of its regime. One query for any number of profiles, after the purpose's.

    Raises Purpose.DoesNotExist for an unknown purpose: failing closed beats treating it as granted.
    """
    condition, params = consent_allowed_sql(purpose=purpose, profile_alias="p")
    if not profile_ids:
        return set()
    with connection.cursor() as cursor:
        # An array literal: psycopg's list adapter checks every element in Python.
        cursor.execute(f"SELECT p.id FROM {Profile._meta.db_table} p WHERE p.id = ANY(%s::bigint[]) AND {condition}",
                       ["{" + ",".join(str(int(pid)) for pid in profile_ids) + "}", *params])
        return {pid for (pid,) in cursor.fetchall()}


def consent_refused_sql(*, purpose: str, profile_alias: str = "p") -> tuple[str, list]:
    """Whether the profile `profile_alias` has refused the purpose by an explicit choice, as a SQL condition with
    its parameters (an unknown purpose is never refused). For what a regime's default does not forbid but a person
    can object to: a triggered message handed to the sender it goes out through, say, needs the channel's
    purpose granted and sale/sharing not refused."""
    if not _SQL_ALIAS.fullmatch(profile_alias):
        raise ValueError(f"not a plain SQL alias: {profile_alias!r}")
    return (f"EXISTS (SELECT 1 FROM {ConsentState._meta.db_table} cr_{profile_alias} JOIN {Purpose._meta.db_table} "
            f"crp_{profile_alias} ON crp_{profile_alias}.id = cr_{profile_alias}.purpose_id "
            f"WHERE cr_{profile_alias}.profile_id = {profile_alias}.id AND crp_{profile_alias}.key = %s "
            f"AND NOT cr_{profile_alias}.granted)"), [purpose]


def consent_refused(*, profile_ids: list[int], purpose: str) -> set[int]:
    """Of these profiles, those that refused the purpose by an explicit choice (consent_refused_sql). One query."""
    if not profile_ids:
        return set()
    condition, params = consent_refused_sql(purpose=purpose, profile_alias="p")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT p.id FROM {Profile._meta.db_table} p WHERE p.id = ANY(%s::bigint[]) AND {condition}",
                       ["{" + ",".join(str(int(pid)) for pid in profile_ids) + "}", *params])
        return {pid for (pid,) in cursor.fetchall()}


@dataclass(frozen=True)
class PurposeContextRule:
    """What reading a request's context for one purpose needs, loaded once and kept by callers that decide often
    (campaigns' snapshot): the purpose's Segment categories, TCF purposes and regime defaults."""

    key: str
    gdpr_default: bool
    ccpa_default: bool
    segment_categories: tuple[str, ...]
    tcf_purposes: tuple[int, ...]


def _context_rules() -> QuerySet[Purpose]:
    return Purpose.objects.only("key", "gdpr_default", "ccpa_default", "segment_categories", "tcf_purposes")


def _context_rule(row: Purpose) -> PurposeContextRule:
    return PurposeContextRule(row.key, row.gdpr_default, row.ccpa_default,
                              tuple(str(c) for c in row.segment_categories or ()), tuple(row.tcf_purposes or ()))


def purpose_context_rules() -> dict[str, PurposeContextRule]:
    """Every purpose's context rule, by key, in one query."""
    return {row.key: _context_rule(row) for row in _context_rules()}


def context_choice(*, rule: PurposeContextRule, context: dict | None) -> bool | None:
    """What a request's context says about the purpose, read as the pipeline reads a collected message
    (Segment's categoryPreferences, a TCF string, GPC against sale/sharing); None when it says nothing. No query."""
    signals = message_signals({"context": context}) if isinstance(context, dict) else None
    if signals is None:
        return None
    if rule.key == SALE_SHARING and signals.gpc:
        return False
    if signals.tcf is not None and rule.tcf_purposes:
        return all(t in signals.tcf.purposes for t in rule.tcf_purposes)
    names = {rule.key.lower(), *(c.lower() for c in rule.segment_categories)}
    said = [granted for name, granted in signals.categories.items() if name.lower() in names]
    return all(said) if said else None


def visitor_allowed(*, purpose: str | PurposeContextRule, context: dict | None) -> bool:
    """Whether a visitor without a profile yet (a first visit) allows the purpose: what the request's context
    says, else the default of the default regime (CONSENT_DEFAULT_REGIME). Given a purpose's key, reads its rule
    (raises Purpose.DoesNotExist for an unknown purpose); given its rule, no query."""
    rule = purpose if isinstance(purpose, PurposeContextRule) else _context_rule(_context_rules().get(key=purpose))
    said = context_choice(rule=rule, context=context)
    if said is not None:
        return said
    return rule.gdpr_default if settings.CONSENT_DEFAULT_REGIME == "gdpr" else rule.ccpa_default


def personalization_allowed(*, profile_ids: list[int]) -> set[int]:
    """Profiles that may get a personalised decision (segments, campaign content)."""
    return consent_granted(profile_ids=profile_ids, purpose=PERSONALIZATION)


def marketing_allowed(*, profile_ids: list[int], channel: str) -> set[int]:
    """Profiles that may get marketing on this channel ("email" or "sms")."""
    return consent_granted(profile_ids=profile_ids, purpose=CHANNEL_PURPOSES[channel])


def sharing_allowed(*, profile_ids: list[int]) -> set[int]:
    """Profiles that may leave the platform (exports, webhooks): not opted out of sale/sharing."""
    return consent_granted(profile_ids=profile_ids, purpose=SALE_SHARING)


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


def erasure_request_for_profile(*, profile_id: int) -> int | None:
    """The deletion request that erased this profile (or is erasing it now), or None."""
    from consent.models import PrivacyRequest, RequestKind, RequestStatus

    return (PrivacyRequest.objects.filter(kind=RequestKind.DELETION, progress__profile_ids__contains=[profile_id],
                                          status__in=[RequestStatus.IN_PROGRESS, RequestStatus.COMPLETED])
            .order_by("-id").values_list("id", flat=True).first())


def purpose_exists(*, purpose: str) -> bool:
    return Purpose.objects.filter(key=purpose).exists()


def purpose_choices() -> list[tuple[str, str]]:
    """Every purpose as (key, name), for filters and forms."""
    return list(Purpose.objects.order_by("key").values_list("key", "name"))


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


def consent_rates() -> list[ConsentRate]:
    """Per purpose and regime, how many live profiles the purpose is granted for now. One aggregate query
    whatever the number of profiles, on the regime stored with each profile."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT pu.key, pu.name, pu.gdpr_default, pu.ccpa_default,
                   coalesce(nullif(p.regime, ''), %s) AS regime, count(p.id),
                   count(s.id) FILTER (WHERE s.granted), count(s.id) FILTER (WHERE NOT s.granted)
            FROM consent_purpose pu
            LEFT JOIN profiles_profile p ON p.merged_into_id IS NULL
            LEFT JOIN consent_consentstate s ON s.profile_id = p.id AND s.purpose_id = pu.id
            GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 5""", [settings.CONSENT_DEFAULT_REGIME])
        rows = cursor.fetchall()
    counted = {(key, regime): (name, gdpr, ccpa, n, grants, denials)
               for key, name, gdpr, ccpa, regime, n, grants, denials in rows}
    names = {key: (name, gdpr, ccpa) for key, name, gdpr, ccpa, *_ in rows}
    rates = []
    for key, (name, gdpr, ccpa) in names.items():
        for regime in ("gdpr", "ccpa"):
            _, _, _, n, grants, denials = counted.get((key, regime), (name, gdpr, ccpa, 0, 0, 0))
            default = gdpr if regime == "gdpr" else ccpa
            rates.append(ConsentRate(key, name, regime, n, grants + ((n - grants - denials) if default else 0),
                                     grants, denials))
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
