"""Periods keep their anchor day; proration is by the second and rounded once; margins are exact."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.catalog.pricing import MAX_PERCENTAGE, partner_price
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import MAX_AMOUNT, Money
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


def test_the_first_period_starts_at_the_anchor_and_earlier_moments_are_refused() -> None:
    anchor = utc(2026, 1, 31, 10)
    assert period_containing(anchor, BillingInterval.MONTHLY, anchor) == (anchor, utc(2026, 2, 28, 10))
    assert period_containing(anchor, BillingInterval.YEARLY, anchor) == (anchor, utc(2027, 1, 31, 10))
    with pytest.raises(ValueError, match=r"^moment is before the anchor$"):
        period_containing(anchor, BillingInterval.MONTHLY, anchor - timedelta(seconds=1))


def test_the_period_containing_a_moment_years_after_the_anchor() -> None:
    anchor = utc(2026, 1, 31)
    assert period_containing(anchor, BillingInterval.MONTHLY, utc(2031, 3, 15)) == (utc(2031, 2, 28), utc(2031, 3, 31))
    assert period_containing(anchor, BillingInterval.YEARLY, utc(2031, 3, 15)) == (utc(2031, 1, 31), utc(2032, 1, 31))
    # From the first year a datetime can hold: no month arithmetic may step before it.
    first = datetime(1, 1, 1, tzinfo=UTC)
    assert period_containing(first, BillingInterval.MONTHLY, first) == (first, datetime(1, 2, 1, tzinfo=UTC))
    assert period_containing(first, BillingInterval.MONTHLY, datetime(1, 12, 5, tzinfo=UTC)) == (
        datetime(1, 12, 1, tzinfo=UTC),
        datetime(2, 1, 1, tzinfo=UTC),
    )


@given(
    anchor=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)),
    later=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=40 * 366)),
    interval=st.sampled_from(BillingInterval),
)
def test_the_period_containing_a_moment_against_a_walk_from_the_anchor(
    anchor: datetime, later: timedelta, interval: BillingInterval
) -> None:
    moment = anchor + later
    step = 12 if interval is BillingInterval.YEARLY else 1
    n = 0
    while add_months(anchor, (n + 1) * step, anchor.day) <= moment:
        n += 1
    expected = (add_months(anchor, n * step, anchor.day), add_months(anchor, (n + 1) * step, anchor.day))
    assert period_containing(anchor, interval, moment) == expected


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


def test_proration_runs_from_the_whole_amount_at_the_start_to_nothing_at_the_end() -> None:
    start, end = utc(2026, 4, 1), utc(2026, 5, 1)
    assert prorate(7000, start, end, start) == 7000
    assert prorate(7000, start, end, end) == 0
    outside = r"^moment must lie within the period$"
    for moment in (start - timedelta(seconds=1), end + timedelta(seconds=1)):
        with pytest.raises(ValueError, match=outside):
            prorate(7000, start, end, moment)
    with pytest.raises(ValueError, match=outside):  # an empty period
        prorate(7000, start, start, start)
    with pytest.raises(ValueError, match=outside):  # a period ending before it starts
        prorate(7000, end, start, utc(2026, 4, 16))


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


def test_billing_times_are_utc_whatever_the_servers_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/Sao_Paulo")  # UTC-3: 01:00 UTC on the 31st is still the 30th there
    time.tzset()
    try:
        moved = add_months(utc(2026, 1, 31, 1), 1, 31)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert moved == utc(2026, 2, 28, 1) and moved.utcoffset() == timedelta(0)


def test_naive_times_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match=r"^billing times must be timezone-aware$"):
        period_containing(datetime(2026, 1, 1), BillingInterval.MONTHLY, utc(2026, 1, 2))


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        add_months(datetime(2026, 1, 1), 1, 1)


def refused(error: pytest.ExceptionInfo[BillingError], code: ErrorCode, field: str | None, message: str) -> None:
    """A refusal as the API shows it: its code, the field it names and its message."""
    assert (error.value.code, error.value.field, error.value.message) == (code, field, message)


def test_a_percentage_margin_runs_from_0_to_1000_inclusive() -> None:
    price = Money(2900, "USD")
    assert partner_price(price, MarginKind.PERCENTAGE, Decimal(0)) == price
    assert partner_price(price, MarginKind.PERCENTAGE, MAX_PERCENTAGE) == Money(2900 * 11, "USD")
    for outside in (Decimal("-0.0001"), MAX_PERCENTAGE + Decimal("0.0001")):
        with pytest.raises(BillingError) as error:
            partner_price(price, MarginKind.PERCENTAGE, outside)
        refused(error, ErrorCode.INVALID_AMOUNT, "value", "a margin percentage lies between 0 and 1000")


def test_a_percentage_margin_given_as_money_is_refused() -> None:
    with pytest.raises(BillingError) as error:
        partner_price(Money(2900, "USD"), MarginKind.PERCENTAGE, Money(500, "USD"))
    refused(error, ErrorCode.INVALID_INPUT, "value", "a margin percentage is a number")


def test_a_fixed_margin_is_money_from_zero_to_the_largest_amount() -> None:
    price = Money(2900, "USD")
    assert partner_price(price, MarginKind.FIXED, Money(0, "USD")) == price
    assert partner_price(price, MarginKind.FIXED, Money(MAX_AMOUNT, "USD")) == Money(2900 + MAX_AMOUNT, "USD")
    for outside in (-1, MAX_AMOUNT + 1):
        with pytest.raises(BillingError) as error:
            partner_price(price, MarginKind.FIXED, Money(outside, "USD"))
        refused(error, ErrorCode.INVALID_AMOUNT, "value", "a fixed margin is zero or more")
    with pytest.raises(BillingError) as error:
        partner_price(price, MarginKind.FIXED, Decimal("5"))
    refused(error, ErrorCode.INVALID_INPUT, "value", "a fixed margin is an amount with its currency")
    with pytest.raises(BillingError) as error:
        partner_price(price, MarginKind.FIXED, Money(500, "BRL"))
    refused(error, ErrorCode.CURRENCY_MISMATCH, None, "cannot combine USD and BRL")
