"""Partner prices: the platform price plus the partner's margin, exact and rounded once."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from billing.core.errors import BillingError, ErrorCode
from billing.core.money import MAX_AMOUNT, Money
from billing.core.periods import round_half_even
from models.enums import MarginKind

MAX_PERCENTAGE = Decimal(1000)  # a margin of at most 1000 %


def partner_price(platform_price: Money, kind: MarginKind, value: Decimal | Money) -> Money:
    """platform price + margin. A percentage is applied exactly and rounded once, half-even, to
    the currency's minor unit; a fixed margin is an amount of money, added only to a price in its
    own currency (anything else is CURRENCY_MISMATCH: 5.00 KWD is not 5,000 of any other unit)."""
    if kind is MarginKind.PERCENTAGE:
        if isinstance(value, Money):
            raise BillingError(ErrorCode.INVALID_INPUT, "a margin percentage is a number", field="value")
        percentage = Decimal(value)
        if not Decimal(0) <= percentage <= MAX_PERCENTAGE:
            raise BillingError(ErrorCode.INVALID_AMOUNT, "a margin percentage lies between 0 and 1000", field="value")
        margin = round_half_even(Fraction(platform_price.amount) * Fraction(percentage) / 100)
        return Money(platform_price.amount + margin, platform_price.currency)
    if not isinstance(value, Money):
        raise BillingError(ErrorCode.INVALID_INPUT, "a fixed margin is an amount with its currency", field="value")
    if not 0 <= value.amount <= MAX_AMOUNT:
        raise BillingError(ErrorCode.INVALID_AMOUNT, "a fixed margin is zero or more", field="value")
    return platform_price + value
