"""Periods keep their anchor day; proration is by the second and rounded once; margins are exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.catalog.pricing import partner_price
from billing.core.money import Money
from billing.core.periods import add_months, period_containing, period_end, prorate
from models.enums import BillingInterval, MarginKind


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_monthly_period_anchored_on_the_31st_clamps_and_comes_back() -> None:
    start = utc(2026, 1, 31, 10)
    ends = [period_end(start, BillingInterval.MONTHLY, 31, n) for n in (1, 2, 3)]
    assert ends == [utc(2026, 2, 28, 10), utc(2026, 3, 31, 10), utc(2026, 4, 30, 10)]
    assert period_end(utc(2028, 1, 31), BillingInterval.MONTHLY, 31) == utc(2028, 2, 29)  # leap year
    assert period_end(utc(2024, 2, 29), BillingInterval.YEARLY, 29) == utc(2025, 2, 28)


def test_the_period_containing_a_moment() -> None:
    anchor = utc(2026, 1, 31)
    assert period_containing(anchor, BillingInterval.MONTHLY, utc(2026, 3, 15)) == (utc(2026, 2, 28), utc(2026, 3, 31))
    assert period_containing(anchor, BillingInterval.MONTHLY, utc(2026, 3, 31)) == (utc(2026, 3, 31), utc(2026, 4, 30))
    assert period_containing(anchor, BillingInterval.YEARLY, utc(2027, 1, 30)) == (utc(2026, 1, 31), utc(2027, 1, 31))


def test_an_upgrade_halfway_through_pays_half_the_difference() -> None:
    start, end = utc(2026, 4, 1), utc(2026, 5, 1)  # 30 days
    assert prorate(7000, start, end, utc(2026, 4, 16)) == 3500
    assert prorate(1, start, end, start + (end - start) / 2) == 0  # 0.5 rounds to even
    assert prorate(3, start, end, start + (end - start) / 2) == 2  # 1.5 rounds to even


def test_off_centre_proration_is_for_the_time_left() -> None:
    """Away from the middle, time used and time left differ: swapping them fails here."""
    start, end = utc(2027, 1, 31), utc(2027, 2, 28)  # anchored on the 31st: 28 days
    # 3 days used, 25 left: 4910 x 25 / 28 = 122750 / 28 = 4383.93 -> 4384 (the swap gives 526).
    assert prorate(4910, start, end, utc(2027, 2, 3)) == 4384
    # 7 days used, 21 left: 4910 x 21 / 28 = 3682.5, a tie -> 3682, the even one (half-up: 3683;
    # the swap: 4910 x 7 / 28 = 1227.5 -> 1228).
    assert prorate(4910, start, end, utc(2027, 2, 7)) == 3682


def test_margins_give_the_partner_price_exactly() -> None:
    basic = Money(2900, "USD")
    assert partner_price(basic, MarginKind.PERCENTAGE, Decimal("20")) == Money(3480, "USD")
    assert partner_price(basic, MarginKind.FIXED, Money(500, "USD")) == Money(3400, "USD")
    assert partner_price(Money(4990, "BRL"), MarginKind.PERCENTAGE, Decimal("12.5")) == Money(
        5614, "BRL"
    )  # 623.75 -> 624


@given(
    anchor=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)),
    months=st.integers(0, 240),
)
def test_periods_against_a_day_by_day_reference(anchor: datetime, months: int) -> None:
    moved = add_months(anchor, months, anchor.day)
    year, month = divmod(anchor.year * 12 + anchor.month - 1 + months, 12)
    # Reference: walk to the first of the target month, then to the anchor day or the month's last day.
    first = datetime(year, month + 1, 1, tzinfo=UTC)
    day = first
    while (day + timedelta(days=1)).month == month + 1 and day.day < anchor.day:
        day += timedelta(days=1)
    assert moved.date() == day.date() and moved.time() == anchor.time()


@given(
    amount=st.integers(0, 10**12),
    seconds=st.integers(1, 400 * 86_400),
    elapsed=st.data(),
)
def test_proration_against_exact_fractions(amount: int, seconds: int, elapsed: st.DataObject) -> None:
    start = utc(2026, 1, 1)
    end = start + timedelta(seconds=seconds)
    used = elapsed.draw(st.integers(0, seconds))
    share = Fraction(amount * (seconds - used), seconds)
    floor = share.numerator // share.denominator
    rest = share - floor
    expected = floor + (1 if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2) else 0)
    assert prorate(amount, start, end, start + timedelta(seconds=used)) == expected


@given(
    amount=st.integers(0, 10**12),
    percentage=st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False),
)
def test_percentage_margins_against_exact_fractions(amount: int, percentage: Decimal) -> None:
    exact = Fraction(amount) * Fraction(percentage) / 100
    floor = exact.numerator // exact.denominator
    rest = exact - floor
    expected = floor + (1 if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2) else 0)
    assert partner_price(Money(amount, "USD"), MarginKind.PERCENTAGE, percentage).amount == amount + expected


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        add_months(datetime(2026, 1, 1), 1, 1)
