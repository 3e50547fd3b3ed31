"""Campaign definitions and the arithmetic of deciding, without the database."""
import random
from collections import Counter

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from campaigns import rules
from segments.rules import DefinitionError


@pytest.mark.parametrize("variants, field, words", [
    ([], "variants", "at least one variant"),
    ([{"key": "A", "weight": 60}, {"key": "B", "weight": 30}], "variants[0].weight", "add up to 90"),
    ([{"key": "A", "weight": 50}, {"key": "A", "weight": 50}], "variants[1].key", "two variants"),
    ([{"key": "control", "weight": 100}], "variants[0].key", "without a variant"),
    ([{"key": "A", "weight": "50"}, {"key": "B", "weight": 50}], "variants[0].weight", "number"),
    ([{"key": "A", "weight": 100, "content": "hi"}], "variants[0].content", "JSON object"),
    ([{"key": "A", "weight": 100, "colour": "red"}], "variants[0].colour", "unknown field"),
])
def test_bad_variants_are_refused_at_their_place(variants, field, words):
    with pytest.raises(DefinitionError) as refused:
        rules.parse_variants(variants)
    assert refused.value.field == field and words in refused.value.message


@pytest.mark.parametrize("caps, field", [
    ({"count": 3}, "caps"),
    ([{"count": 0, "per": "day"}], "caps[0].count"),
    ([{"count": 3, "per": "month"}], "caps[0].per"),
    ([{"count": 3, "per": "day", "x": 1}], "caps[0].x"),
])
def test_bad_caps_are_refused_at_their_place(caps, field):
    with pytest.raises(DefinitionError) as refused:
        rules.parse_caps(caps)
    assert refused.value.field == field


def test_a_goal_needs_its_attribution_window_and_targeting_may_read_the_context():
    with pytest.raises(DefinitionError) as refused:
        rules.parse_goal({"event": "Order Completed"})
    assert refused.value.field == "goal.within"
    assert rules.parse_goal({"event": "Order Completed", "within": "7d"}).name == "Order Completed"
    assert rules.parse_targeting({"context": "page.path", "op": "starts_with", "value": "/shoes"}) is not None
    with pytest.raises(DefinitionError) as refused:
        rules.parse_targeting({"all": [{"trait": "plan", "op": "gte=", "value": 1}]})
    assert refused.value.field == "targeting.all[0].op"


@settings(max_examples=25, deadline=None)
@example(weights=[18, 58, 0], control=0.0, salt="campaign:1")
@given(weights=st.lists(st.integers(0, 100), min_size=1, max_size=4).filter(lambda w: sum(w) > 0),
       control=st.sampled_from([0.0, 0.1, 0.5]), salt=st.sampled_from(["campaign:1", "campaign:2", "holdout"]))
def test_allocation_follows_the_weights_and_is_the_same_every_time(weights, control, salt):
    scale = 100 / sum(weights)
    shares = [w * scale for w in weights]
    # Rounding can leave a last weight of 0 a hair below it.
    shares[-1] = max(0.0, 100 - sum(shares[:-1]))
    variants = tuple(rules.Variant(f"v{i}", share, {}) for i, share in enumerate(shares))
    people = [f"anonymous_id:{n}" for n in range(3000)]
    got = [rules.allocate(salt=salt, subject=p, control_share=control, variants=variants) for p in people]
    assert got == [rules.allocate(salt=salt, subject=p, control_share=control, variants=variants) for p in people]
    counts = Counter(got)
    # Within 6 standard deviations of a binomial draw: hypothesis tries many weightings, and a bound that a fair
    # hash misses once in a million per check keeps the test from failing by chance.
    for key, expected_share in [("control", control)] + [
            (v.key, (1 - control) * v.weight / 100) for v in variants]:
        expected = 3000 * expected_share
        assert abs(counts.get(key, 0) - expected) <= 6 * (expected * (1 - expected_share)) ** 0.5 + 1
    assert not any(counts.get(v.key) for v in variants if v.weight == 0)


def test_two_campaigns_place_people_independently():
    people = [f"user_id:{n}" for n in range(4000)]
    first = [rules.bucket("campaign:1", p) < 0.5 for p in people]
    second = [rules.bucket("campaign:2", p) < 0.5 for p in people]
    both = sum(a and b for a, b in zip(first, second))
    assert 900 <= both <= 1100  # a quarter, as for independent halves


def test_thompson_sampling_sends_most_new_people_to_the_better_variant():
    """A simulation: true conversion rates of 4% and 6%; each new person is allocated from the results so far."""
    rng = random.Random(42)
    true_rate = {"A": 0.04, "B": 0.06}
    variants = (rules.Variant("A", 50, {}), rules.Variant("B", 50, {}))
    stats = {"A": [0, 0], "B": [0, 0]}
    late = Counter()
    for person in range(20_000):
        chosen = rules.thompson_pick(variants, {k: tuple(v) for k, v in stats.items()}, rng)
        stats[chosen][0] += 1
        stats[chosen][1] += rng.random() < true_rate[chosen]
        if person >= 10_000:
            late[chosen] += 1
    assert late["B"] > 0.8 * sum(late.values())
