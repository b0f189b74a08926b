"""Partner prices: the platform price plus the partner's margin, exact and rounded once."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from billing.core.errors import BillingError, ErrorCode
from billing.core.money import MAX_AMOUNT, Money
from billing.core.periods import round_half_even
from models.enums import MarginKind

MAX_PERCENTAGE = Decimal(1000)  # a margin of at most 1000 %


def partner_price(platform_price: Money, kind: MarginKind, value: Decimal | int) -> Money:
    """platform price + margin. A percentage is applied exactly and rounded once, half-even, to
    the currency's minor unit; a fixed margin is in the same currency's minor units."""
    if kind is MarginKind.PERCENTAGE:
        percentage = Decimal(value)
        if not Decimal(0) <= percentage <= MAX_PERCENTAGE:
            raise BillingError(ErrorCode.INVALID_AMOUNT, "a margin percentage lies between 0 and 1000", field="margin")
        margin = round_half_even(Fraction(platform_price.amount) * Fraction(percentage) / 100)
    else:
        margin = int(value)
        if not 0 <= margin <= MAX_AMOUNT:
            raise BillingError(ErrorCode.INVALID_AMOUNT, "a fixed margin is zero or more", field="margin")
    return Money(platform_price.amount + margin, platform_price.currency)
