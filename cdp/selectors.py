"""Reads behind the web screens: dashboard aggregates, the profile list and the profile 360 page.

Every dashboard number is one set-based aggregate over the tables the pipeline writes, so the screen
costs a fixed handful of queries however much data there is.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.core.paginator import Page, Paginator
from django.db.models import Count, Min, Q
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from profiles import selectors as profiles_selectors
from profiles.models import Event, Identifier, MergeRecord, PendingEvent, Profile

DASHBOARD_DAYS = 30
TIMELINE_PAGE_SIZE = 25
PROFILE_PAGE_SIZE = 25
COMPUTED_LABELS = {"recency_days": "Days since last seen", "frequency_orders": "Orders",
                   "monetary_value": "Lifetime value", "engagement_score": "Engagement score (0-100)"}


def _days(today: date, days: int) -> list[date]:
    return [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def _per_day(rows, days: list[date]) -> list[int]:
    counts = {row["day"]: row["n"] for row in rows}
    return [counts.get(day, 0) for day in days]


@dataclass
class IngestionLag:
    pending: int
    oldest_received_at: datetime | None

    @property
    def oldest_age_seconds(self) -> int:
        if self.oldest_received_at is None:
            return 0
        return max(0, int((timezone.now() - self.oldest_received_at).total_seconds()))


def ingestion_lag() -> IngestionLag:
    """Events accepted but not yet resolved, and how long the oldest of them has waited."""
    row = PendingEvent.objects.aggregate(n=Count("id"), oldest=Min("received_at"))
    return IngestionLag(pending=row["n"], oldest_received_at=row["oldest"])


def dashboard_stats(*, days: int = DASHBOARD_DAYS) -> dict:
    """Everything the dashboard shows, with per-day series over the last `days` days (UTC dates)."""
    now = timezone.now()
    day_list = _days(timezone.localdate(now), days)
    since = timezone.make_aware(datetime.combine(day_list[0], datetime.min.time()))

    recent = Event.objects.filter(timestamp__gte=since)
    by_type: dict[str, dict[date, int]] = defaultdict(dict)
    for row in (recent.annotate(day=TruncDate("timestamp")).values("day", "type")
                .annotate(n=Count("id")).order_by()):
        by_type[row["type"]][row["day"]] = row["n"]
    events_series = {kind: [counts.get(day, 0) for day in day_list] for kind, counts in sorted(by_type.items())}

    # first_seen, not created_at: a profile created by a late import still counts on the day the person arrived.
    new_profiles = _per_day(
        Profile.objects.filter(merged_into__isnull=True, first_seen__gte=since)
        .annotate(day=TruncDate("first_seen")).values("day").annotate(n=Count("id")).order_by(), day_list)
    merges = _per_day(
        MergeRecord.objects.filter(outcome=MergeRecord.Outcome.MERGED, created_at__gte=since)
        .annotate(day=TruncDate("created_at")).values("day").annotate(n=Count("id")).order_by(), day_list)

    top_events = list(recent.filter(type="track").values("event").annotate(n=Count("id")).order_by("-n", "event")[:8])

    profiles = Profile.objects.filter(merged_into__isnull=True).aggregate(
        total=Count("id"), active_30d=Count("id", filter=Q(last_seen__gte=since)))
    identified = (Identifier.objects.filter(type__in=("user_id", "email"), profile__merged_into__isnull=True)
                  .values("profile_id").distinct().count())
    merge_totals = MergeRecord.objects.aggregate(
        merged=Count("id", filter=Q(outcome=MergeRecord.Outcome.MERGED)),
        refused=Count("id", filter=Q(outcome=MergeRecord.Outcome.REFUSED)))

    return {
        "days": [day.isoformat() for day in day_list],
        "events_by_type": events_series,
        "events_total": sum(sum(series) for series in events_series.values()),
        "new_profiles": new_profiles,
        "merges": merges,
        "top_events": top_events,
        "profiles_total": profiles["total"],
        "profiles_active": profiles["active_30d"],
        "profiles_identified": identified,
        "merges_total": merge_totals["merged"],
        "merges_refused": merge_totals["refused"],
        "lag": ingestion_lag(),
    }


def profile_list_page(*, query: str = "", partial: bool = False, page: int | str = 1) -> Page:
    """A page of the profile search (profiles.selectors.profile_search) for the screen."""
    profiles = profiles_selectors.profile_search(query=query, partial=partial).only(
        "id", "traits", "computed", "event_count", "first_seen", "last_seen")
    return Paginator(profiles, PROFILE_PAGE_SIZE).get_page(page)


def profile_detail(*, profile: Profile) -> dict:
    """Identifiers grouped by type, traits and computed traits sorted by name, and the merge history."""
    grouped: dict[str, list[Identifier]] = defaultdict(list)
    for identifier in profile.identifiers.order_by("type", "first_seen", "id"):
        grouped[identifier.type].append(identifier)
    merges = list(profiles_selectors.profile_merges(profile=profile)[:100])
    return {
        "identifiers": dict(sorted(grouped.items())),
        "traits": sorted(profile.traits.items()),
        "computed": [(key, COMPUTED_LABELS.get(key, key), profile.computed[key])
                     for key in sorted(profile.computed) if key != "computed_at"],
        "computed_at": parse_datetime(str(profile.computed.get("computed_at") or "")),
        "merges": merges,
    }


def profile_timeline(*, profile_id: int, page: int | str = 1) -> Page:
    """The profile's events, newest first, a page at a time (served by the (profile, -timestamp, -id) index)."""
    events = (profiles_selectors.profile_events(profile=profile_id).select_related("source")
              .only("id", "type", "event", "timestamp", "payload", "source__name"))
    return Paginator(events, TIMELINE_PAGE_SIZE).get_page(page)
