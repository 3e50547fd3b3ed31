"""Consent writes: append choices to the ledger and keep the current state; the pipeline's consent steps."""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime

from django.conf import settings
from django.db import OperationalError, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from consent.collected import message_signals
from consent.models import ConsentEntry, ConsentSource, ConsentState, Purpose
from consent.services.audit import audit_record
from profiles.models import Profile

SALE_SHARING = "sale_sharing"
MAX_MERGE_HOPS = 20
logger = logging.getLogger(__name__)


class UnknownPurpose(ValueError):
    pass


@dataclass(frozen=True)
class ConsentChoice:
    """One choice to record. `ip` is hashed before it is stored; the address itself never is."""

    profile_id: int
    purpose: str
    granted: bool
    source: str
    recorded_at: datetime
    policy_version: str = ""
    tc_string: str = ""
    ip: str = ""
    user_agent: str = ""
    event_id: int | None = None
    message_id: str = ""
    reason: str = ""


@dataclass(frozen=True)
class CollectedEvent:
    """What the pipeline knows of a processed event: enough to read its consent signals."""

    event_id: int
    message_id: str
    profile_id: int
    timestamp: datetime
    payload: dict


def ip_hash(ip: str) -> str:
    """Proof that a choice came from an address, without keeping the address (keyed, so not reversible by
    hashing every IPv4 address)."""
    return salted_hmac("consent.ip", ip.strip(), algorithm="sha256").hexdigest() if ip else ""


PIPELINE_SOURCES = (ConsentSource.COLLECTION, ConsentSource.TCF, ConsentSource.GPC, ConsentSource.MERGE)


def _lock_live_profiles(profile_ids: set[int]) -> tuple[dict[int, int], dict[int, str]]:
    """Locks the profiles; a profile merged away before we locked it stands for its survivor, locked too.

    Returns each given id's live profile, and the live profiles' regimes.
    """
    survivor = {pid: pid for pid in profile_ids}
    regimes: dict[int, str] = {}
    default = settings.CONSENT_DEFAULT_REGIME
    pending = set(profile_ids)
    for _ in range(MAX_MERGE_HOPS):
        rows = Profile.objects.select_for_update().filter(id__in=pending).order_by("id").values_list(
            "id", "merged_into_id", "regime")
        moved = {pid: into for pid, into, _ in rows if into is not None}
        regimes.update({pid: regime or default for pid, into, regime in rows if into is None})
        for given, current in survivor.items():
            if current in moved:
                survivor[given] = moved[current]
        pending = set(moved.values()) - set(regimes)
        if not pending:
            return survivor, regimes
    raise OperationalError("profiles kept merging while consent was being recorded")


@transaction.atomic
def consent_record(*, choices: list[ConsentChoice], actor=None) -> list[ConsentEntry]:
    """Appends the choices to the ledger and moves each profile's current state to its latest choice.

    The latest `recorded_at` wins (a later entry wins a tie), so choices may arrive in any order. Locks the
    profiles FOR UPDATE first, so concurrent writers of one profile's consent take turns. Audits each choice
    made by a person or an API client, and the pipeline's collected choices as one entry per call.
    Raises UnknownPurpose.
    """
    if not choices:
        return []
    purposes = {p.key: p for p in Purpose.objects.filter(key__in={c.purpose for c in choices})}
    unknown = sorted({c.purpose for c in choices} - set(purposes))
    if unknown:
        raise UnknownPurpose(f"unknown purpose {', '.join(unknown)}; known: {', '.join(sorted(purposes)) or 'none'}")
    survivor, regimes = _lock_live_profiles({c.profile_id for c in choices})
    # A choice cannot come from the future: a client with a wrong clock must not outrank a later opt-out.
    now = timezone.now()
    entries = ConsentEntry.objects.bulk_create([
        ConsentEntry(profile_id=survivor[c.profile_id], purpose=purposes[c.purpose], granted=c.granted,
                     source=c.source, regime=regimes.get(survivor[c.profile_id], settings.CONSENT_DEFAULT_REGIME),
                     recorded_at=min(c.recorded_at, now),
                     policy_version=c.policy_version[:64], tc_string=c.tc_string, ip_hash=ip_hash(c.ip),
                     user_agent=c.user_agent[:512], event_id=c.event_id, message_id=c.message_id[:200],
                     reason=c.reason)
        for c in choices
    ])
    latest: dict[tuple[int, int], ConsentEntry] = {}
    for entry in entries:
        key = (entry.profile_id, entry.purpose_id)
        if key not in latest or (entry.recorded_at, entry.id) >= (latest[key].recorded_at, latest[key].id):
            latest[key] = entry
    current = {(s.profile_id, s.purpose_id): (s.recorded_at, s.entry_id) for s in ConsentState.objects.filter(
        profile_id__in={k[0] for k in latest}, purpose_id__in={k[1] for k in latest})}
    newer = [e for k, e in latest.items() if k not in current or (e.recorded_at, e.id) >= current[k]]
    ConsentState.objects.bulk_create(
        [ConsentState(profile_id=e.profile_id, purpose_id=e.purpose_id, granted=e.granted, source=e.source,
                      recorded_at=e.recorded_at, entry=e) for e in newer],
        update_conflicts=True, unique_fields=["profile", "purpose"],
        update_fields=["granted", "source", "recorded_at", "entry"])
    collected = [e for e in entries if e.source in PIPELINE_SOURCES]
    if collected:
        audit_record(actor=actor or "pipeline", action="consent.collected", target_type="consent_entries",
                     details={"entries": len(collected), "profiles": len({e.profile_id for e in collected}),
                              "first_entry": collected[0].pk, "last_entry": collected[-1].pk})
    for entry in entries:
        if entry.source not in PIPELINE_SOURCES:
            audit_record(actor=actor, action="consent.record", target_type="profile", target_id=entry.profile_id,
                         details={"entry": entry.pk, "purpose": entry.purpose.key, "granted": entry.granted,
                                  "source": entry.source})
    return entries


def consent_merge(*, merges: list[tuple[int, int]]) -> list[ConsentEntry]:
    """Carries consent across profile merges, as (merged profile, survivor) pairs.

    Per purpose, the most restrictive explicit choice among the survivor and the profiles merged into it wins:
    a denial anywhere beats a grant. A profile that never chose contributes nothing: a default is not a choice.
    When that changes the survivor's state, a ledger entry on the survivor (source "merge") says which choice
    won and where it came from. Runs inside the pipeline's transaction, which holds the profiles' locks.
    """
    if not merges:
        return []
    into: dict[int, list[int]] = {}
    for gone, survivor in merges:
        into.setdefault(survivor, []).append(gone)
    states: dict[tuple[int, int], ConsentState] = {
        (s.profile_id, s.purpose_id): s for s in ConsentState.objects.select_related("purpose").filter(
            profile_id__in=set(into) | {g for gones in into.values() for g in gones})}
    choices = []
    for survivor, gones in sorted(into.items()):
        purposes = {purpose for (pid, purpose) in states if pid == survivor or pid in gones}
        for purpose_id in sorted(purposes):
            own = states.get((survivor, purpose_id))
            candidates = [s for s in [own, *(states.get((g, purpose_id)) for g in gones)] if s is not None]
            denials = [s for s in candidates if not s.granted]
            winner = max(denials or candidates, key=lambda s: (s.recorded_at, s.entry_id))
            if own is not None and own.granted == winner.granted:
                continue
            choices.append(ConsentChoice(
                profile_id=survivor, purpose=winner.purpose.key, granted=winner.granted, source=ConsentSource.MERGE,
                # The latest time among the choices weighed, so the result is not older than what it overrides;
                # a later choice by the person still wins over it.
                recorded_at=max(s.recorded_at for s in candidates),
                reason=(f"profiles {', '.join(map(str, sorted(gones)))} merged into {survivor}: the most restrictive "
                        f"choice wins, {'denied' if not winner.granted else 'granted'} by ledger entry "
                        f"{winner.entry_id} ({winner.source}) of profile {winner.profile_id}")))
    return consent_record(choices=choices)


def consent_apply_collected(*, events: list[CollectedEvent]) -> list[ConsentEntry]:
    """Records the consent signals of processed messages on the profiles they resolved to.

    Segment categories and TCF purposes map to purposes through each purpose's configuration; GPC denies
    sale/sharing. In one message, GPC is recorded last, so it wins a tie with a category that grants sale.
    """
    collected = [(e, s) for e in events if (s := message_signals(e.payload)) is not None]
    if not collected:
        return []
    purposes = list(Purpose.objects.all())
    by_category: dict[str, list[Purpose]] = {}
    for purpose in purposes:
        for name in {purpose.key, *(str(c) for c in purpose.segment_categories)}:
            by_category.setdefault(name.lower(), []).append(purpose)
    choices = []
    for event, signals in collected:
        context = event.payload.get("context") or {}
        base = ConsentChoice(profile_id=event.profile_id, purpose="", granted=False, source=ConsentSource.COLLECTION,
                             recorded_at=event.timestamp, ip=str(context.get("ip") or ""),
                             user_agent=str(context.get("userAgent") or ""), event_id=event.event_id,
                             message_id=event.message_id)
        decided: dict[str, list[bool]] = {}
        for name, granted in signals.categories.items():
            for purpose in by_category.get(name.lower(), []):
                decided.setdefault(purpose.key, []).append(granted)
        choices += [replace(base, purpose=key, granted=all(values), reason="context.consent.categoryPreferences")
                    for key, values in sorted(decided.items())]
        if signals.tcf_error:
            # The message itself was valid and is kept; only its consent string cannot be read.
            logger.warning("event %s: TC string ignored: %s", event.event_id, signals.tcf_error)
        if signals.tcf is not None:
            choices += [replace(base, purpose=p.key, granted=all(t in signals.tcf.purposes for t in p.tcf_purposes),
                                source=ConsentSource.TCF, tc_string=signals.tc_string,
                                policy_version=f"TCF v2 policy {signals.tcf.policy_version}, CMP {signals.tcf.cmp_id}",
                                reason=f"TCF purposes {sorted(p.tcf_purposes)}")
                        for p in purposes if p.tcf_purposes]
        if signals.gpc and any(p.key == SALE_SHARING for p in purposes):
            choices.append(replace(base, purpose=SALE_SHARING, granted=False, source=ConsentSource.GPC,
                                   reason="Global Privacy Control"))
    return consent_record(choices=choices)
