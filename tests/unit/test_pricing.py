"""Pricing and delivery dates (app/orders/pricing.py), each against an oracle of its own:
the VAT by exact fractions rounded half up with `decimal`, business days by calendar
arithmetic (whole weeks plus a remainder, a weekend skipped when the remainder crosses
one) and by a hand-written table across month and year ends. There are no holidays in
the rules: only Saturdays and Sundays are skipped."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.orders.pricing import Totals, add_business_days, compute_totals

FLAT, FREE_FROM, VAT = 495, 5000, 2000  # the shop's defaults: 4.95, free from 50.00, 20 %


def vat_half_up(total: int, basis_points: int) -> int:
    """The tax part of a VAT-inclusive total: total * rate / (1 + rate), half up."""
    exact = Fraction(total * basis_points, 10000 + basis_points)
    return int(
        (Decimal(exact.numerator) / Decimal(exact.denominator)).quantize(
            Decimal(1), rounding=ROUND_HALF_UP
        )
    )


def business_days_by_weeks(start: date, days: int) -> date:
    """The `days`-th weekday after `start`, by arithmetic: a weekend start counts from the
    Friday before it; whole weeks are 7 days; a remainder that runs past Friday skips the
    weekend."""
    if days == 0:
        return start
    weekday = start.weekday()
    base = start - timedelta(days=max(0, weekday - 4))
    weekday = min(weekday, 4)
    weeks, rest = divmod(days, 5)
    skip = 2 if weekday + rest > 4 else 0
    return base + timedelta(days=7 * weeks + rest + skip)


# -- shipping and totals ---------------------------------------------------------------------


def totals(*lines: int, free_from: int = FREE_FROM, vat: int = VAT) -> Totals:
    return compute_totals(
        list(lines), shipping_flat=FLAT, free_from=free_from, tax_basis_points=vat
    )


def test_shipping_is_free_from_exactly_the_threshold() -> None:
    # given baskets one minor unit below, exactly at and one above the threshold
    below, at, above = totals(2500, 2499), totals(2500, 2500), totals(2500, 2501)
    # then only the one below pays the flat fee, and it is part of the total
    assert (below.shipping_minor, below.total_minor) == (FLAT, 4999 + FLAT)
    assert (at.shipping_minor, at.total_minor) == (0, 5000)
    assert (above.shipping_minor, above.total_minor) == (0, 5001)


def test_an_empty_basket_pays_shipping_and_a_zero_threshold_makes_everything_free() -> None:
    assert totals() == Totals(0, FLAT, vat_half_up(FLAT, VAT), FLAT)
    assert totals(1, free_from=0).shipping_minor == 0


def test_the_subtotal_is_the_sum_of_the_lines() -> None:
    result = totals(1299, 2499, 1)
    assert result.subtotal_minor == 3799
    assert result.total_minor == 3799 + FLAT


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (3, 1),  # 3 / 6 = 0.5: half rounds up
        (9, 2),  # 1.5 -> 2
        (2, 0),  # 0.33 -> 0
        (4, 1),  # 0.67 -> 1
        (6, 1),  # exactly 1
        (1299, 217),  # 216.5 -> 217
        (5000, 833),  # 833.33 -> 833
        (0, 0),
    ],
)
def test_vat_is_the_tax_part_of_the_total_rounded_half_up(total: int, expected: int) -> None:
    # at 20 % the tax part of a total is total / 6
    assert compute_totals(
        [total], shipping_flat=0, free_from=0, tax_basis_points=VAT
    ).tax_minor == (expected)


def test_a_tax_part_just_below_one_half_rounds_down() -> None:
    # at 0.01 %, 5000 * 1 / 10001 = 0.49995: below one half by less than 1 / (2 * 10001)
    assert totals(5000, free_from=0, vat=1).tax_minor == 0
    assert vat_half_up(5000, 1) == 0
    # and 5001 * 1 / 10001 = 0.50005 rounds up
    assert totals(5001, free_from=0, vat=1).tax_minor == 1


def test_vat_at_other_rates_and_at_zero() -> None:
    # 7 %: 107 * 700 / 10700 = 7 exactly; 10 %: 55 / 11 = 5; 0 %: no tax at all
    assert totals(107, free_from=0, vat=700).tax_minor == 7
    assert totals(55, free_from=0, vat=1000).tax_minor == 5
    assert totals(99_999, free_from=0, vat=0).tax_minor == 0


@given(
    lines=st.lists(st.integers(min_value=0, max_value=500_000), max_size=6),
    free_from=st.integers(min_value=0, max_value=100_000),
    vat=st.integers(min_value=0, max_value=5000),
)
def test_totals_agree_with_exact_arithmetic(lines: list[int], free_from: int, vat: int) -> None:
    result = compute_totals(lines, shipping_flat=FLAT, free_from=free_from, tax_basis_points=vat)
    subtotal = sum(lines)
    shipping = FLAT if subtotal < free_from else 0
    assert result == Totals(
        subtotal, shipping, vat_half_up(subtotal + shipping, vat), subtotal + shipping
    )


# -- business days -------------------------------------------------------------------------

# (start, business days, expected): written by hand from a calendar.
CALENDAR = [
    (date(2026, 11, 30), 0, date(2026, 11, 30)),  # Monday, nothing to add
    (date(2026, 11, 28), 0, date(2026, 11, 28)),  # Saturday stays Saturday when adding 0
    (date(2026, 11, 30), 1, date(2026, 12, 1)),  # Monday -> Tuesday, across a month end
    (date(2026, 11, 30), 4, date(2026, 12, 4)),  # Monday -> Friday
    (date(2026, 11, 30), 5, date(2026, 12, 7)),  # Monday -> next Monday
    (date(2026, 12, 4), 1, date(2026, 12, 7)),  # Friday -> Monday
    (date(2026, 12, 3), 2, date(2026, 12, 7)),  # Thursday -> Monday
    (date(2026, 12, 5), 1, date(2026, 12, 7)),  # Saturday -> Monday
    (date(2026, 12, 6), 1, date(2026, 12, 7)),  # Sunday -> Monday
    (date(2026, 12, 5), 5, date(2026, 12, 11)),  # Saturday -> the Friday after
    (date(2026, 12, 31), 1, date(2027, 1, 1)),  # Thursday -> Friday, across a year end
    (date(2026, 12, 31), 2, date(2027, 1, 4)),  # Thursday -> Monday, across a year end
    (date(2027, 12, 31), 1, date(2028, 1, 3)),  # Friday -> Monday, across a year end
    (date(2028, 2, 28), 2, date(2028, 3, 1)),  # Monday -> Wednesday, across 29 February
    (date(2026, 11, 27), 3, date(2026, 12, 2)),  # Friday -> Wednesday
    (date(2026, 11, 30), 10, date(2026, 12, 14)),  # two weeks
    (date(2026, 11, 30), 23, date(2026, 12, 31)),  # Monday 30 Nov + 23 -> Thursday 31 Dec
]


@pytest.mark.parametrize(("start", "days", "expected"), CALENDAR)
def test_business_days_by_the_calendar(start: date, days: int, expected: date) -> None:
    assert add_business_days(start, days) == expected
    assert business_days_by_weeks(start, days) == expected  # the oracle agrees too


def test_a_negative_count_adds_nothing() -> None:
    assert add_business_days(date(2026, 12, 5), -3) == date(2026, 12, 5)


@given(
    start=st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)),
    days=st.integers(min_value=0, max_value=60),
)
def test_business_days_agree_with_week_arithmetic(start: date, days: int) -> None:
    result = add_business_days(start, days)
    assert result == business_days_by_weeks(start, days)
    if days:
        assert result.weekday() < 5
