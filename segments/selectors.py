"""Reads of segments: which are due, previews of unsaved definitions, members, a person's segments with the
reasons, the size history; destinations and their deliveries."""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Max, Prefetch, Q, QuerySet
from django.utils import timezone

from consent.selectors import PERSONALIZATION, consent_allowed_sql
from profiles.common.prepared import fetch_prepared
from profiles.models import Profile
from segments import rules
from segments.compiler import DEFERRED_CONTEXT, ContextValue, compile_members, compile_realtime
from segments.models import (Delivery, Destination, ModelVersion, PredictiveModel, Segment, SegmentMembership,
                             SegmentSize)
from segments.recommender import LIST_MAX

PREVIEW_SAMPLE = 20


def _needs_sweep(definition: object) -> bool:
    """Whether a realtime segment's answer can change outside the pipeline: with the clock (windows, dates),
    through enrichment (computed traits) or through consent recorded by the API and the privacy screens."""
    try:
        reads = rules.reads(rules.parse(definition))
    except rules.DefinitionError:
        return True
    return reads.clock or reads.computed or reads.consent


def segments_due(*, now: datetime, realtime_every: int, batch_every: int) -> list[int]:
    """Realtime segments that need a sweep and whose last one is older than `realtime_every` seconds; batch
    segments, realtime segments the pipeline alone keeps current, and static segments (a person who gains an
    identifier on the list joins), whose last recompute is older than `batch_every` (or that were never
    computed)."""
    last_point = {sid: at for sid, at in SegmentSize.objects.filter(segment__mode=Segment.Mode.REALTIME)
                  .values("segment_id").annotate(at=Max("at")).values_list("segment_id", "at")}
    due = []
    for sid, mode, definition, computed in Segment.objects.values_list("id", "mode", "definition",
                                                                      "last_computed_at"):
        if mode == Segment.Mode.REALTIME:
            every = realtime_every if _needs_sweep(definition) else batch_every
            swept = last_point.get(sid)
            if swept is None or swept <= now - timedelta(seconds=every):
                due.append(sid)
        elif computed is None or computed <= now - timedelta(seconds=batch_every):
            due.append(sid)
    return due


@dataclass(frozen=True)
class Preview:
    count: int
    sample: list[int]
    # Past PREVIEW_EXACT_UP_TO profiles, the count is estimated from a random sample of PREVIEW_SAMPLE_PROFILES,
    # with the half-width of its 95% interval.
    estimated: bool = False
    margin: int = 0


# A preview answers while a marketer edits: exact up to this many profiles, estimated past it (on two cores, an
# exact count of a sequence condition over 10 million events takes seconds).
PREVIEW_EXACT_UP_TO = 200_000
PREVIEW_SAMPLE_PROFILES = 20_000


def segment_preview(*, definition: object, now: datetime | None = None) -> Preview:
    """How many live profiles an unsaved definition selects now, and the first few of them by id: exact on up to
    PREVIEW_EXACT_UP_TO profiles; past that, estimated from a random sample of profiles (the estimate's 95%
    interval in `margin`) and the first few of the sample. Raises rules.DefinitionError for a bad definition
    (including a segment key that does not exist)."""
    node = rules.parse(definition)
    now = now or timezone.now()
    segment_ids = dict(Segment.objects.values_list("key", "id"))

    def consent(purpose, alias):
        return consent_allowed_sql(purpose=purpose, profile_alias=alias)

    profiles = _profiles_estimate()
    if profiles <= PREVIEW_EXACT_UP_TO:
        compiled = compile_members(node, now=now, segment_ids=segment_ids, consent_sql=consent)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT id, count(*) OVER () FROM ({compiled.sql}) AS members ORDER BY id LIMIT %s",
                           [*compiled.params, PREVIEW_SAMPLE])
            rows = cursor.fetchall()
        return Preview(rows[0][1] if rows else 0, [r[0] for r in rows])
    share = min(100.0, 100.0 * PREVIEW_SAMPLE_PROFILES / profiles)
    with connection.cursor() as cursor:
        # Rows at random (BERNOULLI), not whole pages (SYSTEM): the interval below assumes each profile was drawn
        # on its own, which a sample of pages (profiles stored together, often alike) does not honour.
        # Repeatable, so that the count moves only when the definition does.
        cursor.execute(f"SELECT coalesce(array_agg(id ORDER BY id), '{{}}') FROM {Profile._meta.db_table} "
                       "TABLESAMPLE BERNOULLI (%s) REPEATABLE (7) WHERE merged_into_id IS NULL", [share])
        drawn = cursor.fetchone()[0]
    compiled = compile_members(node, now=now, segment_ids=segment_ids, consent_sql=consent, scope_ids=drawn)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, count(*) OVER () FROM ({compiled.sql}) AS members ORDER BY id LIMIT %s",
                       [*compiled.params, PREVIEW_SAMPLE])
        rows = cursor.fetchall()
    matched = rows[0][1] if rows else 0
    return Preview(round(matched * 100.0 / share), [r[0] for r in rows], estimated=True,
                   margin=round(_margin(matched, share / 100.0)))


def _margin(matched: int, probability: float) -> float:
    """The half-width of the 95% interval of the count `matched / probability` when each profile was drawn
    independently with `probability` (BERNOULLI): `matched` is then nearly Poisson, thinned by (1 - probability)
    (variance M(1 - p)/p of the estimate). Poisson limits by Byar's approximation, good also for a handful of
    matches (where the normal one would claim a margin of zero), the wider side, so that the interval shown as
    n ± margin contains both limits; a sample of the whole table has no error."""
    z = 1.96
    upper = (matched + 1) * (1 - 1 / (9 * (matched + 1)) + z / (3 * math.sqrt(matched + 1))) ** 3
    lower = matched * (1 - 1 / (9 * matched) - z / (3 * math.sqrt(matched))) ** 3 if matched else 0.0
    return max(upper - matched, matched - lower) * math.sqrt(1 - probability) / probability


def _profiles_estimate() -> int:
    """The planner's row count of the profiles table (kept by ANALYZE and autovacuum); a count when it has none."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [Profile._meta.db_table])
        estimate = cursor.fetchone()[0]
        if estimate is None or estimate < 0:
            cursor.execute(f"SELECT count(*) FROM {Profile._meta.db_table}")
            estimate = cursor.fetchone()[0]
    return estimate


def segment_ids_by_key() -> dict[str, int]:
    return dict(Segment.objects.values_list("key", "id"))


def targeting_matches(*, nodes: dict[int, object], profile_id: int | None, context: dict | None,
                      now: datetime | None = None, segment_ids: dict[str, int] | None = None,
                      consent_sql=None, reuse: dict | None = None, reuse_key: object = None) -> set[int]:
    """Which of these targeting nodes (by any integer label, a campaign id) hold for one person now, with the
    request's context: one prepared statement whatever their number. Segment conditions read the membership
    table as it stands. A person without a profile (a first visit) has no traits, events, identifiers or
    memberships, and no consent given: only conditions on the context, or that hold for someone with nothing,
    can match. `segment_ids` and `consent_sql` may come from the caller's cache (they change rarely), and so may
    `reuse`, a dict where the compiled statement is kept (per `reuse_key` and nodes) for as long as the nodes it
    was compiled from live."""
    if not nodes:
        return set()
    now = now or timezone.now()
    person = profile_id if profile_id is not None else 0  # no profile has id 0: nothing of it is found
    segment_ids = segment_ids if segment_ids is not None else segment_ids_by_key()
    if reuse is None:
        kept = _decidable(nodes, segment_ids)
        if not kept:
            return set()
        compiled = compile_realtime([(label, node, [person]) for label, node in kept.items()], now=now,
                                    segment_ids=segment_ids, consent_sql=consent_sql or _consent, context=context,
                                    visitors=profile_id is None)
        return {label for label, _ in fetch_prepared(compiled.sql, compiled.params)}
    # Compiled once a second for any person and context, then filled in: a clock a second old changes no
    # window that matters, and compiling costs more than the statement.
    second = now.replace(microsecond=0)
    key = (reuse_key, profile_id is None, tuple((label, node if isinstance(node, rules.Consent) else id(node))
                                                for label, node in nodes.items()))
    statement = reuse.get(key)
    if statement is None or statement.second != second:
        statement = reuse[key] = _reusable(nodes, second, segment_ids, consent_sql, visitors=profile_id is None)
    if statement.sql is None:
        return set()
    params = list(statement.params)
    for at in statement.people:
        params[at] = "{" + ",".join([str(person)] * (params[at].count(",") + 1)) + "}"
    for at in statement.contexts:
        params[at] = params[at].resolve(context)
    return {label for label, _ in fetch_prepared(statement.sql, params)}


def _decidable(nodes: dict, segment_ids: dict[str, int]) -> dict:
    # A node naming a segment deleted since it was saved cannot hold; the others are still decided.
    return {label: node for label, node in nodes.items() if rules.references(node) <= set(segment_ids)}


# The person a reusable targeting statement is compiled for: no profile has this id, and the scope literals that
# name it (its id alone, once per node) are replaced by the real person's.
_ANYONE = -7_777_777_777


@dataclass(frozen=True)
class _Reusable:
    second: datetime
    sql: str | None
    params: tuple
    people: tuple[int, ...]  # positions of the scope literals naming the person
    contexts: tuple[int, ...]  # positions of the request's context values
    # The same statement reading the person from a CTE `who` (profile_id) of the statement it is put into, so the
    # caller finds them and reads everything else of theirs in that one statement; `params` without the people's.
    # Only for people with a profile.
    of_who_sql: str | None = None
    of_who_params: tuple = ()
    of_who_contexts: tuple[int, ...] = ()


def _reusable(nodes: dict, second: datetime, segment_ids: dict[str, int], consent_sql, *, visitors: bool) -> _Reusable:
    """The targeting statement of these nodes for anyone, with where the person and the context go. Nodes are
    taken by identity (except consent conditions, made afresh for each decision): the caller keeps them, and the
    cache, alive together."""
    kept = _decidable(nodes, segment_ids)
    if not kept:
        return _Reusable(second, None, (), (), ())
    compiled = compile_realtime([(label, node, [_ANYONE]) for label, node in kept.items()], now=second,
                                segment_ids=segment_ids, consent_sql=consent_sql or _consent,
                                context=DEFERRED_CONTEXT, visitors=visitors)
    anyone = str(_ANYONE)
    people = tuple(at for at, param in enumerate(compiled.params) if isinstance(param, str) and param.startswith("{")
                   and param.endswith("}") and param != "{}" and all(p == anyone for p in param[1:-1].split(",")))
    contexts = tuple(at for at, param in enumerate(compiled.params) if isinstance(param, ContextValue))
    if visitors:
        return _Reusable(second, compiled.sql, tuple(compiled.params), people, contexts)
    # Each scope literal naming the person becomes an array of the person found in the statement (as many times
    # as the literal names them); the others stay parameters.
    pieces, params, at = [], [], 0
    for token in re.finditer(r"%%|%s", compiled.sql):
        if token.group() == "%s":
            if at in people:
                pieces.append((token.span(), "array_fill((SELECT profile_id FROM who), ARRAY[%d])"
                               % (compiled.params[at].count(",") + 1)))
            else:
                params.append(compiled.params[at])
            at += 1
    text, last = [], 0
    for (start, end), replacement in pieces:
        text += [compiled.sql[last:start], replacement.replace("%", "%%")]
        last = end
    text.append(compiled.sql[last:])
    kept = tuple(params)
    return _Reusable(second, compiled.sql, tuple(compiled.params), people, contexts, "".join(text), kept,
                     tuple(at for at, param in enumerate(kept) if isinstance(param, ContextValue)))


def targeting_statement(*, nodes: dict[int, object], context: dict | None, now: datetime,
                        segment_ids: dict[str, int], consent_sql, reuse: dict, reuse_key: object
                        ) -> tuple[str, list] | None:
    """targeting_matches' statement, as a subquery for the caller's own statement, which finds the person in a
    CTE named `who` (one row of their live profile_id, or none): rows of (label, profile id) for the nodes that
    hold. A decision so reads the person, their exposures and their targeting in one statement. None when no
    node can hold; no rows when `who` is empty (a first visit is decided by targeting_matches(profile_id=None))."""
    if not nodes:
        return None
    second = now.replace(microsecond=0)
    key = (reuse_key, False, tuple((label, node if isinstance(node, rules.Consent) else id(node))
                                   for label, node in nodes.items()))
    statement = reuse.get(key)
    if statement is None or statement.second != second:
        statement = reuse[key] = _reusable(nodes, second, segment_ids, consent_sql, visitors=False)
    if statement.sql is None:
        return None
    params = list(statement.of_who_params)
    for at in statement.of_who_contexts:
        params[at] = params[at].resolve(context)
    return statement.of_who_sql, params


def targeting_matches_many(*, nodes: dict[int, object], profile_ids: list[int], now: datetime | None = None,
                           segment_ids: dict[str, int] | None = None, consent_sql=None) -> set[tuple[int, int]]:
    """(label, profile id) for each of these nodes and live profiles it holds for now, without a request's
    context: one statement for a whole batch of people (campaigns' triggered actions)."""
    if not nodes or not profile_ids:
        return set()
    now = now or timezone.now()
    segment_ids = segment_ids if segment_ids is not None else segment_ids_by_key()
    nodes = {label: node for label, node in nodes.items() if rules.references(node) <= set(segment_ids)}
    if not nodes:
        return set()
    people = sorted(set(profile_ids))
    compiled = compile_realtime([(label, node, people) for label, node in nodes.items()], now=now,
                                segment_ids=segment_ids, consent_sql=consent_sql or _consent)
    with connection.cursor() as cursor:
        cursor.execute(compiled.sql, compiled.params)
        return {(label, profile_id) for label, profile_id in cursor.fetchall()}


def _consent(purpose: str, alias: str):
    return consent_allowed_sql(purpose=purpose, profile_alias=alias)


def segment_members(*, segment: Segment) -> QuerySet[SegmentMembership]:
    """The current members, latest entries first."""
    return SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True)


def segment_history(*, segment: Segment, since: datetime | None = None) -> QuerySet[SegmentSize]:
    points = SegmentSize.objects.filter(segment=segment)
    if since:
        points = points.filter(at__gte=since)
    return points.order_by("at")


def profile_segments(*, profile_id: int, include_past: bool = False) -> QuerySet[SegmentMembership]:
    """A person's memberships with the reasons they entered; current ones unless `include_past`."""
    memberships = SegmentMembership.objects.filter(profile_id=profile_id).select_related("segment")
    if not include_past:
        memberships = memberships.filter(exited_at__isnull=True)
    return memberships.order_by("-entered_at", "-id")


def segment_find(*, query: str = "", mode: str = "") -> QuerySet[Segment]:
    segments = Segment.objects.all()
    if query:
        segments = segments.filter(Q(key__icontains=query) | Q(name__icontains=query))
    if mode:
        segments = segments.filter(mode=mode)
    return segments.order_by("key")


def destinations_all() -> QuerySet[Destination]:
    return Destination.objects.order_by("id")


def destination_get(*, destination_id: int) -> Destination | None:
    return Destination.objects.filter(pk=destination_id).first()


def destination_deliveries(*, destination_id: int) -> QuerySet[Delivery]:
    """The destination's deliveries, newest first (the delivery_by_destination index), with their segment."""
    return (Delivery.objects.filter(destination_id=destination_id).select_related("segment")
            .order_by("-created_at", "-id"))


# ---------------------------------------------------------------------------------------- what was learned

RECOMMENDATIONS_MAX = LIST_MAX


@dataclass(frozen=True)
class RecommendedItem:
    item_id: str
    name: str
    category: str
    brand: str
    price: float | None
    url: str
    image_url: str
    score: float | None

    def as_json(self) -> dict:
        return {"item_id": self.item_id, "name": self.name, "category": self.category, "brand": self.brand,
                "price": self.price, "url": self.url, "image_url": self.image_url, "score": self.score}


@dataclass(frozen=True)
class RecommendationList:
    # "personal" (their own top list, filled with popular items when it runs short), "popular" (no history yet,
    # or no consent to personalisation), "none" (nothing learned yet).
    basis: str
    items: list[RecommendedItem]


_LIST_SQL = """
    WITH person AS (
        SELECT r.items, r.scores, coalesce(r.bought, '{{}}') AS bought, r.profile_id IS NOT NULL AND {allowed}
               AS personal
        FROM profiles_profile p LEFT JOIN segments_recommendations r ON r.profile_id = p.id
        WHERE p.id = %s
        UNION ALL SELECT NULL, NULL, '{{}}', false WHERE %s::bigint IS NULL
    ), popular AS (
        SELECT popular FROM segments_recommenderrun WHERE status = 'ready' ORDER BY started_at DESC LIMIT 1
    ), listed AS (
        SELECT x.item, x.score, x.position, true AS personal
        FROM person, LATERAL unnest(person.items, person.scores) WITH ORDINALITY AS x(item, score, position)
        WHERE person.personal AND (%s OR NOT x.item = ANY(person.bought))
        UNION ALL
        -- The popular items fill a list that runs short (and are the list of everyone else), after the personal
        -- ones; what the person bought stays out of it as out of theirs.
        SELECT x.item, NULL, 1000 + x.position, false
        FROM person, popular, LATERAL unnest(popular.popular) WITH ORDINALITY AS x(item, position)
        WHERE %s OR NOT (person.personal AND x.item = ANY(person.bought))
    )
    SELECT item_id, name, category, brand, price, url, image_url, score, personal FROM (
        SELECT DISTINCT ON (l.item) i.item_id, i.name, i.category, i.brand, i.price, i.url, i.image_url, l.score,
               l.personal, l.position
        FROM listed l JOIN segments_item i ON i.id = l.item AND i.active
        ORDER BY l.item, l.position) best
    ORDER BY position LIMIT %s
"""


def recommendations_for(*, profile_id: int | None, k: int = 10, include_bought: bool = False,
                        consent_sql: Callable[[str, str], tuple[str, list]] | None = None) -> RecommendationList:
    """A person's top k items in one query (after the purpose's, unless `consent_sql` is a cached
    consent_allowed_sql): their precomputed list when they allow personalisation (without what they bought,
    unless `include_bought`), else the popular items; for nobody (`profile_id` None, a first visit), the
    popular items. Raises Purpose.DoesNotExist when the personalisation purpose is gone."""
    k = max(1, min(k, RECOMMENDATIONS_MAX))
    allowed, params = (consent_sql(PERSONALIZATION, "p") if consent_sql is not None
                       else consent_allowed_sql(purpose=PERSONALIZATION, profile_alias="p"))
    rows = fetch_prepared(_LIST_SQL.format(allowed=allowed),
                          [*params, profile_id, profile_id, include_bought, include_bought, k])
    items = [RecommendedItem(row[0], row[1], row[2], row[3], None if row[4] is None else float(row[4]), row[5],
                             row[6], None if row[7] is None else round(row[7], 5)) for row in rows]
    basis = "none" if not rows else ("personal" if rows[0][8] else "popular")
    return RecommendationList(basis, items)


_SIMILAR_SQL = """
    SELECT i.item_id, i.name, i.category, i.brand, i.price, i.url, i.image_url, x.score
    FROM segments_item q JOIN segments_itemneighbours n ON n.item_id = q.id,
         LATERAL unnest(n.neighbours, n.scores) WITH ORDINALITY AS x(item, score, position)
    JOIN segments_item i ON i.id = x.item AND i.active
    WHERE q.item_id = %s ORDER BY x.position LIMIT %s
"""


def items_similar(*, item_id: str, k: int = 10) -> list[RecommendedItem]:
    """The item's k most similar active items (the hybrid's neighbours), best first; one query."""
    k = max(1, min(k, RECOMMENDATIONS_MAX))
    return [RecommendedItem(row[0], row[1], row[2], row[3], None if row[4] is None else float(row[4]), row[5],
                            row[6], round(row[7], 5)) for row in fetch_prepared(_SIMILAR_SQL, [item_id, k])]


def models_with_versions() -> QuerySet[PredictiveModel]:
    """Predictive models with their versions (newest first) in two queries, without the versions' fitted
    estimators, which no screen or response shows (each is up to a few megabytes)."""
    return PredictiveModel.objects.prefetch_related(
        Prefetch("versions", queryset=ModelVersion.objects.defer("artifact").order_by("-version")))


@dataclass(frozen=True)
class ProfileLearned:
    rfm: dict
    # (model key, model name, probability) for each model that scored the person.
    scores: list[tuple[str, str, float]]
    recommendations: RecommendationList


def profile_learned(*, profile: Profile, k: int = 6) -> ProfileLearned:
    """What was learned about a person, for their page: RFM scores and group, each model's score, and their
    recommendations (popular items when they do not allow personalisation)."""
    computed = profile.computed or {}
    models = PredictiveModel.objects.filter(key__in=list(computed)).values_list("key", "name")
    return ProfileLearned(
        rfm={key: computed[key] for key in ("rfm_recency", "rfm_frequency", "rfm_monetary", "rfm_score", "rfm_group")
             if key in computed},
        scores=[(key, name, computed[key]) for key, name in models if isinstance(computed[key], (int, float))],
        recommendations=recommendations_for(profile_id=profile.pk, k=k))
