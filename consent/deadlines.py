"""When a data subject request must be acknowledged and answered, by regime and kind. Pure functions.

- GDPR Art. 12(3): answer within one month of receipt, extendable by two further months with reasons.
- CCPA regulations (11 CCR 7021): acknowledge within 10 business days, answer within 45 calendar days,
  extendable once by 45 days with notice to the consumer.
- An opt-out of sale or sharing (11 CCR 7026(f)): act within 15 business days, without identity verification.
Business days skip weekends and US federal holidays (the `holidays` package).
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import holidays

OPT_OUT = "opt_out_sale"


@dataclass(frozen=True)
class Deadlines:
    acknowledge_by: date | None
    due: date
    extendable: bool
    verification_required: bool


def add_months(day: date, months: int) -> date:
    """The same day `months` later, or the last day of that month when it is shorter (31 Jan + 1 = 28/29 Feb)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def add_business_days(day: date, count: int) -> date:
    off = holidays.country_holidays("US", years=range(day.year, day.year + 2))
    while count:
        day += timedelta(days=1)
        if day.weekday() < 5 and day not in off:
            count -= 1
    return day


def deadlines_for(*, kind: str, regime: str, received: datetime | date) -> Deadlines:
    received = received.date() if isinstance(received, datetime) else received
    if kind == OPT_OUT:
        return Deadlines(None, add_business_days(received, 15), extendable=False, verification_required=False)
    if regime == "ccpa":
        return Deadlines(add_business_days(received, 10), received + timedelta(days=45), extendable=True,
                         verification_required=True)
    return Deadlines(None, add_months(received, 1), extendable=True, verification_required=True)


def extended_due(*, regime: str, received: datetime | date, due: date) -> date:
    """The due date after the one extension the regime allows: GDPR three months from receipt in all (counted
    from receipt, not from a due date a short month cut down), CCPA 45 more days."""
    received = received.date() if isinstance(received, datetime) else received
    return due + timedelta(days=45) if regime == "ccpa" else add_months(received, 3)
