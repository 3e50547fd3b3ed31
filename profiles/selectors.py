"""Reads of profiles: lists and searches, one profile, lookup by identifier, the event timeline."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import BooleanField, Count, F, Prefetch, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

from profiles.messages import normalise_email, normalise_phone
from profiles.common.prepared import fetch_prepared
from profiles.models import Event, Identifier, IdentityRule, MergeRecord, Profile, Source

# Resolving a tombstone chain is bounded: merges always point at a live survivor, but a chain may
# exist briefly while a batch is being resolved.
MAX_MERGE_HOPS = 10


def identifier_normalise(kind: str, value: str) -> str:
    """The stored form of an identifier value: emails lower-cased, phones in E.164; others as given."""
    value = (value or "").strip()
    if kind == "email":
        return normalise_email(value)
    if kind == "phone":
        return normalise_phone(value, settings.PHONE_DEFAULT_REGION)
    return value


def _live_profiles() -> QuerySet[Profile]:
    return Profile.objects.filter(merged_into__isnull=True).prefetch_related(
        Prefetch("identifiers", queryset=Identifier.objects.order_by("type", "value"))
    )


def profile_search(*, query: str = "", partial: bool = False, identifier_type: str = "", identifier: str = "",
                   trait: str = "", trait_value: str | None = None) -> QuerySet[Profile]:
    """Live profiles, most recently seen first; identifiers come in one prefetch query per page.

    The one profile search of the product (the API and the screens). `query` matches a profile number, an
    identifier value whole (emails and phones in their normalised form, so "+1 (415) 555-0100" finds
    +14155550100) or any top-level trait value whole, case-insensitively. With `partial` (for readers who may
    see personal data) it also matches part of an identifier value, a name or an email: without it, masked
    values cannot be recovered letter by letter.
    """
    profiles = _live_profiles()
    query = (query or "").replace("\x00", "").strip()
    if query:
        values = {query, normalise_email(query), normalise_phone(query, settings.PHONE_DEFAULT_REGION)} - {""}
        # Any trait, whatever its key: jsonb_each_text has no ORM spelling, so a raw condition on
        # the outer table (which Django never re-aliases) keeps it in the same query.
        any_trait = RawSQL("EXISTS (SELECT 1 FROM jsonb_each_text(profiles_profile.traits) t "
                           "WHERE lower(t.value) = lower(%s))", [query], output_field=BooleanField())
        match = Q(id__in=Identifier.objects.filter(value__in=values).values("profile_id")) | Q(any_trait)
        if partial:
            match |= (Q(id__in=Identifier.objects.filter(value__icontains=query).values("profile_id"))
                      | Q(traits__name__icontains=query) | Q(traits__email__icontains=query))
        if query.isdigit() and len(query) < 19:  # a profile number; longer would overflow bigint
            match |= Q(id=int(query))
        profiles = profiles.filter(match)
    identifier = (identifier or "").replace("\x00", "").strip()
    if identifier_type and identifier:
        profiles = profiles.filter(id__in=Identifier.objects.filter(
            type=identifier_type, value=identifier_normalise(identifier_type, identifier)).values("profile_id"))
    elif identifier:
        profiles = profiles.filter(id__in=Identifier.objects.filter(value=identifier).values("profile_id"))
    if trait:
        if trait_value is None or trait_value == "":
            profiles = profiles.filter(traits__has_key=trait)
        else:
            # Traits arrive as JSON of any type; comparing as text lets ?trait_value=3 match 3 and "3".
            profiles = profiles.alias(_trait_text=KeyTextTransform(trait, "traits")).filter(_trait_text=trait_value)
    return profiles.order_by(F("last_seen").desc(nulls_last=True), "-id")


def profile_live_id(*, profile_id: int) -> int | None:
    """The id of the live profile an id stands for (itself, or the profile it was merged into); None when there
    is none. One query unless the profile was merged."""
    profile = Profile.objects.filter(pk=profile_id).only("id", "merged_into_id").first()
    hops = 0
    while profile is not None and profile.merged_into_id is not None and hops < MAX_MERGE_HOPS:
        profile = Profile.objects.filter(pk=profile.merged_into_id).only("id", "merged_into_id").first()
        hops += 1
    return None if profile is None or profile.merged_into_id is not None else profile.pk


def profile_get(*, profile_id: int) -> Profile | None:
    """The live profile for an id; a merged profile's id resolves to the profile it was merged into."""
    live_id = profile_live_id(profile_id=profile_id)
    return None if live_id is None else _live_profiles().get(pk=live_id)


# The identifier types the pipeline reads from every message; external id types are whatever senders name.
BUILTIN_IDENTIFIER_TYPES = frozenset({"user_id", "anonymous_id", "email", "phone"})


def identifier_type_known(*, identifier_type: str) -> bool:
    """Whether a lookup by this type can mean anything: a built-in type, one an identity rule names, or an
    external id type some profile holds (one probe of the (type, value) unique index)."""
    return (identifier_type in BUILTIN_IDENTIFIER_TYPES
            or IdentityRule.objects.filter(identifier_type=identifier_type).exists()
            or Identifier.objects.filter(type=identifier_type).exists())


def profile_lookup(*, identifier_type: str, value: str) -> Profile | None:
    """The live profile holding an identifier, after normalising email and phone values."""
    normalised = identifier_normalise(identifier_type, value)
    if not normalised:
        return None
    row = Identifier.objects.filter(type=identifier_type, value=normalised).values_list("profile_id", flat=True).first()
    return profile_get(profile_id=row) if row is not None else None


# The live profile holding identifier (type `%s`, normalised value `%s`), as a subquery of a caller's statement.
LIVE_PROFILE_BY_IDENTIFIER_SQL = (
    f"SELECT i.profile_id FROM {Identifier._meta.db_table} i JOIN {Profile._meta.db_table} p ON p.id = i.profile_id "
    "AND p.merged_into_id IS NULL WHERE i.type = %s AND i.value = %s LIMIT 1")
# The active source a write key `%s` authenticates: a statement of its own, or a scalar subquery of a caller's
# (the decision API folds it into its first statement).
WRITE_KEY_SOURCE_SQL = f"SELECT id FROM {Source._meta.db_table} WHERE write_key = %s AND is_active LIMIT 1"


def source_id_for_write_key(*, write_key: str) -> int | None:
    """The active source a write key authenticates (the collection and decision APIs)."""
    if not write_key:
        return None
    rows = fetch_prepared(WRITE_KEY_SOURCE_SQL, [write_key])
    return rows[0][0] if rows else None


def profile_merged_ids(*, profile: Profile) -> set[int]:
    """The profile and every tombstone merged into it, directly or through earlier survivors."""
    ids, frontier = {profile.pk}, {profile.pk}
    for _ in range(MAX_MERGE_HOPS):
        frontier = set(Profile.objects.filter(merged_into_id__in=frontier).values_list("id", flat=True)) - ids
        if not frontier:
            break
        ids |= frontier
    return ids


def profile_merges(*, profile: Profile) -> QuerySet[MergeRecord]:
    """Every merge decision involving the profile or any profile merged into it, newest first."""
    absorbed = profile_merged_ids(profile=profile)
    return (MergeRecord.objects.filter(Q(into_profile_id__in=absorbed) | Q(other_profile_id__in=absorbed))
            .order_by("-created_at", "-id"))


def profile_events(*, profile: Profile) -> QuerySet[Event]:
    """The profile's timeline, newest first (served by the event_profile_timeline index)."""
    return Event.objects.filter(profile=profile).order_by("-timestamp", "-id")


def profiles_live(*, profile_ids: list[int]) -> list[int]:
    """Of these profiles, the ones not merged away, in id order."""
    return list(Profile.objects.filter(id__in=profile_ids, merged_into__isnull=True).order_by("id")
                .values_list("id", flat=True))


def profiles_merged_outside(*, profile_ids: list[int]) -> set[int]:
    """The survivors, outside this set, that profiles of the set were merged into."""
    return set(Profile.objects.filter(id__in=profile_ids, merged_into__isnull=False)
               .exclude(merged_into_id__in=profile_ids).values_list("merged_into_id", flat=True))


def identifiers_held(*, profile_ids: list[int]) -> list[tuple[str, str]]:
    """Every (type, value) these profiles hold."""
    return list(Identifier.objects.filter(profile_id__in=profile_ids).values_list("type", "value"))


def identifiers_addressing(*, profile_ids: list[int]) -> dict[int, tuple[str, str]]:
    """One identifier per live profile that a collected message can address it by: its user id, else its
    first anonymous id."""
    held = (Identifier.objects.filter(profile_id__in=profile_ids, profile__merged_into__isnull=True,
                                      type__in=("user_id", "anonymous_id")).order_by("-type", "first_seen", "id"))
    address: dict[int, tuple[str, str]] = {}
    for pid, kind, value in held.values_list("profile_id", "type", "value"):
        address.setdefault(pid, (kind, value))
    return address


def source_id_named(*, name: str) -> int | None:
    return Source.objects.filter(name=name).values_list("id", flat=True).first()


def event_names_seen(*, days: int = 30, limit: int = 200) -> list[str]:
    """Track event names of the last `days`, most frequent first (for pickers); cached for ten minutes, as the
    count reads every recent event."""
    def read() -> list[str]:
        since = timezone.now() - timedelta(days=days)
        return list(Event.objects.filter(type="track", timestamp__gte=since).values("event")
                    .annotate(n=Count("id")).order_by("-n", "event").values_list("event", flat=True)[:limit])
    return cache.get_or_set(f"profiles:event-names:{days}:{limit}", read, 600)


def trait_keys_seen(*, computed: bool = False, sample: int = 5000) -> list[str]:
    """Top-level trait (or computed trait) keys of the most recent profiles, sorted (for pickers)."""
    column = "computed" if computed else "traits"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT jsonb_object_keys({column}) AS k FROM (SELECT {column} FROM profiles_profile "
                       "WHERE merged_into_id IS NULL ORDER BY id DESC LIMIT %s) s ORDER BY k", [sample])
        return [row[0] for row in cursor.fetchall()]
