"""The preview's estimate past the exact limit: a random sample of profiles, and the 95% interval it claims."""
import math

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.models import Profile
from segments import selectors

pytestmark = pytest.mark.django_db


def _poisson_limits(k: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Garwood) limits of a Poisson mean from one count, by bisection on the summed probabilities."""

    def cdf(mean: float, upto: int) -> float:
        if mean == 0:
            return 1.0
        return sum(math.exp(i * math.log(mean) - mean - math.lgamma(i + 1)) for i in range(upto + 1))

    def solve(target, upto, rising):
        low, high = 0.0, k + 20 * math.sqrt(k + 1) + 20
        for _ in range(100):
            mid = (low + high) / 2
            if (cdf(mid, upto) > target) == rising:
                high = mid
            else:
                low = mid
        return (low + high) / 2

    upper = solve(alpha / 2, k, rising=False)
    lower = 0.0 if k == 0 else solve(1 - alpha / 2, k - 1, rising=False)
    return lower, upper


@settings(max_examples=60, deadline=None)
@given(matched=st.integers(0, 3_000))
def test_the_margin_covers_both_exact_poisson_limits(matched):
    lower, upper = _poisson_limits(matched)
    # The margin is the count's Poisson half-width scaled by sqrt(1 - p) / p: unscaled, it covers both exact
    # limits, and not by much more.
    half_width = selectors._margin(matched, 0.5) / (math.sqrt(0.5) / 0.5)
    assert half_width >= max(upper - matched, matched - lower) * 0.99
    assert half_width <= max(upper - matched, matched - lower) * 1.03


def test_a_sample_of_a_fifth_of_the_profiles_estimates_the_count_within_its_interval(monkeypatch):
    now = timezone.now()
    Profile.objects.bulk_create([
        Profile(created_at=now, updated_at=now, traits={"plan": "pro" if n % 3 == 0 else "free"})
        for n in range(3_000)])
    truth = Profile.objects.filter(traits__plan="pro", merged_into__isnull=True).count()
    live = Profile.objects.filter(merged_into__isnull=True).count()
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Profile._meta.db_table}")
    monkeypatch.setattr(selectors, "PREVIEW_EXACT_UP_TO", 0)
    monkeypatch.setattr(selectors, "PREVIEW_SAMPLE_PROFILES", live // 5)
    preview = selectors.segment_preview(definition={"trait": "plan", "op": "eq", "value": "pro"})
    assert preview.estimated
    # About a fifth drawn, a third of them matching: the margin the sample's size implies, within a tenth.
    expected = 1.96 * math.sqrt(truth / 5 * 0.8) / 0.2
    assert 0.8 * expected <= preview.margin <= 1.2 * expected
    # Twice the 95% half-width: a failure is a broken estimator, not bad luck (odds below 1 in 10,000).
    assert abs(preview.count - truth) <= 2 * preview.margin
    assert len(preview.sample) == selectors.PREVIEW_SAMPLE
    assert set(Profile.objects.filter(id__in=preview.sample).values_list("traits__plan", flat=True)) == {"pro"}
