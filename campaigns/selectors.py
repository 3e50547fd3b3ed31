"""Reads of campaigns: the live snapshot decisions work from (cached in the process, invalidated across processes
by a version in Redis, else PostgreSQL), a person's exposures for caps and stickiness, and lists for the API."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
from django.db import connection, transaction
from django.db.models import Count, F, QuerySet

from campaigns import rules, stats
from campaigns.rules import HOLDOUT
from campaigns.models import Campaign, Exposure, Placement, ProgrammeSettings, TriggeredSend
from campaigns.services.exposures import VERSION_KEY, ExposureRecord, redis
from campaigns.stats import Arm
from consent.models import Purpose
from consent.selectors import PurposeContextRule, consent_allowed_sql, purpose_context_rules
from profiles.common.fast_redis import pipelined
from profiles.models import Identifier, Profile
from profiles.selectors import LIVE_PROFILE_BY_IDENTIFIER_SQL, WRITE_KEY_SOURCE_SQL, identifier_normalise
from segments.models import SegmentMembership
from segments.selectors import segment_ids_by_key

logger = logging.getLogger(__name__)
SNAPSHOT_MAX_AGE_S = 60.0
# How old the version a decision starts from may be (one GET per process and second at most): a decision that
# shows content has it checked again by the script that queues its exposure.
VERSION_TTL_S = 1.0


@dataclass(frozen=True)
class LivePlacement:
    id: int
    key: str
    channel: str
    default_content: dict


@dataclass(frozen=True)
class LiveCampaign:
    id: int
    key: str
    priority: int
    created_at: datetime
    starts_at: datetime | None
    ends_at: datetime | None
    targeting: object | None
    purpose: str
    caps: tuple[rules.Cap, ...]
    variants: tuple[rules.Variant, ...]
    control_share: float
    allocation: str
    exclusive_with: frozenset[int]

    def running(self, now: datetime) -> bool:
        return (self.starts_at is None or self.starts_at <= now) and (self.ends_at is None or now < self.ends_at)


@dataclass(frozen=True)
class LiveTrigger:
    campaign: LiveCampaign
    trigger: rules.Trigger
    placement: LivePlacement


@dataclass(frozen=True)
class Snapshot:
    version: object
    placements: dict[str, LivePlacement]
    # Per placement id: its active campaigns, highest priority first, then the oldest.
    campaigns: dict[int, list[LiveCampaign]] = field(default_factory=dict)
    holdout_share: float = 0.0
    channel_caps: dict[str, tuple[rules.Cap, ...]] = field(default_factory=dict)
    # What targeting compiles against, read with the campaigns: segment ids by key (a segment created later can
    # only be named by a campaign saved later, which reloads this), and each purpose's consent SQL.
    segment_ids: dict[str, int] = field(default_factory=dict)
    # Per segment id: the running campaigns that act when someone enters it, each with its trigger and placement.
    triggers: dict[int, list[LiveTrigger]] = field(default_factory=dict)
    loaded_at: float = 0.0
    _consent: dict = field(default_factory=dict)
    # Compiled targeting statements, reused while this snapshot lasts (segments.selectors.targeting_matches).
    targeting_statements: dict = field(default_factory=dict)
    # Every consent purpose, with what reading a request's context for it needs.
    purposes: dict[str, PurposeContextRule] = field(default_factory=dict)
    # The ids of every active campaign, triggered ones included (what exclusivity looks at).
    active_ids: frozenset[int] = frozenset()

    def consent_sql(self, purpose: str, alias: str) -> tuple[str, list]:
        key = (purpose, alias)
        if key not in self._consent:
            try:
                self._consent[key] = consent_allowed_sql(purpose=purpose, profile_alias=alias)
            except Purpose.DoesNotExist:
                # A purpose deleted since this snapshot loaded: nobody consents to it (failing closed).
                self._consent[key] = ("FALSE", [])
        return self._consent[key]


_local = threading.local()


def snapshot_invalidate() -> None:
    """Every process reloads its snapshot at its next decision, once the current transaction commits. The version
    lives in Redis; without Redis, in PostgreSQL (moved in the caller's transaction), where every process sees it."""
    client = redis()
    if client is not None:
        transaction.on_commit(lambda: client.incr(VERSION_KEY))
        return
    ProgrammeSettings.objects.get_or_create(pk=1)
    ProgrammeSettings.objects.filter(pk=1).update(snapshot_version=F("snapshot_version") + 1)


def snapshot_forget() -> None:
    """Drops this thread's snapshot, so its next decision reads the campaigns as its own open transaction sees them
    (the shared version moves only once that transaction commits)."""
    _local.snapshot = None


_UNREAD = object()


def _version_local() -> int:
    """The version without Redis: one small query."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT snapshot_version FROM {ProgrammeSettings._meta.db_table} WHERE id = 1")
        row = cursor.fetchone()
    return row[0] if row else 0


def recent_version() -> str:
    """The campaigns' version as this thread read it at most VERSION_TTL_S ago, from Redis; without Redis, from
    PostgreSQL, every time (nothing checks it later). When Redis does not answer, the version this thread last
    read (its campaigns as they were)."""
    client = redis()
    if client is None:
        return str(_version_local())
    clock = time.monotonic()
    if clock - getattr(_local, "version_at", -VERSION_TTL_S) < VERSION_TTL_S:
        return _local.version
    try:
        [version] = pipelined(client, [("GET", VERSION_KEY)])
    except Exception as exc:  # noqa: BLE001 - a decision goes on without the shared cache
        logger.warning("campaign version unreadable (%s)", type(exc).__name__)
        return getattr(_local, "version", "")
    version_seen(version.decode() if version is not None else "")
    return _local.version


def version_seen(version: str) -> None:
    """A version read elsewhere (the queue's answer): the latest this thread knows."""
    _local.version, _local.version_at = version, time.monotonic()


def snapshot(*, version=_UNREAD) -> Snapshot:
    """The placements and active campaigns as of the shared version (read here unless the caller has): a reload
    only after a change."""
    if version is _UNREAD:
        # Straight from Redis when there is one (one GET; Django's cache layer costs as much again), else from
        # PostgreSQL.
        client = redis()
        version = client.get(VERSION_KEY) if client is not None else _version_local()
        version = version.decode() if isinstance(version, bytes) else ("" if version is None else str(version))
    current: Snapshot | None = getattr(_local, "snapshot", None)
    # Reloaded after a change, and at least every SNAPSHOT_MAX_AGE_S for what changes elsewhere (a purpose's
    # defaults, a deleted segment).
    if current is not None and current.version == version and time.monotonic() - current.loaded_at < (
            SNAPSHOT_MAX_AGE_S):
        return current
    _local.snapshot = loaded = _load(version)
    return loaded


def _load(version) -> Snapshot:
    placements = {p.key: LivePlacement(p.id, p.key, p.channel, p.default_content) for p in Placement.objects.all()}
    channels = {p.id: p.channel for p in placements.values()}
    by_placement: dict[int, list[LiveCampaign]] = {}
    active = (Campaign.objects.filter(status=Campaign.Status.ACTIVE).prefetch_related("placements", "exclusive_with")
              .order_by("-priority", "created_at", "id"))
    segment_ids = segment_ids_by_key()
    triggers: dict[int, list[LiveTrigger]] = {}
    active_ids = set()
    for campaign in active:
        active_ids.add(campaign.id)
        try:
            targeting = rules.parse_targeting(campaign.targeting)
            variants = rules.parse_variants(campaign.variants)
            caps = rules.parse_caps(campaign.caps)
            trigger = rules.parse_trigger(campaign.trigger)
        except rules.DefinitionError:
            continue  # refused on save; a definition that no longer parses (a rule change) is skipped, not fatal
        for placement in campaign.placements.all():
            purpose = campaign.purpose or rules.CHANNEL_PURPOSES[channels[placement.id]]
            live = LiveCampaign(
                campaign.id, campaign.key, campaign.priority, campaign.created_at, campaign.starts_at,
                campaign.ends_at, targeting, purpose, caps, variants, campaign.control_share, campaign.allocation,
                frozenset(c.id for c in campaign.exclusive_with.all()))
            if trigger is None:
                by_placement.setdefault(placement.id, []).append(live)
            elif placement.key == trigger.placement and trigger.segment in segment_ids:
                # A triggered campaign acts on entries only: it never answers a decision.
                triggers.setdefault(segment_ids[trigger.segment], []).append(
                    LiveTrigger(live, trigger, placements[placement.key]))
    settings_row = ProgrammeSettings.objects.filter(pk=1).first()
    holdout = settings_row.holdout_share if settings_row else 0.0
    channel_caps = rules.parse_channel_caps(settings_row.channel_caps) if settings_row else {}
    return Snapshot(version, placements, by_placement, holdout, channel_caps, segment_ids, triggers,
                    time.monotonic(), purposes=purpose_context_rules(), active_ids=frozenset(active_ids))


@dataclass
class Seen:
    """A person's exposures so far, recorded and pending: per campaign its first variant and its times, per
    channel its times (for caps over every campaign), and whether they were held out of every campaign before
    (True), shown a campaign's content or control (False), or neither (None)."""

    first_variant: dict[int, str]
    campaign_times: dict[int, list[datetime]]
    channel_times: dict[str, list[datetime]]
    held_out: bool | None = None

    def add(self, *, campaign_id: int | None, variant: str, channel: str, shown: datetime) -> None:
        if campaign_id is not None:
            self.first_variant.setdefault(campaign_id, variant)
            self.campaign_times.setdefault(campaign_id, []).append(shown)
        self.channel_times.setdefault(channel, []).append(shown)
        self._assigned(campaign_id, variant)

    def _assigned(self, campaign_id: int | None, variant: str) -> None:
        if campaign_id is None and variant == HOLDOUT:
            self.held_out = True
        elif campaign_id is not None and self.held_out is None:
            self.held_out = False

    def count(self, times: list[datetime], cap: rules.Cap, now: datetime) -> int:
        return len(times) if cap.window is None else sum(1 for t in times if t > now - cap.window)


def _seen_from(rows) -> Seen:
    """Seen from rows of (campaign id, channel, first variant, times within a week, count, oldest time)."""
    seen = Seen({}, {}, {})
    for campaign_id, channel, variant, recent, total, oldest in rows:
        if not total:
            continue  # the outer row of someone never exposed
        recent = list(recent or [])
        # Older than a week: only lifetime caps look at them, and only their number.
        times = recent + [oldest - timedelta(weeks=52)] * (total - len(recent))
        if campaign_id is not None:
            seen.first_variant[campaign_id] = variant
            seen.campaign_times.setdefault(campaign_id, []).extend(times)
        seen.channel_times.setdefault(channel, []).extend(times)
        seen._assigned(campaign_id, variant)
    return seen


def people_seen(*, profile_ids: list[int], now: datetime, claimed: dict[int, int | None],
                channel_of: dict[int, str]) -> dict[int, Seen]:
    """What many people have been shown, by profile, in one query (triggered actions decide in batches): their
    recorded exposures, and the triggered sends other senders hold in flight and have not yet recorded (what
    keeps two senders within one person's caps). The `claimed` sends (the caller's own, by id with their person;
    perhaps retries whose exposure was recorded on their first try) are left out; `channel_of` gives each
    triggered campaign's channel. Of two senders deciding sends for one person at once, the older send goes
    first: another sender's send in flight counts only if it is older than the caller's first for that person,
    so they never skip each other."""
    sends, exposures = TriggeredSend._meta.db_table, Exposure._meta.db_table
    people = "{" + ",".join(str(int(p)) for p in set(profile_ids)) + "}"
    own = "{" + ",".join(str(int(i)) for i in claimed) + "}"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT e.profile_id, e.campaign_id, e.channel, (array_agg(e.variant ORDER BY e.shown_at))[1], "
            "array_agg(e.shown_at) FILTER (WHERE e.shown_at > %s), count(*), min(e.shown_at), FALSE "
            f"FROM {exposures} e WHERE e.profile_id = ANY(%s::bigint[]) AND NOT e.decision_id = ANY("
            f"ARRAY(SELECT send_id FROM {sends} WHERE id = ANY(%s::bigint[]))) GROUP BY 1, 2, 3 "
            "UNION ALL SELECT s.profile_id, s.campaign_id, NULL, s.variant, ARRAY[s.claimed_at], s.id, s.claimed_at, "
            "TRUE "
            f"FROM {sends} s WHERE s.status = 'sending' AND s.profile_id = ANY(%s::bigint[]) "
            f"AND NOT s.id = ANY(%s::bigint[]) AND NOT EXISTS (SELECT 1 FROM {exposures} x "
            "WHERE x.decision_id = s.send_id)",
            [now - timedelta(weeks=1), people, own, people, own])
        first_claimed: dict[int, int] = {}
        for send_id, profile_id in claimed.items():
            first_claimed[profile_id] = min(send_id, first_claimed.get(profile_id, send_id))
        rows: dict[int, list] = {}
        in_flight: list[tuple] = []
        for profile_id, *rest, flying in cursor.fetchall():
            if flying:
                in_flight.append((profile_id, *rest))
            else:
                rows.setdefault(profile_id, []).append(rest)
    seen = {profile_id: _seen_from(rows.get(profile_id, [])) for profile_id in profile_ids}
    for profile_id, campaign_id, _, variant, _, send_id, claimed_at in in_flight:
        if profile_id in seen and campaign_id in channel_of and send_id < first_claimed.get(profile_id, send_id + 1):
            seen[profile_id].add(campaign_id=campaign_id, variant=variant, channel=channel_of[campaign_id],
                                 shown=claimed_at)
    return seen


# Exposures recorded this recently are read with their decision ids: a pending set may still hold them (for a few
# seconds after recording), and they must not count twice.
RECENTLY_RECORDED = timedelta(minutes=10)
# The person a decision names: the live profile holding the user id sent, else the one holding the anonymous id
# sent unless that one is someone else's (a profile with a user id of its own: another person who used the same
# device), for a visitor logging in sends both before any event has linked them. One row, NULL for a first visit.
_WHO_SQL = (
    f"SELECT coalesce(({LIVE_PROFILE_BY_IDENTIFIER_SQL}), (SELECT i.profile_id FROM {Identifier._meta.db_table} i "
    f"JOIN {Profile._meta.db_table} p ON p.id = i.profile_id AND p.merged_into_id IS NULL "
    "WHERE i.type = %s AND i.value = %s AND (%s OR NOT EXISTS (SELECT 1 FROM "
    f"{Identifier._meta.db_table} u WHERE u.profile_id = i.profile_id AND u.type = 'user_id')) LIMIT 1)) "
    "AS profile_id")
_FIRST_USER_ID_SQL = (f"SELECT i.value FROM {Identifier._meta.db_table} i WHERE i.profile_id = "
                      "(SELECT profile_id FROM who) AND i.type = 'user_id' ORDER BY i.first_seen, i.id LIMIT 1")


def person_seen_statement(*, user_id: str, anonymous_id: str, subjects: list[str], now: datetime,
                          write_key: str = "", targeting: tuple[str, list] | None = None) -> tuple[str, list]:
    """The one statement a decision reads PostgreSQL with: whether `write_key` authenticates an active source, the
    person's live profile id (by the ids sent), the first user id their profile holds (when none was sent: what
    they are allocated by), the labels of the `targeting` that hold for them (a subquery of
    segments.selectors.targeting_statement, which reads the person from the CTE `who` defined here), and their
    recorded exposures, found by profile and by the ids the request sent (which find a first visit's). Lifetime
    caps need every exposure, so it aggregates: per campaign and channel, the first variant, the times within the
    longest window, and how many there are in all. Read by person_seen_read."""
    held_sql, held_params = ((f"(SELECT array_agg(t.label) FROM ({targeting[0]}) t(label, profile_id))", targeting[1])
                             if targeting is not None else ("NULL::int[]", []))
    first = _identifier_sent(user_id=user_id, anonymous_id=anonymous_id)
    # Without a user id, the second lookup repeats the first; it runs only when the first finds nobody.
    second = ("anonymous_id", identifier_normalise("anonymous_id", anonymous_id)) if anonymous_id else first
    second = (*second, not user_id)  # whether a profile with a user id of its own may answer to it
    user_sql = "NULL::text" if user_id else f"({_FIRST_USER_ID_SQL})"
    return (
        f"WITH who AS ({_WHO_SQL}) "
        f"SELECT ({WRITE_KEY_SOURCE_SQL}) IS NOT NULL, (SELECT profile_id FROM who), {user_sql}, {held_sql}, "
        "e.campaign_id, e.channel, (array_agg(e.variant ORDER BY e.shown_at))[1], "
        "array_agg(e.shown_at) FILTER (WHERE e.shown_at > %s), count(e.id), min(e.shown_at), "
        "array_agg(e.decision_id::text) FILTER (WHERE e.shown_at > %s) "
        f"FROM (SELECT 1) one LEFT JOIN {Exposure._meta.db_table} e ON e.profile_id = (SELECT profile_id FROM who) "
        "OR e.subject = ANY(%s::text[]) GROUP BY e.campaign_id, e.channel",
        [*first, *second, write_key, *held_params, now - timedelta(weeks=1), now - RECENTLY_RECORDED, subjects])


def _identifier_sent(*, user_id: str, anonymous_id: str) -> tuple[str, str]:
    """The identifier a decision request names the person by, normalised as identifiers are stored."""
    kind, value = ("user_id", user_id) if user_id else ("anonymous_id", anonymous_id)
    return kind, identifier_normalise(kind, value)


@dataclass(frozen=True)
class PersonRead:
    authenticated: bool  # whether the write key sent authenticates an active source
    profile_id: int | None
    profile_user_id: str | None  # the first user id their profile holds, when the request sent none
    held: set[int]  # the labels of the targeting that holds for them
    seen: Seen


def person_seen_read(rows: list[tuple], pending: list[ExposureRecord]) -> PersonRead:
    """person_seen_statement's rows, with the person's pending exposures (the queue's answer) that PostgreSQL did
    not yet hold when it was read."""
    first = rows[0] if rows else (False, None, None, None)
    seen = _seen_from([row[4:10] for row in rows])
    recorded = {decision_id for row in rows for decision_id in (row[10] or ())}
    for record in pending:
        if record.decision_id in recorded:
            continue
        seen.add(campaign_id=record.campaign_id, variant=record.variant, channel=record.channel,
                 shown=datetime.fromisoformat(record.shown_at))
    return PersonRead(bool(first[0]), first[1], first[2], set(first[3] or ()), seen)


@dataclass(frozen=True)
class ClaimedSend:
    id: int
    send_id: object
    campaign_id: int
    segment_id: int
    entered_at: datetime
    attempts: int
    variant: str
    # The person now: the live profile the entry's profile is or was merged into (None once erased).
    profile_id: int | None
    traits: dict
    user_id: str | None
    anonymous_id: str | None
    email: str | None
    phone: str | None
    # Whether the person is still in the segment (an open membership, theirs or their survivor's).
    member: bool


def triggered_sends_claimed(*, send_ids: list[int]) -> list[ClaimedSend]:
    """Claimed triggered sends with what deciding them needs, in one query."""
    def first(kind: str) -> str:
        return (f"(SELECT i.value FROM {Identifier._meta.db_table} i WHERE i.profile_id = p.id AND i.type = '{kind}' "
                "ORDER BY i.first_seen, i.id LIMIT 1)")
    profiles = Profile._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.id, s.send_id, s.campaign_id, s.segment_id, s.entered_at, s.attempts, s.variant, p.id, "
            f"p.traits, {first('user_id')}, {first('anonymous_id')}, {first('email')}, {first('phone')}, "
            f"EXISTS (SELECT 1 FROM {SegmentMembership._meta.db_table} m WHERE m.segment_id = s.segment_id "
            "AND m.profile_id = p.id AND m.exited_at IS NULL) "
            f"FROM {TriggeredSend._meta.db_table} s LEFT JOIN {profiles} t ON t.id = s.profile_id "
            # Merges point a tombstone at its live survivor, so one hop is enough.
            f"LEFT JOIN {profiles} p ON p.id = coalesce(t.merged_into_id, t.id) AND p.merged_into_id IS NULL "
            "WHERE s.id = ANY(%s::bigint[]) ORDER BY s.id",
            ["{" + ",".join(str(int(i)) for i in send_ids) + "}"])
        # Django leaves jsonb as text on a raw cursor.
        return [ClaimedSend(*row[:8], orjson.loads(row[8]) if isinstance(row[8], str) else (row[8] or {}),
                            *row[9:13], bool(row[13])) for row in cursor.fetchall()]


def campaign_sends(*, campaign_id: int, limit: int = 20) -> tuple[dict[str, int], list[TriggeredSend]]:
    """A triggered campaign's sends by status, and the latest ones (the report)."""
    sends = TriggeredSend.objects.filter(campaign_id=campaign_id)
    counts = dict(sends.order_by().values_list("status").annotate(n=Count("id")))
    return counts, list(sends.order_by("-created_at", "-id")[:limit])


def placement_list() -> QuerySet[Placement]:
    return Placement.objects.order_by("key")


def campaign_list(*, status: str = "") -> QuerySet[Campaign]:
    campaigns = Campaign.objects.prefetch_related("placements", "exclusive_with")
    return campaigns.filter(status=status) if status else campaigns


def programme_settings() -> ProgrammeSettings:
    return ProgrammeSettings.objects.get_or_create(pk=1)[0]


# Each person of a campaign once, in the arm of their first exposure, with how many exposures they had and whether
# any converted. A person is their profile, or the id a first visit sent. Someone who reached two arms (two
# devices allocated apart, then merged into one profile) counts in the first: arms never share a person.
_PEOPLE_BY_ARM = (
    "SELECT (array_agg(e.variant ORDER BY e.shown_at, e.id))[1] AS arm, count(*) AS exposures, "
    "bool_or(c.id IS NOT NULL) AS converted "
    f"FROM {Exposure._meta.db_table} e LEFT JOIN campaigns_conversion c ON c.exposure_id = e.id "
    "WHERE e.campaign_id = %s GROUP BY coalesce('p' || e.profile_id, e.subject)")


# Thompson sampling reads each variant's results so far; a few seconds old is as good, and spares a query per
# decision.
VARIANT_STATS_TTL_S = 10.0
_stats_cache: dict[int, tuple[float, dict[str, tuple[int, int]]]] = {}


def variant_stats(*, campaign_id: int) -> dict[str, tuple[int, int]]:
    """Per variant (control left out): people exposed and people who converted, at most VARIANT_STATS_TTL_S old."""
    cached = _stats_cache.get(campaign_id)
    clock = time.monotonic()
    if cached is not None and clock - cached[0] < VARIANT_STATS_TTL_S:
        return cached[1]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT arm, count(*), count(*) FILTER (WHERE converted) FROM ({_PEOPLE_BY_ARM}) people "
                       "WHERE arm <> 'control' GROUP BY arm", [campaign_id])
        stats = {variant: (exposed, converted) for variant, exposed, converted in cursor.fetchall()}
    _stats_cache[campaign_id] = (clock, stats)
    return stats


def campaign_arms(*, campaign_id: int) -> list[Arm]:
    """Per variant and control: people exposed, exposures, and people who converted, in one query
    (_PEOPLE_BY_ARM says who counts where)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT arm, count(*), sum(exposures), count(*) FILTER (WHERE converted) "
                       f"FROM ({_PEOPLE_BY_ARM}) people GROUP BY arm ORDER BY arm", [campaign_id])
        return [Arm(variant, exposed, int(exposures), converted)
                for variant, exposed, exposures, converted in cursor.fetchall()]


def campaign_timeline(*, campaign_id: int, days: int = 30) -> list[dict]:
    """Exposures and conversions per day and variant over the last `days` days (the report's chart)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (e.shown_at AT TIME ZONE 'UTC')::date AS day, e.variant, count(*), count(c.id) "
            f"FROM {Exposure._meta.db_table} e LEFT JOIN campaigns_conversion c ON c.exposure_id = e.id "
            "WHERE e.campaign_id = %s AND e.shown_at >= now() - make_interval(days => %s) "
            "GROUP BY 1, 2 ORDER BY 1, 2", [campaign_id, days])
        return [{"day": day.isoformat(), "variant": variant, "exposures": exposures, "conversions": conversions}
                for day, variant, exposures, conversions in cursor.fetchall()]


def campaign_recent_exposures(*, campaign_id: int, limit: int = 20) -> list[Exposure]:
    """The latest recorded exposures of a campaign, newest first, with whether each converted (the report)."""
    return list(Exposure.objects.filter(campaign_id=campaign_id).select_related("placement", "conversion")
                .order_by("-shown_at", "-id")[:limit])


# The minimum detectable effect the sample-size calculator uses unless asked otherwise: one percentage point.
DEFAULT_MDE = 0.01


def campaign_results(*, campaign: Campaign, mde: float = DEFAULT_MDE) -> dict:
    """The experiment's report: each variant and control with its counts, rate, uplift over the baseline (control
    when it has exposures, else the first variant) with its 95% interval, p-value and probability of being best;
    the people per arm a minimum detectable effect of `mde` needs; and a verdict."""
    arms = {arm.key: arm for arm in campaign_arms(campaign_id=campaign.pk)}
    order = ["control", *[v["key"] for v in campaign.variants if isinstance(v, dict)]]
    present = [arms.get(key, Arm(key, 0, 0, 0)) for key in order]
    control = present[0]
    baseline = control if control.exposed else (present[1] if len(present) > 1 else control)
    others = [a for a in present if a.key != baseline.key and (a.key != "control" or a.exposed)]
    comparisons = {a.key: stats.compare(a, baseline) for a in others}
    best = stats.probability_best([a for a in present if a.exposed])
    needed = stats.sample_size(baseline_rate=baseline.rate, effect=mde) if baseline.rate else None

    def row(arm: Arm) -> dict:
        c = comparisons.get(arm.key)
        return {"variant": arm.key, "exposed": arm.exposed, "exposures": arm.exposures, "conversions": arm.converted,
                "conversion_rate": arm.rate, "uplift": c.uplift if c else None,
                "uplift_relative": c.uplift_relative if c else None,
                "uplift_interval": list(c.interval) if c and c.interval else None,
                "p_value": c.p_value if c else None, "probability_best": best.get(arm.key)}

    return {"campaign": {"id": campaign.pk, "key": campaign.key}, "baseline": baseline.key,
            "variants": [row(a) for a in present if a.key != "control" or a.exposed or campaign.control_share],
            "sample_size": {"baseline_rate": baseline.rate, "minimum_detectable_effect": mde, "per_arm": needed},
            "verdict": stats.verdict(others, baseline, comparisons, best, needed=needed)}
