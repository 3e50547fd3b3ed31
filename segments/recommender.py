"""Recommendations as item-to-item similarity, and their offline evaluation: pure numpy, scipy and scikit-learn,
no database.

Every method is a sparse item x item matrix S of each item's nearest neighbours; a person's scores are their
interaction row times S (the items near what they touched, weighted by how much they touched it):
- collaborative: cosine similarity of items' columns in the people x items matrix of implicit feedback
  (log-scaled weights, so a hundred views do not drown one order);
- content: cosine similarity of TF-IDF vectors of the items' name, category and brand;
- hybrid: each row of both scaled to a maximum of 1, blended, so an item nobody has touched yet still has
  neighbours (from its text) and a bought-together pair outranks two items that merely share words.
A tiny share of popularity breaks ties and fills the list of someone whose neighbours run out. Item-to-item
keeps the top lists explainable ("because you viewed X") and cheap to refresh: the neighbour matrix is the
model, and it grows with items, not people. scikit-learn is imported where it is used (see segments/clustering.py).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

# The most items a list gives (the API's and campaign content's largest k), and so what a person's stored list
# holds.
LIST_MAX = 50
# Neighbours kept per item: beyond about 50, more neighbours change nobody's top 10 but cost memory.
NEIGHBOURS = 50
# Popularity's weight in a personal score: enough to order ties and fill short lists, never enough to
# outrank a real neighbour (scores of neighbours are at least about 1e-3 of the best).
POPULARITY_TIE_BREAK = 1e-4
# Cells scored at once: a dense block of rows x items float32 scores (2,000 x 10,000: 80 MB, and about five
# times that at the peak, with the top-k selection's temporaries).
BLOCK_CELLS = 20_000_000


@dataclass(frozen=True)
class Interactions:
    """What people did to items: row r is people[r], column c is items[c], the value the events' summed weight."""

    people: np.ndarray
    items: np.ndarray
    matrix: sp.csr_matrix

    @classmethod
    def from_triples(cls, people: np.ndarray, items: np.ndarray, weights: np.ndarray,
                     all_items: np.ndarray | None = None) -> Interactions:
        """From parallel arrays (one entry per person and item); `all_items` adds items without interactions."""
        person_ids, rows = np.unique(people, return_inverse=True)
        item_ids = np.unique(items if all_items is None else np.concatenate([all_items, items]))
        columns = np.searchsorted(item_ids, items)
        matrix = sp.csr_matrix((weights.astype(np.float32), (rows, columns)),
                               shape=(len(person_ids), len(item_ids)))
        matrix.sum_duplicates()
        return cls(person_ids, item_ids, matrix)


def confidence(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """log(1 + weight): the tenth view of an item says less than the first."""
    scaled = matrix.copy().astype(np.float32)
    scaled.data = np.log1p(scaled.data)
    return scaled


def popularity(matrix: sp.csr_matrix) -> np.ndarray:
    """Per item, the number of people who touched it."""
    return np.diff(matrix.tocsc().indptr).astype(np.float32)


def _top_per_row(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of each row's k largest values, best first."""
    k = min(k, block.shape[1])
    part = np.argpartition(-block, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(block, part, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(values, order, axis=1)


def _keep_top(similarity_rows: Callable[[int, int], np.ndarray], n: int, k: int) -> sp.csr_matrix:
    """An n x n sparse matrix of each row's k best positive off-diagonal entries, built block by block."""
    step = max(1, BLOCK_CELLS // max(n, 1))
    rows, cols, vals = [], [], []
    for start in range(0, n, step):
        block = similarity_rows(start, min(n, start + step))
        block[np.arange(block.shape[0]), np.arange(start, start + block.shape[0])] = 0
        top, values = _top_per_row(block, k)
        keep = values > 0
        rows.append(np.repeat(np.arange(start, start + block.shape[0]), keep.sum(axis=1)))
        cols.append(top[keep])
        vals.append(values[keep])
    if not rows:
        return sp.csr_matrix((n, n), dtype=np.float32)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n),
                         dtype=np.float32)


def collaborative_neighbours(matrix: sp.csr_matrix, *, k: int = NEIGHBOURS) -> sp.csr_matrix:
    """Item x item cosine similarity of the items' columns of the (confidence-scaled) interaction matrix."""
    from sklearn.preprocessing import normalize

    if matrix.nnz == 0:
        return sp.csr_matrix((matrix.shape[1], matrix.shape[1]), dtype=np.float32)
    columns = normalize(confidence(matrix).tocsc(), axis=0)
    by_item = columns.T.tocsr()
    return _keep_top(lambda a, b: (by_item[a:b] @ columns).toarray(), matrix.shape[1], k)


def item_texts(catalog: list[dict]) -> list[str]:
    """Each item's words: name, brand, and the category path with each level also as one token
    ("Shoes > Running" gives "shoes", "running" and "cat_shoes_running"), so a shared category counts
    more than a shared word."""
    texts = []
    for item in catalog:
        category = str(item.get("category") or "")
        levels = [level.strip().lower() for level in category.replace("/", ">").split(">") if level.strip()]
        tokens = [f"cat_{'_'.join(levels[:depth + 1]).replace(' ', '_')}" for depth in range(len(levels))]
        texts.append(" ".join([str(item.get("name") or ""), str(item.get("brand") or ""), " ".join(levels),
                               " ".join(tokens), f"brand_{str(item.get('brand') or '').lower().replace(' ', '_')}"
                               if item.get("brand") else ""]))
    return texts


def content_neighbours(texts: list[str], *, k: int = NEIGHBOURS) -> sp.csr_matrix:
    """Item x item cosine similarity of TF-IDF vectors of the items' texts (sublinear term frequency)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not any(t.strip() for t in texts):
        return sp.csr_matrix((len(texts), len(texts)), dtype=np.float32)
    # Words with a letter only: bare numbers (model numbers, sizes) would tie unrelated items together.
    vectors = TfidfVectorizer(sublinear_tf=True, dtype=np.float32,
                              token_pattern=r"(?u)\b\w*[^\W\d]\w*\b").fit_transform(texts)
    by_item = vectors.tocsr()
    transposed = by_item.T.tocsc()
    return _keep_top(lambda a, b: (by_item[a:b] @ transposed).toarray(), len(texts), k)


def _scaled_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Each row divided by its largest value."""
    if matrix.shape[0] == 0:
        return matrix
    peaks = matrix.max(axis=1).toarray().ravel()
    peaks[peaks == 0] = 1
    return sp.diags(1 / peaks).astype(np.float32) @ matrix


def hybrid_neighbours(collaborative: sp.csr_matrix, content: sp.csr_matrix, *, weight: float,
                      k: int = NEIGHBOURS) -> sp.csr_matrix:
    """`weight` x collaborative + (1 - weight) x content, each row scaled to a maximum of 1; top k kept."""
    blended = (weight * _scaled_rows(collaborative) + (1 - weight) * _scaled_rows(content)).tocsr()
    return _keep_top(lambda a, b: blended[a:b].toarray(), blended.shape[0], k)


def recommend(rows: sp.csr_matrix, neighbours: sp.csr_matrix | None, popular: np.ndarray, *, k: int,
              exclude: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k best items (column indices, scores), best first: interactions x neighbours, popularity
    as the tie break; `exclude` (same shape as rows) marks items never to recommend to that row. Without
    neighbours, popularity alone."""
    n_items = rows.shape[1]
    if n_items == 0:
        return np.empty((rows.shape[0], 0), dtype=np.int64), np.empty((rows.shape[0], 0), dtype=np.float32)
    pop = (popular / popular.max() if popular.size and popular.max() > 0 else popular).astype(np.float32)
    step = max(1, BLOCK_CELLS // max(n_items, 1))
    weighted = confidence(rows)
    tops, scores = [], []
    for start in range(0, rows.shape[0], step):
        end = min(rows.shape[0], start + step)
        if neighbours is None:
            block = np.tile(pop, (end - start, 1))
        else:
            block = (weighted[start:end] @ neighbours).toarray()
            block += POPULARITY_TIE_BREAK * pop * np.maximum(block.max(axis=1, keepdims=True), 1e-3)
        if exclude is not None:
            seen = exclude[start:end].tocoo()
            block[seen.row, seen.col] = -np.inf
        top, values = _top_per_row(block, k)
        tops.append(top)
        scores.append(values)
    if not tops:
        return np.empty((0, min(k, n_items)), dtype=np.int64), np.empty((0, min(k, n_items)), dtype=np.float32)
    return np.vstack(tops), np.vstack(scores)


@dataclass(frozen=True)
class Split:
    """A time split: each evaluated person's most recent new item is held out; train holds everything else."""

    train: sp.csr_matrix
    # Per stored entry of train, when the person first touched the item: what a further split needs.
    train_first_seen: np.ndarray
    # Row of each evaluated person, and the column of their held-out item.
    rows: np.ndarray
    held_out: np.ndarray


def time_split(matrix: sp.csr_matrix, first_seen: np.ndarray, *, people: int, seed: int = 0) -> Split:
    """Holds out, for up to `people` people with two items or more (a random sample), the item they came to
    last (`first_seen`: per stored entry of the canonical CSR matrix, when the person first touched the item,
    as a number)."""
    matrix = matrix.tocsr()
    counts = np.diff(matrix.indptr)
    eligible = np.flatnonzero(counts >= 2)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(eligible, size=min(people, eligible.size), replace=False))
    held = np.empty(chosen.size, dtype=np.int64)
    keep = np.ones(matrix.nnz, dtype=bool)
    for i, row in enumerate(chosen):
        lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
        latest = lo + int(np.argmax(first_seen[lo:hi]))
        held[i] = matrix.indices[latest]
        keep[latest] = False
    rows_of_entries = np.repeat(np.arange(matrix.shape[0]), counts)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows_of_entries[keep], minlength=matrix.shape[0]))])
    train = sp.csr_matrix((matrix.data[keep], matrix.indices[keep], indptr), shape=matrix.shape)
    return Split(train, first_seen[keep], chosen, held)


def hit_rate_and_ndcg(top: np.ndarray, held_out: np.ndarray, *, k: int = 10) -> tuple[float, float]:
    """Hit rate at k (the held-out item is in the top k) and NDCG at k (one relevant item: 1 / log2(rank + 2))."""
    if held_out.size == 0:
        return 0.0, 0.0
    hits = top[:, :k] == held_out[:, None]
    found = hits.any(axis=1)
    ranks = np.argmax(hits, axis=1)
    gains = np.where(found, 1 / np.log2(ranks + 2), 0.0)
    return float(found.mean()), float(gains.mean())


def evaluate(split: Split, methods: dict[str, Callable[[sp.csr_matrix, np.ndarray], np.ndarray]], *,
             k: int = 10) -> dict[str, dict[str, float]]:
    """Each method's hit rate and NDCG at k on the split. A method takes the train matrix and the evaluated
    rows and returns their top k columns (having left out what each row holds in train)."""
    table = {}
    for name, method in methods.items():
        top = method(split.train, split.rows)
        hit_rate, ndcg = hit_rate_and_ndcg(top, split.held_out, k=k)
        table[name] = {"hit_rate_at_10": round(hit_rate, 4), "ndcg_at_10": round(ndcg, 4)}
    return table


def neighbour_methods(content: sp.csr_matrix, *, weight: float, k: int = 10
                      ) -> dict[str, Callable[[sp.csr_matrix, np.ndarray], np.ndarray]]:
    """The product's four methods, as evaluate() takes them, each learning from the train matrix only (the
    content neighbours come from the catalog, which holds no behaviour)."""
    learned: dict[int, sp.csr_matrix] = {}

    def collaborative_of(train: sp.csr_matrix) -> sp.csr_matrix:
        if id(train) not in learned:
            learned.clear()
            learned[id(train)] = collaborative_neighbours(train)
        return learned[id(train)]

    def method(kind: str) -> Callable[[sp.csr_matrix, np.ndarray], np.ndarray]:
        def top(train: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
            popular = popularity(train)
            if kind == "popularity":
                neighbours = None
            elif kind == "content":
                neighbours = content
            else:
                collaborative = collaborative_of(train)
                neighbours = (collaborative if kind == "collaborative"
                              else hybrid_neighbours(collaborative, content, weight=weight))
            return recommend(train[rows], neighbours, popular, k=k, exclude=train[rows])[0]
        return top

    return {name: method(name) for name in ("hybrid", "collaborative", "content", "popularity")}


# The hybrid's share of collaborative similarity, chosen per refresh on a validation split. Never 1: an item
# nobody has touched yet has content neighbours only, and at 1 it would have none.
HYBRID_WEIGHTS = (0.5, 0.7, 0.8, 0.9)


def hybrid_weight(validation: Split, content: sp.csr_matrix, *, k: int = 10) -> tuple[float, dict[float, float]]:
    """The weight of HYBRID_WEIGHTS with the best NDCG at k on a validation split (made from the evaluation's
    training side, so the items it holds out never choose the weight), and each weight's NDCG."""
    collaborative = collaborative_neighbours(validation.train)
    popular = popularity(validation.train)
    rows = validation.train[validation.rows]
    found = {}
    for weight in HYBRID_WEIGHTS:
        top = recommend(rows, hybrid_neighbours(collaborative, content, weight=weight), popular, k=k,
                        exclude=rows)[0]
        found[weight] = round(hit_rate_and_ndcg(top, validation.held_out, k=k)[1], 4)
    return max(found, key=lambda w: (found[w], -abs(w - 0.7))), found
