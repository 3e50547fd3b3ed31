"""The experiment statistics against scipy.stats on the same counts."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate
from scipy import stats as scipy_stats

from campaigns import stats

counts = st.integers(20, 5_000).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n)))


@settings(max_examples=60, deadline=None)
@given(arm=counts, base=counts)
def test_the_two_proportion_test_and_interval_agree_with_scipy(arm, base):
    (n1, c1), (n0, c0) = arm, base
    result = stats.compare(stats.Arm("B", n1, n1, c1), stats.Arm("control", n0, n0, c0))
    if c1 + c0 in (0, n1 + n0):
        assert result.p_value == 1.0  # nobody or everybody converted: no evidence of a difference
    else:
        expected = scipy_stats.chi2_contingency([[c1, n1 - c1], [c0, n0 - c0]], correction=False).pvalue
        assert result.p_value == pytest.approx(expected, rel=1e-6, abs=1e-12)
    p1, p0 = c1 / n1, c0 / n0
    half = scipy_stats.norm.ppf(0.975) * math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    assert result.uplift == pytest.approx(p1 - p0)
    assert result.interval == pytest.approx((p1 - p0 - half, p1 - p0 + half))


@pytest.mark.parametrize("a, b", [((1000, 40), (1000, 60)), ((200, 10), (220, 9)), ((5000, 500), (5000, 500))])
def test_the_probability_of_being_best_matches_the_integral_of_the_posteriors(a, b):
    (na, ca), (nb, cb) = a, b
    posterior_a = scipy_stats.beta(1 + ca, 1 + na - ca)
    posterior_b = scipy_stats.beta(1 + cb, 1 + nb - cb)
    b_wins, _ = integrate.quad(lambda x: posterior_b.pdf(x) * posterior_a.cdf(x), 0, 1, limit=200)
    got = stats.probability_best([stats.Arm("A", na, na, ca), stats.Arm("B", nb, nb, cb)])
    assert got["B"] == pytest.approx(b_wins, abs=0.005)
    assert got["A"] + got["B"] == pytest.approx(1)


@pytest.mark.parametrize("baseline, effect", [(0.05, 0.01), (0.2, -0.03), (0.5, 0.1), (0.01, 0.002)])
def test_the_sample_size_reaches_the_power_and_one_less_does_not(baseline, effect):
    n = stats.sample_size(baseline_rate=baseline, effect=effect)
    target = baseline + effect

    def power(people: int) -> float:
        # The power of the pooled two-sided test at 5% with `people` per arm, from scipy's normal distribution.
        mean = (baseline + target) / 2
        null_spread = math.sqrt(2 * mean * (1 - mean) / people)
        spread = math.sqrt((baseline * (1 - baseline) + target * (1 - target)) / people)
        critical = scipy_stats.norm.ppf(0.975) * null_spread
        return scipy_stats.norm.sf((critical - abs(effect)) / spread)

    assert power(n) >= 0.8 > power(n - 1) - 1e-3
    assert stats.sample_size(baseline_rate=0.05, effect=-0.06) is None


def test_the_verdict():
    control = stats.Arm("control", 10_000, 12_000, 400)
    better = stats.Arm("B", 10_000, 12_000, 520)
    same = stats.Arm("A", 10_000, 12_000, 405)

    def decide(arms):
        comparisons = {a.key: stats.compare(a, control) for a in arms}
        best = stats.probability_best([control, *arms])
        return stats.verdict(arms, control, comparisons, best,
                             needed=stats.sample_size(baseline_rate=0.04, effect=0.01))

    assert decide([same, better]) == "winner"
    assert decide([same]) == "no difference"
    early = stats.Arm("A", 300, 300, 15)
    assert stats.verdict([early], control, {"A": stats.compare(early, control)}, {"A": 0.5},
                         needed=stats.sample_size(baseline_rate=0.04, effect=0.01)) == "keep running"
