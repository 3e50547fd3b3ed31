"""Keeps the regime stored on each profile in step with its country traits (the mapping: consent.regimes)."""
from __future__ import annotations

from consent.regimes import regime_for
from profiles.services.regime import profiles_set_regime


def consent_regimes_store(*, traits: dict[int, dict]) -> int:
    """Stores on each profile the regime these traits (its current ones) name, "" when they name none, so the
    CONSENT_DEFAULT_REGIME setting applies when read. One statement; returns how many profiles changed.
    The caller holds the profiles' locks, or wrote the traits in its own transaction."""
    return profiles_set_regime(regimes={pid: regime_for(t, default="") for pid, t in traits.items()})
