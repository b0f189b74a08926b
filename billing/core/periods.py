"""Billing periods and proration, in UTC.

A monthly period keeps its anchor day, clamped to the month's end (anchored on the 31st: Jan 31 ->
Feb 28 -> Mar 31). Proration is by the second, computed exactly and rounded once, half-even.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime
from fractions import Fraction

from billing.core.errors import BillingError, ErrorCode
from models.enums import BillingInterval

_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")  # ASCII digits: \d takes any script's


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("billing times must be timezone-aware")
    return moment.astimezone(UTC)


def add_months(start: datetime, months: int, anchor_day: int) -> datetime:
    """``start`` moved by ``months`` calendar months, on ``anchor_day`` clamped to the month's end."""
    start = _utc(start)
    index = start.year * 12 + (start.month - 1) + months
    year, month = divmod(index, 12)
    day = min(anchor_day, calendar.monthrange(year, month + 1)[1])
    return start.replace(year=year, month=month + 1, day=day)


def period_end(start: datetime, interval: BillingInterval, anchor_day: int, periods: int = 1) -> datetime:
    months = 12 * periods if interval is BillingInterval.YEARLY else periods
    return add_months(start, months, anchor_day)


def period_containing(anchor: datetime, interval: BillingInterval, moment: datetime) -> tuple[datetime, datetime]:
    """The [start, end) period of a subscription anchored at ``anchor`` that contains ``moment``."""
    anchor, moment = _utc(anchor), _utc(moment)
    if moment < anchor:
        raise ValueError("moment is before the anchor")
    step = 12 if interval is BillingInterval.YEARLY else 1
    # Jump close with month arithmetic, then settle by at most a step either way.
    months = ((moment.year - anchor.year) * 12 + moment.month - anchor.month) // step * step
    start = add_months(anchor, months, anchor.day)
    if start > moment:
        months -= step
        start = add_months(anchor, months, anchor.day)
    end = add_months(anchor, months + step, anchor.day)
    while end <= moment:
        months += step
        start, end = end, add_months(anchor, months + step, anchor.day)
    return start, end


def prorate(amount: int, period_start: datetime, period_end: datetime, moment: datetime) -> int:
    """The share of ``amount`` (minor units) for what is left of the period after ``moment``,
    by the second, rounded once, half-even."""
    start, end, now = _utc(period_start), _utc(period_end), _utc(moment)
    if not start <= now <= end or end <= start:
        raise ValueError("moment must lie within the period")
    total = int((end - start).total_seconds())
    left = int((end - now).total_seconds())
    return round_half_even(Fraction(amount * left, total))


def round_half_even(value: Fraction) -> int:
    """Exact half-even rounding of a fraction to an integer (Python's round does this for Fraction)."""
    return round(value)


def month_range(month: str) -> tuple[datetime, datetime]:
    # Exactly YYYY-MM, no spaces around it: the month names the download's file (a header).
    match = _MONTH.fullmatch(month)
    if match is None:
        raise BillingError(ErrorCode.INVALID_INPUT, "a month is written YYYY-MM", field="month")
    year, number = int(match.group(1)), int(match.group(2))
    if not 2000 <= year <= 9998:
        raise BillingError(ErrorCode.INVALID_INPUT, "year out of range", field="month")
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return start, end
