"""Writing placements, campaigns and the programme's settings: each checked as a whole before it is saved (an
error names the field's path), and every change makes decisions reload their snapshot once it commits."""
from __future__ import annotations

from datetime import datetime

from django.db import transaction

from campaigns import rules
from campaigns.models import Campaign, Placement, ProgrammeSettings
from campaigns.selectors import snapshot_invalidate
from consent.selectors import purpose_exists
from segments import rules as segment_rules
from segments.rules import DefinitionError
from segments.selectors import destination_get, segment_ids_by_key

# What a campaign's status may become, by the action that changes it.
TRANSITIONS = {"activate": ({Campaign.Status.DRAFT, Campaign.Status.PAUSED}, Campaign.Status.ACTIVE),
               "pause": ({Campaign.Status.ACTIVE}, Campaign.Status.PAUSED),
               "end": ({Campaign.Status.DRAFT, Campaign.Status.ACTIVE, Campaign.Status.PAUSED}, Campaign.Status.ENDED)}


class TransitionRefused(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@transaction.atomic
def placement_save(*, placement: Placement | None = None, **fields) -> Placement:
    """Creates (placement None) or updates a placement."""
    placement = placement or Placement()
    for name, value in fields.items():
        setattr(placement, name, value)
    if not isinstance(placement.default_content, dict):
        raise DefinitionError("default content is a JSON object", "default_content")
    rules.check_recommendations(placement.default_content, "default_content")
    placement.save()
    snapshot_invalidate()
    return placement


@transaction.atomic
def placement_delete(*, placement: Placement) -> None:
    placement.delete()
    snapshot_invalidate()


def campaign_check(*, targeting, variants, caps, control_share, goal, purpose: str, placements: list[Placement],
                   starts_at: datetime | None, ends_at: datetime | None, trigger=None) -> None:
    """Raises DefinitionError at the first place a campaign cannot work."""
    node = rules.parse_targeting(targeting)
    if node is not None:
        known = set(segment_ids_by_key())
        for path, leaf in segment_rules.leaves(node, "targeting"):
            if isinstance(leaf, segment_rules.InSegment) and leaf.key not in known:
                raise DefinitionError(f'no segment has the key "{leaf.key}"', f"{path}.segment")
            if isinstance(leaf, segment_rules.Consent) and not purpose_exists(purpose=leaf.purpose):
                raise DefinitionError(f'unknown consent purpose "{leaf.purpose}"', f"{path}.consent")
    rules.parse_variants(variants)
    rules.parse_caps(caps)
    rules.parse_share(control_share, path="control_share")
    rules.parse_goal(goal)
    if purpose and not purpose_exists(purpose=purpose):
        raise DefinitionError(f'unknown consent purpose "{purpose}"', "purpose")
    if not placements:
        raise DefinitionError("a campaign runs in at least one placement", "placements")
    if starts_at and ends_at and ends_at <= starts_at:
        raise DefinitionError("ends_at is after starts_at", "ends_at")
    _trigger_check(trigger, placements)


def _trigger_check(value, placements: list[Placement]) -> None:
    trigger = rules.parse_trigger(value)
    if trigger is None:
        return
    if trigger.segment not in segment_ids_by_key():
        raise DefinitionError(f'no segment has the key "{trigger.segment}"', "trigger.segment")
    if trigger.placement not in {p.key for p in placements}:
        raise DefinitionError(f'"{trigger.placement}" is not one of the campaign\'s placements', "trigger.placement")
    if destination_get(destination_id=trigger.destination) is None:
        raise DefinitionError(f"no destination has the id {trigger.destination}", "trigger.destination")


@transaction.atomic
def campaign_save(*, campaign: Campaign | None = None, placements: list[Placement] | None = None,
                  exclusive_with: list[Campaign] | None = None, **fields) -> Campaign:
    """Creates (campaign None) or updates a campaign after checking it whole; raises DefinitionError."""
    campaign = campaign or Campaign()
    for name, value in fields.items():
        setattr(campaign, name, value)
    current_placements = placements if placements is not None else (
        list(campaign.placements.all()) if campaign.pk else [])
    campaign_check(targeting=campaign.targeting, variants=campaign.variants, caps=campaign.caps,
                   control_share=campaign.control_share, goal=campaign.goal, purpose=campaign.purpose,
                   placements=current_placements, starts_at=campaign.starts_at, ends_at=campaign.ends_at,
                   trigger=campaign.trigger)
    if exclusive_with is not None and campaign.pk and any(c.pk == campaign.pk for c in exclusive_with):
        raise DefinitionError("a campaign cannot exclude itself", "exclusive_with")
    campaign.save()
    if placements is not None:
        campaign.placements.set(placements)
    if exclusive_with is not None:
        campaign.exclusive_with.set(exclusive_with)
    snapshot_invalidate()
    return campaign


@transaction.atomic
def campaign_transition(*, campaign: Campaign, action: str) -> Campaign:
    """activate, pause or end; an action the status does not allow raises TransitionRefused. Repeating the
    action that made the status is a no-op, so a retried request is harmless."""
    allowed_from, target = TRANSITIONS[action]
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if campaign.status == target:
        return campaign
    if campaign.status not in allowed_from:
        raise TransitionRefused(f"cannot_{action}", f"a campaign that is {campaign.status} cannot be {action}d"
                                if action != "end" else f"a campaign that is {campaign.status} cannot be ended")
    campaign.status = target
    campaign.save(update_fields=["status", "updated_at"])
    snapshot_invalidate()
    return campaign


@transaction.atomic
def campaign_delete(*, campaign: Campaign) -> None:
    campaign.delete()
    snapshot_invalidate()


@transaction.atomic
def programme_settings_save(*, holdout_share=None, channel_caps=None) -> ProgrammeSettings:
    row, _ = ProgrammeSettings.objects.select_for_update().get_or_create(pk=1)
    if holdout_share is not None:
        row.holdout_share = rules.parse_share(holdout_share, path="holdout_share")
    if channel_caps is not None:
        rules.parse_channel_caps(channel_caps)
        row.channel_caps = channel_caps
    row.save()
    snapshot_invalidate()
    return row
