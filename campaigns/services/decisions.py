"""Deciding what one person gets in one placement: the global holdout, the placement's running campaigns, their
targeting, consent, exclusivity and frequency caps, arbitration by priority, then a sticky allocation to control
or a variant; the exposure is queued, not written, on the way out.

The cost is fixed whatever the number of campaigns: one prepared statement (the write key, the person's profile
id, the targeting of every running campaign with the person's consent to each purpose they need, and their
exposures), a second for a first visit's targeting, and one Redis round trip to queue the exposure when content is
shown (none otherwise; the campaigns' version is read at most once a second per process).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from celery import current_app
from django.utils import timezone

from campaigns import rules
from campaigns.models import Campaign
from campaigns.selectors import (LiveCampaign, LivePlacement, PersonRead, person_seen_read, person_seen_statement,
                                 recent_version, snapshot, variant_stats, version_seen)
from campaigns.services.exposures import RECORD_TASK, ExposureRecord, QueueRefused, exposure_queue, new_decision_id
from consent.selectors import PERSONALIZATION, context_choice, visitor_allowed
from profiles.common.prepared import fetch_prepared
from profiles.selectors import source_id_for_write_key
from segments.rules import Consent
from segments.selectors import recommendations_for, targeting_matches, targeting_statement


@dataclass(frozen=True)
class Decision:
    decision_id: str | None
    placement: str
    campaign: dict | None
    variant: str | None
    content: dict
    reason: str

    def as_json(self) -> dict:
        return {"decision_id": self.decision_id, "placement": self.placement, "campaign": self.campaign,
                "variant": self.variant, "content": self.content, "reason": self.reason}


def _schedule_recorder() -> None:
    current_app.tasks[RECORD_TASK].apply_async(countdown=1)


class WriteKeyRefused(Exception):
    """The write key authenticates no active source."""


# A decision refused this often by the queue is taken once more without a check (a person deciding in many tabs
# at once may then exceed a cap by one).
RACE_ATTEMPTS = 4


@dataclass(frozen=True)
class _Show:
    campaign: LiveCampaign | None
    variant: str
    content: dict
    reason: str


def decide(*, placement_key: str, user_id: str = "", anonymous_id: str = "", context: dict | None = None,
           now: datetime | None = None, write_key: str | None = None) -> Decision | None:
    """The decision for one person (by user id, else anonymous id) in one placement; None for an unknown
    placement. Content that is shown (a variant, control, the holdout's default) is queued as an exposure.
    With `write_key` (the decision API), raises WriteKeyRefused before anything is decided unless it authenticates
    an active source: checked in the statement that reads the person, which saves the API a round trip.

    First from PostgreSQL alone, with the campaigns as of a version at most a second old. The script that queues
    the exposure refuses it if the campaigns changed since, or if the person has exposures pending that the read
    may have missed (a decision a moment ago, or at this very moment: caps hold under concurrency); its answer
    carries the version and the pending exposures, and the decision is taken again with them (reading PostgreSQL
    again only if the campaigns changed). A decision that shows nothing never waits for Redis."""
    now = now or timezone.now()
    # The ids the request sent: what finds a first visit's exposures later (the first is what they are kept by).
    subjects = [f"user_id:{user_id}"] if user_id else []
    if anonymous_id:
        subjects.append(f"anonymous_id:{anonymous_id}")
    refused: QueueRefused | None = None
    live, rows = None, None
    for attempt in range(1, RACE_ATTEMPTS + 1):
        version = refused.version if refused is not None else recent_version()
        if live is None or live.version != version:
            live, rows = snapshot(version=version), None
        placement = live.placements.get(placement_key)
        if placement is None:
            if write_key is not None and source_id_for_write_key(write_key=write_key) is None:
                raise WriteKeyRefused
            return None
        running = [c for c in live.campaigns.get(placement.id, []) if c.running(now)]
        # Campaigns whose purpose is gone never apply (failing closed).
        purposes = sorted({c.purpose for c in running if c.purpose in live.purposes})
        if rows is None:
            rows = fetch_prepared(*person_seen_statement(
                user_id=user_id, anonymous_id=anonymous_id, subjects=subjects, now=now, write_key=write_key or "",
                targeting=_targeting(live, placement, running, purposes, context, now)))
        person = person_seen_read(rows, refused.pending if refused is not None else [])
        if write_key is not None and not person.authenticated:
            raise WriteKeyRefused
        chosen = _choose(live, placement, running, purposes, person, context, now,
                         rules.allocation_unit(user_id=user_id or person.profile_user_id, anonymous_id=anonymous_id))
        if isinstance(chosen, Decision):
            return chosen
        decision_id = new_decision_id()
        last = attempt == RACE_ATTEMPTS
        check = "any" if last else ("fast" if refused is None else f"seq:{refused.sequence}")
        refused = exposure_queue(
            record=ExposureRecord(decision_id, chosen.campaign.id if chosen.campaign else None, placement.id,
                                  person.profile_id, subjects[0], chosen.variant, placement.channel, now.isoformat()),
            schedule=_schedule_recorder, subjects=subjects, check=check, version="*" if last else live.version)
        if refused is None:
            campaign = {"id": chosen.campaign.id, "key": chosen.campaign.key} if chosen.campaign else None
            content = _with_recommendations(chosen.content, person.profile_id, context, live)
            return Decision(decision_id, placement.key, campaign, chosen.variant, content, chosen.reason)
        version_seen(refused.version)
    raise AssertionError("unreachable: the last attempt is queued unchecked")


def _targeting(live, placement: LivePlacement, running: list[LiveCampaign], purposes: list[str],
               context: dict | None, now: datetime) -> tuple[str, list] | None:
    """The running campaigns' targeting and the person's consent to each purpose they need (labelled below zero;
    campaigns by their positive ids), as a subquery of the statement that reads the person."""
    if not running:
        return None
    nodes = {**{c.id: c.targeting for c in running if c.targeting is not None},
             **{-1 - n: Consent(purpose, True) for n, purpose in enumerate(purposes)}}
    return targeting_statement(nodes=nodes, context=context, now=now, segment_ids=live.segment_ids,
                               consent_sql=live.consent_sql, reuse=live.targeting_statements, reuse_key=placement.id)


def _choose(live, placement: LivePlacement, running: list[LiveCampaign], purposes: list[str], person: PersonRead,
            context: dict | None, now: datetime, unit: str) -> Decision | _Show:
    """What the person gets: nothing (a Decision with its reason), or content to show once its exposure is
    queued."""
    seen = person.seen

    def nothing(reason: str) -> Decision:
        content = _with_recommendations(placement.default_content, person.profile_id, context, live)
        return Decision(None, placement.key, None, None, content, reason)

    if rules.held_out(share=live.holdout_share, unit=unit, earlier=seen.held_out):
        return _Show(None, rules.HOLDOUT, placement.default_content, "global_holdout")
    if not running:
        return nothing("no_eligible_campaign")
    held = person.held
    if person.profile_id is None:
        # A first visit: the context alone, in a statement of its own (they are few).
        held = targeting_matches(nodes={c.id: c.targeting for c in running if c.targeting is not None},
                                 profile_id=None, context=context, now=now, segment_ids=live.segment_ids,
                                 consent_sql=live.consent_sql, reuse=live.targeting_statements,
                                 reuse_key=placement.id)
    eligible = [c for c in running if c.targeting is None or c.id in held]
    if not eligible:
        return nothing("no_eligible_campaign")
    eligible = [c for c in eligible if c.purpose in _allowed(purposes, held, person.profile_id, context, live)]
    if not eligible:
        return nothing("no_consent")
    # Never beside a campaign it excludes (triggered ones included), once the person has seen that one (while it
    # is active).
    eligible = [c for c in eligible if not (c.exclusive_with & live.active_ids & set(seen.first_variant))]
    if not eligible:
        return nothing("no_eligible_campaign")
    channel_times = seen.channel_times.get(placement.channel, [])
    if any(seen.count(channel_times, cap, now) >= cap.count for cap in live.channel_caps.get(placement.channel, ())):
        return nothing("frequency_cap")
    eligible = [c for c in eligible if not any(
        seen.count(seen.campaign_times.get(c.id, []), cap, now) >= cap.count for cap in c.caps)]
    if not eligible:
        return nothing("frequency_cap")
    winner = eligible[0]
    variant = variant_for(winner, unit, seen.first_variant.get(winner.id))
    if variant == "control":
        return _Show(winner, "control", placement.default_content, "control")
    return _Show(winner, variant, next(v.content for v in winner.variants if v.key == variant), "matched")


def _with_recommendations(content: dict, profile_id: int | None, context: dict | None, live) -> dict:
    """Content asking for {"recommendations": {"k": N}} gets the person's top N items (popular ones for a first
    visit, or when the ledger or the request's context denies personalisation), and where they came from."""
    ask = content.get(rules.RECOMMENDATIONS_KEY)
    if not isinstance(ask, dict):
        return content
    rule = live.purposes.get(PERSONALIZATION)
    if rule is not None and context_choice(rule=rule, context=context) is False:
        profile_id = None
    found = recommendations_for(profile_id=profile_id, k=ask.get("k", 4),
                                include_bought=ask.get("include_bought", False), consent_sql=live.consent_sql)
    return {**content, rules.RECOMMENDATIONS_KEY: [item.as_json() for item in found.items],
            "recommendations_basis": found.basis}


def _allowed(purposes: list[str], held: set[int], profile_id: int | None, context: dict | None, live) -> set[str]:
    """The purposes the person allows now. What the request's context says (a consent banner's categories, a TCF
    string, GPC) decides for a first visit, else their regime's default; for someone with a profile, their
    ledger decides and the context can only withdraw: a denial on the page is the newest word, while the event
    that records it may still be on its way."""
    allowed = set()
    for n, purpose in enumerate(purposes):
        rule = live.purposes[purpose]
        if profile_id is None:
            if visitor_allowed(purpose=rule, context=context):
                allowed.add(purpose)
        elif -1 - n in held and context_choice(rule=rule, context=context) is not False:
            allowed.add(purpose)
    return allowed


def variant_for(campaign: LiveCampaign, unit: str, earlier: str | None) -> str:
    """Sticky: what the person got before (while that variant still exists). Otherwise control by the stable hash
    of the campaign and the person's unit (rules.allocation_unit), then a variant: by the same hash in proportion
    to the weights (`fixed`), or by Thompson sampling on the variants' conversions so far (`thompson`)."""
    if earlier == "control" or earlier in {v.key for v in campaign.variants}:
        return earlier
    allocated = rules.allocate(salt=f"campaign:{campaign.id}", subject=unit,
                               control_share=campaign.control_share, variants=campaign.variants)
    if allocated == "control" or campaign.allocation != Campaign.Allocation.THOMPSON:
        return allocated
    return rules.thompson_pick(campaign.variants, variant_stats(campaign_id=campaign.id), random.Random())
