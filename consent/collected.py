"""The consent signals a collected message carries, read without the database. Pure functions.

- Segment's consent context: `context.consent.categoryPreferences` = {"Advertising": true, ...};
- an IAB TCF v2 string: `context.consent.tcString`, or `context.gdpr_consent` as ad tech names it;
- Global Privacy Control: `context.gpc` (the collection API sets it from the `Sec-GPC: 1` request header).
"""
from __future__ import annotations

from dataclasses import dataclass

from iab_tcf import decode_v2


@dataclass(frozen=True)
class TCFConsent:
    purposes: frozenset[int]
    policy_version: int
    cmp_id: int


@dataclass(frozen=True)
class CollectedSignals:
    categories: dict[str, bool]
    tc_string: str
    tcf: TCFConsent | None
    tcf_error: str
    gpc: bool

    @property
    def empty(self) -> bool:
        return not self.categories and not self.tc_string and not self.gpc


def tcf_decode(tc_string: str) -> TCFConsent:
    """The purposes a TCF v2 string consents to. Raises ValueError for a string that is not TCF v2."""
    try:
        decoded = decode_v2(tc_string.strip())
    except Exception as exc:  # noqa: BLE001 - the decoder raises whatever its bit reader hits
        raise ValueError(f"not a TCF v2 string: {type(exc).__name__}") from exc
    if decoded.version != 2:
        raise ValueError(f"TCF version {decoded.version}, only 2 is supported")
    return TCFConsent(purposes=frozenset(k for k, v in decoded.purposes_consent.items() if v),
                      policy_version=decoded.tcf_policy_version, cmp_id=decoded.cmp_id)


def message_signals(payload: dict) -> CollectedSignals | None:
    """The consent signals of one message, or None when it carries none (the common case, checked first)."""
    context = payload.get("context")
    if not isinstance(context, dict):
        return None
    consent = context.get("consent")
    consent = consent if isinstance(consent, dict) else {}
    if not consent and "gpc" not in context and "gdpr_consent" not in context:
        return None
    preferences = consent.get("categoryPreferences")
    categories = ({str(k): v for k, v in preferences.items() if isinstance(v, bool)}
                  if isinstance(preferences, dict) else {})
    tc_string = consent.get("tcString") or context.get("gdpr_consent") or ""
    tc_string = tc_string if isinstance(tc_string, str) else ""
    tcf, tcf_error = None, ""
    if tc_string:
        try:
            tcf = tcf_decode(tc_string)
        except ValueError as exc:
            tcf_error = str(exc)
    gpc = context.get("gpc") in (True, 1, "1", "true")
    signals = CollectedSignals(categories, tc_string, tcf, tcf_error, gpc)
    return None if signals.empty else signals
