"""Erasure and export of what segments hold on a person: memberships with their reasons (the person's own
values) and the identifiers static segments list."""
from __future__ import annotations

from collections import Counter

from django.db.models import Q

from profiles.selectors import identifiers_held
from segments.models import SegmentMembership, StaticMember
from segments.services.membership import sizes_shift


def segment_data_erase(*, profile_ids: list[int], limit: int) -> dict[str, int]:
    """Deletes up to `limit` memberships and static list entries of these profiles; idempotent. Static entries
    are found by the identifiers the profiles still hold (consent runs the profiles' own handler last)."""
    found = list(SegmentMembership.objects.filter(profile_id__in=profile_ids).values_list(
        "id", "segment_id", "exited_at")[:limit])
    memberships = SegmentMembership.objects.filter(id__in=[row[0] for row in found]).delete()[0] if found else 0
    # The erased people's current memberships leave their segments' sizes with them.
    sizes_shift(growth={segment_id: -n for segment_id, n in Counter(
        segment_id for _, segment_id, exited_at in found if exited_at is None).items()})
    listed = _listed(profile_ids)
    static = 0
    if listed is not None:
        entries = list(StaticMember.objects.filter(listed).values_list("id", flat=True)[:limit])
        static = StaticMember.objects.filter(id__in=entries).delete()[0] if entries else 0
    return {"segment_memberships": memberships, "static_segment_entries": static}


def segment_data_export(*, profile_ids: list[int]) -> dict:
    memberships = list(SegmentMembership.objects.filter(profile_id__in=profile_ids).order_by("entered_at").values(
        "segment__key", "segment__name", "entered_at", "exited_at", "reasons"))
    listed = _listed(profile_ids)
    static = (list(StaticMember.objects.filter(listed).values("segment__key", "identifier_type", "value"))
              if listed is not None else [])
    return {"segment_memberships": memberships, "static_segment_entries": static}


def _listed(profile_ids: list[int]) -> Q | None:
    held = identifiers_held(profile_ids=profile_ids)
    if not held:
        return None
    match = Q()
    for kind in {k for k, _ in held}:
        match |= Q(identifier_type=kind, value__in=[v for k, v in held if k == kind])
    return match
