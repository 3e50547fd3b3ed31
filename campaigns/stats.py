"""The statistics of an experiment from its counts: conversion rates, uplift over the baseline with its interval,
the two-proportion test, the Bayesian probability of being best, the sample size a minimum detectable effect
needs, and a verdict. Pure functions over counts; no database.

Normal quantiles come from the standard library (statistics.NormalDist); the posterior draws from numpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

_NORMAL = NormalDist()
# Draws of each arm's posterior for the probability of being best: its Monte Carlo error is below 0.002.
POSTERIOR_DRAWS = 200_000


@dataclass(frozen=True)
class Arm:
    key: str
    exposed: int       # people
    exposures: int     # times shown
    converted: int     # people who converted

    @property
    def rate(self) -> float | None:
        return self.converted / self.exposed if self.exposed else None


@dataclass(frozen=True)
class Comparison:
    uplift: float | None                # rate minus the baseline's rate (absolute)
    uplift_relative: float | None       # rate over the baseline's, minus 1
    interval: tuple[float, float] | None
    p_value: float | None


def compare(arm: Arm, baseline: Arm, *, confidence: float = 0.95) -> Comparison:
    """The arm against the baseline: the difference of rates with its Wald interval (unpooled), and the pooled
    two-proportion z-test's two-sided p-value (the same as a chi-square test of the 2x2 table without continuity
    correction)."""
    if not arm.exposed or not baseline.exposed:
        return Comparison(None, None, None, None)
    p1, p0 = arm.rate, baseline.rate
    uplift = p1 - p0
    relative = (p1 / p0 - 1) if p0 else None
    z = _NORMAL.inv_cdf(0.5 + confidence / 2)
    spread = math.sqrt(p1 * (1 - p1) / arm.exposed + p0 * (1 - p0) / baseline.exposed)
    pooled = (arm.converted + baseline.converted) / (arm.exposed + baseline.exposed)
    pooled_spread = math.sqrt(pooled * (1 - pooled) * (1 / arm.exposed + 1 / baseline.exposed))
    p_value = 1.0 if pooled_spread == 0 else 2 * (1 - _NORMAL.cdf(abs(uplift) / pooled_spread))
    return Comparison(uplift, relative, (uplift - z * spread, uplift + z * spread), p_value)


def probability_best(arms: list[Arm], *, seed: int = 0) -> dict[str, float]:
    """For each arm, the posterior probability that its true rate is the highest (Beta(1 + converted,
    1 + exposed - converted) posteriors, uniform priors), by Monte Carlo with a fixed seed: the same counts
    always give the same answer."""
    if not arms:
        return {}
    rng = np.random.default_rng(seed)
    draws = np.stack([rng.beta(1 + a.converted, 1 + a.exposed - a.converted, POSTERIOR_DRAWS) for a in arms])
    wins = np.bincount(draws.argmax(axis=0), minlength=len(arms)) / POSTERIOR_DRAWS
    return {a.key: float(w) for a, w in zip(arms, wins)}


def sample_size(*, baseline_rate: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """People per arm for a two-sided two-proportion test at `alpha` to detect an absolute change of `effect`
    from `baseline_rate` with probability `power`. None when the change leaves the 0..1 range."""
    target = baseline_rate + effect
    if effect == 0 or not 0 < baseline_rate < 1 or not 0 < target < 1:
        return None
    z_alpha, z_power = _NORMAL.inv_cdf(1 - alpha / 2), _NORMAL.inv_cdf(power)
    mean = (baseline_rate + target) / 2
    n = (z_alpha * math.sqrt(2 * mean * (1 - mean))
         + z_power * math.sqrt(baseline_rate * (1 - baseline_rate) + target * (1 - target))) ** 2 / effect ** 2
    return math.ceil(n)


def verdict(arms: list[Arm], baseline: Arm, comparisons: dict[str, Comparison], best: dict[str, float], *,
            needed: int | None, alpha: float = 0.05) -> str:
    """"winner" when an arm beats the baseline significantly and is very probably the best; "no difference"
    once every arm has the people the minimum detectable effect needs and none differs significantly; "keep
    running" otherwise."""
    for arm in arms:
        c = comparisons.get(arm.key)
        if c and c.p_value is not None and c.p_value < alpha and c.uplift > 0 and best.get(arm.key, 0) >= 0.95:
            return "winner"
    if needed is not None and all(a.exposed >= needed for a in [*arms, baseline]) and not any(
            c.p_value is not None and c.p_value < alpha for c in comparisons.values()):
        return "no difference"
    return "keep running"
