"""Keeps the regime stored on each profile in step with its country traits (the mapping: consent.regimes)."""
from __future__ import annotations

from collections.abc import Collection

from consent.regimes import REGIME_TRAITS, regime_for
from profiles.services.regime import profiles_set_regime


def consent_regimes_store(*, traits: dict[int, dict]) -> int:
    """Stores on each profile the regime these traits (its current ones) name, "" when they name none, so the
    CONSENT_DEFAULT_REGIME setting applies when read. One statement; returns how many profiles changed.
    The caller holds the profiles' locks, or wrote the traits in its own transaction."""
    return profiles_set_regime(regimes={pid: regime_for(t, default="") for pid, t in traits.items()})


def consent_regimes_follow(*, traits_changed: dict[int, tuple[Collection[str], dict]]) -> int:
    """The pipeline's step after identity resolution: the profiles whose country traits the batch changed
    (a merge's included), as (changed keys, traits as written), get their regime again. Nothing to do, and no
    query, in a batch that changed no country."""
    return consent_regimes_store(traits={pid: traits for pid, (keys, traits) in traits_changed.items()
                                         if not REGIME_TRAITS.isdisjoint(keys)})
