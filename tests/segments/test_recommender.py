"""The recommender's pure parts (segments/recommender.py): the time split against a reference, and the methods on
planted tastes beside the `implicit` library's ALS."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from segments import recommender


@st.composite
def interactions(draw):
    people, items = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    cells = draw(st.sets(st.tuples(st.integers(0, people - 1), st.integers(0, items - 1)), min_size=1, max_size=40))
    cells = sorted(cells)
    weights = draw(st.lists(st.integers(1, 9), min_size=len(cells), max_size=len(cells)))
    times = draw(st.lists(st.integers(0, 10_000), min_size=len(cells), max_size=len(cells), unique=True))
    return people, items, cells, weights, times


@settings(max_examples=200, deadline=None)
@given(interactions(), st.integers(0, 10), st.integers(0, 3))
def test_a_time_split_holds_out_each_chosen_persons_latest_new_item(data, people_asked, seed):
    people, items, cells, weights, times = data
    rows, columns = zip(*cells)
    matrix = sp.csr_matrix((np.array(weights, dtype=np.float32), (rows, columns)), shape=(people, items))
    # Cells are sorted by (row, column): the canonical CSR order, which first_seen follows.
    first_seen = np.array(times, dtype=np.float64)

    split = recommender.time_split(matrix, first_seen, people=people_asked, seed=seed)

    per_person = {}
    for (row, column), weight, time in zip(cells, weights, times):
        per_person.setdefault(row, []).append((time, column, weight))
    eligible = {row for row, touched in per_person.items() if len(touched) >= 2}
    assert set(split.rows.tolist()) <= eligible
    assert len(split.rows) == min(people_asked, len(eligible))
    expected = {row: max(per_person[row])[1] for row in split.rows.tolist()}
    assert dict(zip(split.rows.tolist(), split.held_out.tolist())) == expected
    kept = {(row, column): (weight, time) for row, touched in per_person.items() for time, column, weight in touched
            if expected.get(row) != column}
    train = split.train.tocoo()
    assert {(r, c): w for r, c, w in zip(train.row.tolist(), train.col.tolist(), train.data.tolist())} == \
        {cell: weight for cell, (weight, _) in kept.items()}
    # The kept times stay aligned with train's entries, so a validation split can be taken from it.
    ordered = sorted(kept)
    assert split.train_first_seen.tolist() == [kept[cell][1] for cell in ordered]


def _planted(seed: int = 1, people: int = 4000, categories: int = 20, per_category: int = 15):
    """Each person takes 80% of their interactions from one category, the rest anywhere; within a category a
    few items are far more popular."""
    rng = np.random.default_rng(seed)
    n_items = categories * per_category
    rows, columns, times = [], [], []
    for person in range(people):
        favourite = rng.integers(categories)
        for n in range(rng.integers(4, 12)):
            category = favourite if rng.random() < 0.8 else rng.integers(categories)
            rows.append(person)
            columns.append(category * per_category + int(per_category * rng.random() ** 2))
            times.append(rng.random())
    cells = {}
    for row, column, time in zip(rows, columns, times):
        weight, first = cells.get((row, column), (0, 2.0))
        cells[(row, column)] = (weight + 1, min(first, time))
    ordered = sorted(cells)
    matrix = sp.csr_matrix((np.array([cells[c][0] for c in ordered], dtype=np.float32),
                            ([c[0] for c in ordered], [c[1] for c in ordered])), shape=(people, n_items))
    texts = recommender.item_texts([{"name": f"Item {i}", "category": f"Shop > Category {i // per_category}",
                                     "brand": f"Brand {i % 7}"} for i in range(n_items)])
    return matrix, np.array([cells[c][1] for c in ordered]), texts


def _als(train: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    confidence = recommender.confidence(train).tocsr()
    confidence.data *= 40
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=32, iterations=15, regularization=0.05, random_state=0)
        model.fit(confidence, show_progress=False)
        return model.recommend(rows, confidence[rows], N=10, filter_already_liked_items=True)[0]


def test_on_planted_tastes_the_hybrid_beats_popularity_and_matches_the_reference_als():
    matrix, first_seen, texts = _planted()
    split = recommender.time_split(matrix, first_seen, people=1500)
    content = recommender.content_neighbours(texts)
    validation = recommender.time_split(split.train, split.train_first_seen, people=1500, seed=1)
    weight, by_weight = recommender.hybrid_weight(validation, content)

    table = recommender.evaluate(split, {**recommender.neighbour_methods(content, weight=weight), "als": _als})

    assert weight in recommender.HYBRID_WEIGHTS and set(by_weight) == set(recommender.HYBRID_WEIGHTS)
    hybrid, popular, als = (table[m]["hit_rate_at_10"] for m in ("hybrid", "popularity", "als"))
    assert hybrid > 2 * popular, table
    assert hybrid >= 0.9 * als, table
    # Content alone knows only the categories, which the planted taste follows: far above popularity too.
    assert table["content"]["hit_rate_at_10"] > popular, table


def test_an_item_nobody_touched_still_has_neighbours_through_its_words():
    matrix, _, texts = _planted(people=500)
    untouched = matrix.shape[1]
    matrix = sp.hstack([matrix, sp.csr_matrix((matrix.shape[0], 1))]).tocsr()
    texts = [*texts, recommender.item_texts([{"name": "Item new", "category": "Shop > Category 3",
                                              "brand": "Brand 1"}])[0]]
    collaborative = recommender.collaborative_neighbours(matrix)
    hybrid = recommender.hybrid_neighbours(collaborative, recommender.content_neighbours(texts), weight=0.9)

    assert collaborative[untouched].nnz == 0
    neighbours = hybrid[untouched].indices
    assert len(neighbours) == recommender.NEIGHBOURS
    assert {int(i) // 15 for i in neighbours[np.argsort(-hybrid[untouched].data)][:10]} == {3}
