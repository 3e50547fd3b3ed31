"""Recommendations: the item catalog (from events and the items API), interactions read in one set-based query,
the offline evaluation on a time split, and the precomputed top lists (each person's, each item's neighbours,
the popular items) that reads serve in one query."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation

import numpy as np
import scipy.sparse as sp
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from consent.selectors import PERSONALIZATION, consent_allowed_sql
from profiles.common.locks import LEARNING, session_try_lock
from segments import recommender, rules
from segments.models import Item, ItemNeighbours, Recommendations, RecommenderRun
from segments.services.memory import learning_work_mem
from segments.stopwatch import Stopwatch

logger = logging.getLogger(__name__)

LIST_LENGTH = recommender.LIST_MAX
# Extra places in a stored list for items the person bought, which reads leave out unless asked.
BOUGHT_ROOM = 10
POPULAR_LENGTH = 100
# People the offline evaluation holds an item out for (a random sample of those with two items or more).
EVALUATED_PEOPLE = 5_000
# The hybrid's weight when no evaluation chooses it (a refresh without one, or no interactions yet).
DEFAULT_HYBRID_WEIGHT = 0.8
# The e-commerce spec's purchase: what "leaves out what the person bought" means.
PURCHASE_EVENT = "Order Completed"
REFRESH_TASK = "segments.learn_recommendations"
ITEM_FIELDS = ("name", "category", "brand", "price", "url", "image_url", "active")

# Each product an event names: properties.product_id, or each entry of properties.products (orders, carts).
_PRODUCTS_SQL = """
    SELECT e.profile_id, e.timestamp, e.event, pr AS product
    FROM profiles_event e
    CROSS JOIN LATERAL jsonb_array_elements(CASE
        WHEN jsonb_typeof(e.payload -> 'properties' -> 'products') = 'array' THEN e.payload -> 'properties' -> 'products'
        WHEN e.payload -> 'properties' ? 'product_id' THEN jsonb_build_array(e.payload -> 'properties')
        ELSE '[]'::jsonb END) AS pr
    WHERE e.type = 'track' AND e.event = ANY(%(events)s) AND e.timestamp >= %(since)s AND e.profile_id IS NOT NULL
      AND jsonb_typeof(pr) = 'object' AND coalesce(pr ->> 'product_id', '') <> ''
"""


# ---------------------------------------------------------------------------------------------------- catalog


def _price(value: object, field: str) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise rules.DefinitionError("price is a number", field) from None
    if not price.is_finite() or price < 0 or price >= Decimal("1e10"):
        raise rules.DefinitionError("price is a number from 0 to 9,999,999,999.99", field)
    return price.quantize(Decimal("0.01"))


def item_values(data: dict, *, path: str = "") -> dict:
    """The catalog fields of one item as given to the API, checked. Raises rules.DefinitionError with the
    field's path."""
    here = f"{path}." if path else ""
    unknown = set(data) - {"item_id", *ITEM_FIELDS}
    if unknown:
        raise rules.DefinitionError(f'unknown field "{sorted(unknown)[0]}"', f"{here}{sorted(unknown)[0]}")
    values = {}
    for field in ("name", "category", "brand", "url", "image_url"):
        if field in data:
            if not isinstance(data[field], str):
                raise rules.DefinitionError(f"{field} is a string", f"{here}{field}")
            values[field] = data[field].strip()
    if "price" in data:
        values["price"] = _price(data["price"], f"{here}price")
    if "active" in data:
        if not isinstance(data["active"], bool):
            raise rules.DefinitionError("active is true or false", f"{here}active")
        values["active"] = data["active"]
    return values


def items_upsert(*, items: list[dict]) -> tuple[int, int]:
    """Creates or updates catalog items by item_id, a statement each way; the catalog's values win over what
    events say from then on. All or nothing: raises rules.DefinitionError (with `items[i].field`) on the first
    bad item, and nothing is saved. Returns (created, updated)."""
    checked = {}
    for i, data in enumerate(items):
        if not isinstance(data, dict):
            raise rules.DefinitionError("an item is an object", f"items[{i}]")
        item_id = data.get("item_id")
        if not isinstance(item_id, str) or not item_id.strip() or len(item_id) > 200:
            raise rules.DefinitionError("item_id is a non-empty string of at most 200 characters",
                                        f"items[{i}].item_id")
        checked[item_id.strip()] = item_values(data, path=f"items[{i}]")
    try:
        return _items_write(checked)
    except IntegrityError:
        # Someone else (another upload, or the refresh adding items seen in events) created one of the new
        # items meanwhile: it is now an update.
        return _items_write(checked)


@transaction.atomic
def _items_write(checked: dict[str, dict]) -> tuple[int, int]:
    existing = {item.item_id: item for item in Item.objects.select_for_update().filter(item_id__in=list(checked))}
    new, changed = [], []
    for item_id, values in checked.items():
        item = existing.get(item_id)
        if item is None:
            new.append(Item(item_id=item_id, origin=Item.Origin.API, **values))
        else:
            for field, value in values.items():
                setattr(item, field, value)
            item.origin = Item.Origin.API
            item.updated_at = timezone.now()  # bulk_update does not run auto_now
            changed.append(item)
    Item.objects.bulk_create(new, batch_size=1000)
    if changed:
        Item.objects.bulk_update(changed, [*ITEM_FIELDS, "origin", "updated_at"], batch_size=1000)
    return len(new), len(changed)


def catalog_from_events(*, since) -> int:
    """Adds the items events name and refreshes those only events describe, from the latest event naming each:
    name, category, brand, price (the catalog API's items are left as the catalog says). One statement."""
    with connection.cursor() as cursor:
        # The latest event naming each product wins: a sort of every mention, on narrow rows and by bytes
        # (COLLATE "C"), which is several times faster than the database's collation on millions of them.
        cursor.execute(f"""
            INSERT INTO {Item._meta.db_table} AS i (item_id, name, category, brand, price, url, image_url, active,
                                                    origin, updated_at)
            SELECT DISTINCT ON (item_id) item_id, name, category, brand, price, '', '', true, 'events', now()
            FROM (
                SELECT left(product ->> 'product_id', 200) COLLATE "C" AS item_id, timestamp,
                       left(coalesce(product ->> 'name', ''), 500) AS name,
                       left(coalesce(product ->> 'category', ''), 300) AS category,
                       left(coalesce(product ->> 'brand', ''), 200) AS brand,
                       CASE WHEN jsonb_typeof(product -> 'price') = 'number'
                            AND (product ->> 'price')::numeric BETWEEN 0 AND 9999999999
                            THEN round((product ->> 'price')::numeric, 2) END AS price
                FROM ({_PRODUCTS_SQL}) named) mentions
            ORDER BY item_id, timestamp DESC
            ON CONFLICT (item_id) DO UPDATE SET name = EXCLUDED.name, category = EXCLUDED.category,
                brand = EXCLUDED.brand, price = coalesce(EXCLUDED.price, i.price), updated_at = now()
            WHERE i.origin = 'events' AND (i.name, i.category, i.brand, i.price)
                IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.category, EXCLUDED.brand, coalesce(EXCLUDED.price, i.price))
        """, _event_params(since))
        return cursor.rowcount


def _event_params(since) -> dict:
    return {"events": list(settings.RECOMMENDATION_EVENTS), "since": since}


# ----------------------------------------------------------------------------------------------- interactions


@dataclass(frozen=True)
class Learned:
    interactions: recommender.Interactions
    # Per stored entry of the interaction matrix (CSR order): when the person first touched the item (epoch s).
    first_seen: np.ndarray
    # Same shape as the matrix: 1 where the person bought the item.
    bought: sp.csr_matrix
    texts: list[str]


def interactions_read(*, since) -> Learned:
    """Every live person's weighted interactions with active catalog items since `since`, one row per person
    and item, read in one query; with the catalog's texts for content similarity."""
    weights = settings.RECOMMENDATION_EVENTS
    catalog = list(Item.objects.filter(active=True).order_by("pk").values("pk", "name", "category", "brand"))
    with connection.cursor() as cursor:
        # As five arrays, not a row per pair: psycopg parses an array in one go, and millions of row tuples
        # would cost seconds and hundreds of megabytes before numpy got them.
        cursor.execute(f"""
            SELECT coalesce(array_agg(profile_id), '{{}}'), coalesce(array_agg(item), '{{}}'),
                   coalesce(array_agg(weight), '{{}}'), coalesce(array_agg(first_at), '{{}}'),
                   coalesce(array_agg(bought), '{{}}')
            FROM (SELECT n.profile_id, i.id AS item, sum(w.weight) AS weight,
                         extract(epoch FROM min(n.timestamp))::float8 AS first_at,
                         bool_or(n.event = %(purchase)s) AS bought
                  FROM ({_PRODUCTS_SQL}) n
                  JOIN unnest(%(events)s::text[], %(weights)s::float8[]) AS w(event, weight) ON w.event = n.event
                  JOIN {Item._meta.db_table} i ON i.item_id = n.product ->> 'product_id' AND i.active
                  JOIN profiles_profile p ON p.id = n.profile_id AND p.merged_into_id IS NULL
                  GROUP BY n.profile_id, i.id) pairs
        """, {**_event_params(since), "weights": list(weights.values()), "purchase": PURCHASE_EVENT})
        people, items, values, first, bought = (np.array(column) for column in cursor.fetchone())
    all_items = np.array([row["pk"] for row in catalog], dtype=np.int64)
    texts = recommender.item_texts(catalog)
    # An item activated between the two reads is left for the next refresh: every column needs its text.
    known = np.isin(items, all_items)
    people, items, values, first, bought = (column[known] for column in (people, items, values, first, bought))
    if not len(people):
        empty = recommender.Interactions.from_triples(np.empty(0, np.int64), np.empty(0, np.int64),
                                                      np.empty(0), all_items)
        return Learned(empty, np.empty(0), empty.matrix.copy(), texts)
    interactions = recommender.Interactions.from_triples(people.astype(np.int64), items.astype(np.int64),
                                                         values.astype(np.float64), all_items)
    # The matrix was built from these triples, one per (person, item): the same order as its CSR entries once
    # sorted by row then column.
    rows_of = np.searchsorted(interactions.people, people)
    columns_of = np.searchsorted(interactions.items, items)
    order = np.lexsort((columns_of, rows_of))
    bought_matrix = sp.csr_matrix((bought.astype(np.float32), (rows_of, columns_of)),
                                  shape=interactions.matrix.shape)
    bought_matrix.eliminate_zeros()
    return Learned(interactions, first.astype(np.float64)[order], bought_matrix, texts)


# ---------------------------------------------------------------------------------------------------- refresh


def recommendations_refresh(*, evaluate: bool = True, extra_methods: dict | None = None) -> RecommenderRun | None:
    """Learns from the interactions of the last RECOMMENDATION_DAYS days: evaluates every method on a time split
    (each sampled person's most recent new item held out; `extra_methods` adds outside references to the
    table), then writes each item's neighbours, each person's top list and the popular items, replacing the
    previous ones in one transaction. Returns the run, or None when another refresh is running."""
    with session_try_lock(LEARNING, 0) as held, learning_work_mem():
        if not held:
            return None
        run = RecommenderRun.objects.create(started_at=timezone.now())
        started = time.monotonic()
        clock = Stopwatch()
        try:
            since = timezone.now() - timedelta(days=settings.RECOMMENDATION_DAYS)
            catalog_from_events(since=since)
            learned = interactions_read(since=since)
            clock.lap("read_s")
            content = recommender.content_neighbours(learned.texts)
            weight, table, evaluated = DEFAULT_HYBRID_WEIGHT, {}, 0
            if evaluate and learned.interactions.matrix.nnz:
                split = recommender.time_split(learned.interactions.matrix, learned.first_seen,
                                               people=EVALUATED_PEOPLE)
                # The weight is chosen on the training side of the split, itself split again: the people's
                # held-out items never choose it.
                validation = recommender.time_split(split.train, split.train_first_seen, people=EVALUATED_PEOPLE,
                                                    seed=1)
                weight, by_weight = recommender.hybrid_weight(validation, content)
                methods = recommender.neighbour_methods(content, weight=weight)
                table = recommender.evaluate(split, {**methods, **(extra_methods or {})})
                table["hybrid"]["weight"] = weight
                table["hybrid"]["validation_ndcg_by_weight"] = {str(w): v for w, v in by_weight.items()}
                evaluated = len(split.rows)
            clock.lap("evaluate_s")
            _write(run, learned, content, weight, clock)
        except Exception as exc:
            RecommenderRun.objects.filter(pk=run.pk).update(status=RecommenderRun.Status.FAILED,
                                                            error=f"{type(exc).__name__}: {exc}",
                                                            finished_at=timezone.now())
            raise
        matrix = learned.interactions.matrix
        RecommenderRun.objects.filter(pk=run.pk).update(
            status=RecommenderRun.Status.READY, finished_at=timezone.now(), people=matrix.shape[0],
            items=matrix.shape[1], interactions=matrix.nnz, evaluation=table, evaluated_people=evaluated,
            duration_s=round(time.monotonic() - started, 3), timings=clock.laps)
        run.refresh_from_db()
        return run


def _write(run: RecommenderRun, learned: Learned, content: sp.csr_matrix, weight: float, clock: Stopwatch) -> None:
    matrix = learned.interactions.matrix
    item_ids = learned.interactions.items
    popular = recommender.popularity(matrix)
    ranked = np.argsort(-popular, kind="stable")
    popular_ids = item_ids[ranked[popular[ranked] > 0][:POPULAR_LENGTH]].tolist()
    collaborative = recommender.collaborative_neighbours(matrix)
    neighbours = recommender.hybrid_neighbours(collaborative, content, weight=weight)
    bought = learned.bought.tocsr()
    # A list holds what the person has not touched yet (as the evaluation measures) and what they bought, marked,
    # for the reads that ask for it; enough places that leaving the bought ones out still fills most lists.
    touched_not_bought = (matrix - matrix.multiply(bought > 0)).tocsr()
    touched_not_bought.eliminate_zeros()
    top, scores = recommender.recommend(matrix, neighbours, popular, k=LIST_LENGTH + BOUGHT_ROOM,
                                        exclude=touched_not_bought)
    clock.lap("train_s")
    now = timezone.now()
    # Whole arrays are converted to Python lists once; each row is then a slice of them (a loop that indexed
    # numpy per row spent most of the write's time in small numpy calls).
    best_first = _best_first(neighbours)
    neighbour_ids, neighbour_scores = item_ids[best_first.indices].tolist(), np.round(best_first.data, 5).tolist()
    listed = scores > 0
    list_ends = np.cumsum(listed.sum(axis=1)).tolist()
    list_ids, list_scores = item_ids[top[listed]].tolist(), np.round(scores[listed], 5).tolist()
    bought_ids, bought_ends = item_ids[bought.indices].tolist(), bought.indptr.tolist()
    with transaction.atomic(), connection.cursor() as cursor:
        # Dropped first as well as on commit: inside an outer transaction (a command run in one) a second refresh
        # would find the first one's tables.
        cursor.execute("DROP TABLE IF EXISTS pg_temp.learned_neighbours, pg_temp.learned_lists")
        cursor.execute("CREATE TEMPORARY TABLE learned_neighbours (item_id int, neighbours int[], scores float8[]) "
                       "ON COMMIT DROP")
        with cursor.copy("COPY learned_neighbours FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "int4[]", "float8[]"])
            ends = best_first.indptr.tolist()
            for row, item in enumerate(item_ids.tolist()):
                if ends[row + 1] > ends[row]:
                    copy.write_row((item, neighbour_ids[ends[row]:ends[row + 1]],
                                    neighbour_scores[ends[row]:ends[row + 1]]))
        cursor.execute(f"DELETE FROM {ItemNeighbours._meta.db_table}")
        cursor.execute(f"INSERT INTO {ItemNeighbours._meta.db_table} (item_id, neighbours, scores) "
                       f"SELECT n.item_id, n.neighbours, n.scores FROM learned_neighbours n "
                       f"JOIN {Item._meta.db_table} i ON i.id = n.item_id")
        cursor.execute("CREATE TEMPORARY TABLE learned_lists (profile_id bigint, items int[], scores float8[], "
                       "bought int[]) ON COMMIT DROP")
        with cursor.copy("COPY learned_lists FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "int4[]", "float8[]", "int4[]"])
            start = 0
            for row, person in enumerate(learned.interactions.people.tolist()):
                end = list_ends[row]
                copy.write_row((person, list_ids[start:end], list_scores[start:end],
                                bought_ids[bought_ends[row]:bought_ends[row + 1]]))
                start = end
        cursor.execute(f"DELETE FROM {Recommendations._meta.db_table}")
        # Joined to the live profiles as they are now: a person erased or merged during training gets no row, and
        # nothing made from their behaviour is kept for someone who does not allow personalisation.
        allowed, params = consent_allowed_sql(purpose=PERSONALIZATION, profile_alias="p")
        cursor.execute(f"INSERT INTO {Recommendations._meta.db_table} (profile_id, items, scores, bought, "
                       f"computed_at) SELECT l.profile_id, l.items, l.scores, l.bought, %s FROM learned_lists l "
                       f"JOIN profiles_profile p ON p.id = l.profile_id AND p.merged_into_id IS NULL "
                       f"WHERE {allowed}", [now, *params])
        RecommenderRun.objects.filter(pk=run.pk).update(popular=popular_ids)
    clock.lap("write_s")


def _best_first(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """The matrix with each row's entries ordered by value, largest first."""
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    order = np.lexsort((-matrix.data, rows))
    return sp.csr_matrix((matrix.data[order], matrix.indices[order], matrix.indptr), shape=matrix.shape)


# ---------------------------------------------------------------------------------------------------- erasure


def recommendations_erase(*, profile_ids: list[int], limit: int) -> dict[str, int]:
    rows = list(Recommendations.objects.filter(profile_id__in=profile_ids).values_list("pk", flat=True)[:limit])
    deleted = Recommendations.objects.filter(pk__in=rows).delete()[0] if rows else 0
    return {"recommendations": deleted}


def recommendations_export(*, profile_ids: list[int]) -> dict:
    lists = Recommendations.objects.filter(profile_id__in=profile_ids)
    names = dict(Item.objects.filter(pk__in={i for r in lists for i in r.items}).values_list("pk", "item_id"))
    return {"recommendations": [{"computed_at": r.computed_at, "items": [names.get(i) for i in r.items]}
                                for r in lists]}
