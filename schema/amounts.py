"""Exact amounts: money and wallet quantities as decimal strings, never floats."""

from __future__ import annotations

import strawberry
import strawberry.scalars

from billing.core.money import format_minor
from billing.usage.exact_amounts import format_fine


@strawberry.type(description="An exact amount of money: a decimal string and its ISO 4217 currency.")
class Money:
    amount: str
    currency: str

    @classmethod
    def of(cls, minor: int, currency: str) -> Money:
        return cls(amount=format_minor(minor, currency), currency=currency)

    @classmethod
    def exact(cls, fine: int, currency: str) -> Money:
        """A usage amount, exact: it may have more decimals than the currency (0.075 BRL)."""
        return cls(amount=format_fine(fine, currency), currency=currency)


@strawberry.type(description="An exact quantity of a wallet unit (POINTS, MESSAGE_CREDITS, ... or a currency).")
class Quantity:
    amount: str
    unit: str

    @classmethod
    def of(cls, value: int, unit: str) -> Quantity:
        return cls(amount=format_minor(value, unit), unit=unit)
