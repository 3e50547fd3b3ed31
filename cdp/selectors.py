"""Reads behind the web screens: dashboard aggregates, the profile list and its export, the profile 360 page.

Every dashboard number is one set-based aggregate over the tables the pipeline writes, so the screen
costs a fixed handful of queries however much data there is.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import Count, F, FloatField, Min, Q, QuerySet
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Cast, TruncDate
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from consent import selectors as consent_selectors
from profiles import selectors as profiles_selectors
from profiles.models import Event, Identifier, MergeRecord, PendingEvent, Profile, Source

DASHBOARD_DAYS = 30
TIMELINE_PAGE_SIZE = 25
PROFILE_PAGE_SIZE = 25
COMPUTED_LABELS = {"recency_days": "Days since last seen", "frequency_orders": "Orders",
                   "monetary_value": "Lifetime value", "engagement_score": "Engagement score (0-100)"}


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


def _merges_per_day(since: datetime, until: datetime) -> dict[date, int]:
    """Merges by the day the person linked the identities: the timestamp of the event that caused each merge.

    MergeRecord.created_at is when the pipeline made the decision (the audit's time, kept as it is): a CRM file
    imported today, or events replayed after an outage, merge today people who linked their identities long
    ago. The event, found by id through its partitions' primary keys, dates the merge; a merge whose event
    is gone (purged by retention) keeps its decision time. A merge is never decided before its event arrived,
    so merges decided before the range cannot fall into it and are not read.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (COALESCE(e.timestamp, m.created_at) AT TIME ZONE %s)::date, count(*) "
            "FROM profiles_mergerecord m LEFT JOIN profiles_event e ON e.id = m.event_id "
            "WHERE m.outcome = %s AND m.created_at >= %s "
            "AND COALESCE(e.timestamp, m.created_at) >= %s AND COALESCE(e.timestamp, m.created_at) < %s "
            "GROUP BY 1",
            [timezone.get_current_timezone_name(), MergeRecord.Outcome.MERGED, since, since, until])
        return dict(cursor.fetchall())


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time()))


def dashboard_stats(*, start: date | None = None, end: date | None = None) -> dict:
    """Everything the dashboard shows, with per-day series from `start` to `end` (both included, dates in the
    server's time zone); by default the last DASHBOARD_DAYS days."""
    end = end or timezone.localdate()
    start = start or end - timedelta(days=DASHBOARD_DAYS - 1)
    day_list = [start + timedelta(days=offset) for offset in range((end - start).days + 1)]
    since, until = _midnight(start), _midnight(end) + timedelta(days=1)

    recent = Event.objects.filter(timestamp__gte=since, timestamp__lt=until)
    by_type: dict[str, dict[date, int]] = defaultdict(dict)
    for row in (recent.annotate(day=TruncDate("timestamp")).values("day", "type")
                .annotate(n=Count("id")).order_by()):
        by_type[row["type"]][row["day"]] = row["n"]
    events_series = {kind: [counts.get(day, 0) for day in day_list] for kind, counts in sorted(by_type.items())}

    # first_seen, not created_at: a profile created by a late import still counts on the day the person arrived.
    new_profiles = _per_day(
        Profile.objects.filter(merged_into__isnull=True, first_seen__gte=since, first_seen__lt=until)
        .annotate(day=TruncDate("first_seen")).values("day").annotate(n=Count("id")).order_by(), day_list)
    merges_by_day = _merges_per_day(since, until)
    merges = [merges_by_day.get(day, 0) for day in day_list]

    top_events = list(recent.filter(type="track").values("event").annotate(n=Count("id")).order_by("-n", "event")[:8])
    names = dict(Source.objects.values_list("id", "name"))
    per_source = sorted(((names.get(row["source_id"], f"source {row['source_id']}"), row["n"])
                         for row in recent.values("source_id").annotate(n=Count("id")).order_by()),
                        key=lambda item: (-item[1], item[0]))

    profiles = Profile.objects.filter(merged_into__isnull=True).aggregate(
        total=Count("id"), active=Count("id", filter=Q(last_seen__gte=since, last_seen__lt=until)))
    identified = (Identifier.objects.filter(type__in=("user_id", "email"), profile__merged_into__isnull=True)
                  .values("profile_id").distinct().count())
    merge_totals = MergeRecord.objects.aggregate(
        merged=Count("id", filter=Q(outcome=MergeRecord.Outcome.MERGED)),
        refused=Count("id", filter=Q(outcome=MergeRecord.Outcome.REFUSED)))
    events_total = sum(sum(series) for series in events_series.values())

    return {
        "start": start, "end": end,
        "days": [day.isoformat() for day in day_list],
        "events_by_type": events_series,
        "events_total": events_total,
        # The same numbers as rows, for the tables beside the charts.
        "events_table": [(day, [events_series[kind][i] for kind in events_series],
                          sum(events_series[kind][i] for kind in events_series)) for i, day in enumerate(day_list)],
        "new_profiles": new_profiles,
        "merges": merges,
        "merges_in_range": sum(merges),
        "per_day_table": list(zip(day_list, new_profiles, merges)),
        "top_events": top_events,
        "events_per_source": [{"source": name, "n": n, "share": n / events_total if events_total else 0}
                              for name, n in per_source],
        "profiles_total": profiles["total"],
        "profiles_active": profiles["active"],
        "profiles_identified": identified,
        "merges_total": merge_totals["merged"],
        "merges_refused": merge_totals["refused"],
        "lag": ingestion_lag(),
    }


def _lifetime_value():
    return Cast(KeyTransform("monetary_value", "computed"), FloatField())


PROFILE_ORDER = {
    "last_seen": lambda desc: [F("last_seen").desc(nulls_last=True) if desc else F("last_seen").asc(nulls_last=True)],
    "events": lambda desc: [F("event_count").desc() if desc else F("event_count").asc()],
    "value": lambda desc: [_lifetime_value().desc(nulls_last=True) if desc else _lifetime_value().asc(nulls_last=True)],
    "created": lambda desc: [F("created_at").desc() if desc else F("created_at").asc()],
}


def profile_list(*, query: str = "", partial: bool = False, trait: str = "", trait_value: str = "",
                 purpose: str = "", allowed: bool = True, seen_from: date | None = None,
                 seen_to: date | None = None, sort: str = "-last_seen") -> QuerySet[Profile]:
    """The marketer's profile list: the profile search (profiles.selectors.profile_search), narrowed by a
    trait, a purpose's consent (consent.selectors, so the rule is the one every use enforces) and the last seen
    dates, in the order asked for ("-" first for descending; ties newest profile first)."""
    profiles = profiles_selectors.profile_search(query=query, partial=partial, trait=trait,
                                                 trait_value=trait_value or None)
    if seen_from:
        profiles = profiles.filter(last_seen__date__gte=seen_from)
    if seen_to:
        profiles = profiles.filter(last_seen__date__lte=seen_to)
    if purpose:
        rule = consent_selectors.consent_allowed_q(purpose=purpose)
        profiles = profiles.filter(rule if allowed else ~rule)
    key = sort.lstrip("-")
    if key not in PROFILE_ORDER:
        raise ValueError(f"unknown sort {sort!r}")
    return profiles.order_by(*PROFILE_ORDER[key](sort.startswith("-")), "-id")


def profile_list_page(*, page: int | str = 1, **filters) -> Page:
    """A page of profile_list for the screen."""
    profiles = profile_list(**filters).only("id", "traits", "computed", "event_count", "first_seen", "last_seen",
                                            "created_at")
    return Paginator(profiles, PROFILE_PAGE_SIZE).get_page(page)


# Rows per round trip of the CSV export: one consent query and one identifier query per chunk.
EXPORT_CHUNK = 1000


def profile_export_rows(**filters) -> Iterator[tuple[Profile, dict[str, list[str]]]]:
    """Every profile of the list, in its order, with its identifiers by type, leaving out each profile that may
    not leave the platform (consent.selectors.sharing_allowed). Reads EXPORT_CHUNK profiles at a time."""
    profiles = profile_list(**filters).only("id", "traits", "computed", "event_count", "first_seen", "last_seen",
                                            "created_at")
    chunk: list[Profile] = []
    for profile in profiles.iterator(chunk_size=EXPORT_CHUNK):
        chunk.append(profile)
        if len(chunk) == EXPORT_CHUNK:
            yield from _export_chunk(chunk)
            chunk = []
    if chunk:
        yield from _export_chunk(chunk)


def _export_chunk(chunk: list[Profile]):
    shareable = consent_selectors.sharing_allowed(profile_ids=[p.pk for p in chunk])
    for profile in chunk:
        if profile.pk in shareable:
            grouped: dict[str, list[str]] = defaultdict(list)
            for identifier in profile.identifiers.all():
                grouped[identifier.type].append(identifier.value)
            yield profile, grouped


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
