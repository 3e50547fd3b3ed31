"""Due dates of data subject requests by regime and kind."""
from datetime import date

import pytest

from consent.deadlines import add_business_days, add_months, deadlines_for, extended_due


def test_gdpr_answers_within_one_month_clamped_to_the_month_end_and_extends_by_two():
    dates = deadlines_for(kind="deletion", regime="gdpr", received=date(2026, 1, 31))
    assert dates.due == date(2026, 2, 28) and dates.acknowledge_by is None and dates.verification_required
    # Three months from receipt in all, not two months after a due date February cut short.
    assert extended_due(regime="gdpr", received=date(2026, 1, 31), due=dates.due) == date(2026, 4, 30)


def test_ccpa_acknowledges_in_ten_business_days_and_answers_in_forty_five_days():
    # Received Friday 20 November 2026: Thanksgiving (26 November) is not a business day.
    dates = deadlines_for(kind="access", regime="ccpa", received=date(2026, 11, 20))
    assert dates.acknowledge_by == date(2026, 12, 7)
    assert dates.due == date(2027, 1, 4)
    assert extended_due(regime="ccpa", received=date(2026, 11, 20), due=dates.due) == date(2027, 2, 18)


def test_an_opt_out_of_sale_is_due_in_fifteen_business_days_without_verification_or_extension():
    dates = deadlines_for(kind="opt_out_sale", regime="gdpr", received=date(2026, 12, 21))
    # 25 December and 1 January are holidays, weekends are skipped.
    assert dates.due == date(2027, 1, 13)
    assert not dates.verification_required and not dates.extendable


@pytest.mark.parametrize(("day", "months", "expected"), [
    (date(2026, 3, 31), 1, date(2026, 4, 30)), (date(2028, 1, 30), 1, date(2028, 2, 29)),
    (date(2026, 11, 15), 2, date(2027, 1, 15))])
def test_add_months(day, months, expected):
    assert add_months(day, months) == expected


def test_business_days_skip_weekends():
    assert add_business_days(date(2026, 11, 13), 1) == date(2026, 11, 16)  # Friday -> Monday
