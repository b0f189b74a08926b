"""Taxes on a document's lines: every active rate of the issuer applies to every line, each rounded once per
line, half-even, to the minor unit.

A line's amount after its discount is its gross. Inclusive rates are inside the gross: the line's net is
``gross * 100 / (100 + the inclusive percentages)``, exactly. Every rate, inclusive or exclusive, is its
percentage of that exact net, rounded once. The line's total is its gross plus its exclusive taxes (the
inclusive ones are already in it); its tax is the sum of all of them. So "R$ 100.00 with 5 % ISS included
and 2 % PIS on top" is ISS 4.76 (of a net of 95.238095…), PIS 1.90, total 101.90.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from billing.core.errors import BillingError, ErrorCode
from billing.core.text import check_text
from models.documents import TaxRate

HUNDRED = Decimal(100)
MAX_PERCENTAGE = Decimal(100)


@dataclass(frozen=True, slots=True)
class Rate:
    name: str
    percentage: Decimal
    inclusive: bool


@dataclass(frozen=True, slots=True)
class LineTax:
    name: str
    percentage: Decimal
    inclusive: bool
    amount: int  # minor units

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "percentage": str(self.percentage),
            "inclusive": self.inclusive,
            "amount": self.amount,
        }


@dataclass(frozen=True, slots=True)
class LineAmounts:
    subtotal: int  # quantity times unit price
    discount: int
    taxes: tuple[LineTax, ...]
    tax: int
    total: int


def rounded(value: Decimal) -> int:
    """To the minor unit, half-even: the one rounding of documents."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def line_amounts(quantity: int, unit_price: int, rates: Sequence[Rate], discount: int = 0) -> LineAmounts:
    subtotal = quantity * unit_price
    if not 0 <= discount <= subtotal:
        raise BillingError(ErrorCode.INVALID_AMOUNT, "a discount lies between 0 and the line's amount", field="lines")
    gross = Decimal(subtotal - discount)
    net = gross * HUNDRED / (HUNDRED + sum((r.percentage for r in rates if r.inclusive), Decimal(0)))
    taxes = tuple(LineTax(r.name, r.percentage, r.inclusive, rounded(net * r.percentage / HUNDRED)) for r in rates)
    exclusive = sum(t.amount for t in taxes if not t.inclusive)
    return LineAmounts(subtotal, discount, taxes, sum(t.amount for t in taxes), subtotal - discount + exclusive)


def check_rate(name: str, percentage: Decimal) -> tuple[str, Decimal]:
    name = check_text(name, "name", max_length=60)
    if not (percentage.is_finite() and 0 < percentage <= MAX_PERCENTAGE) or percentage != percentage.quantize(
        Decimal("0.0001")
    ):
        raise BillingError(
            ErrorCode.INVALID_INPUT, "a percentage is above 0, at most 100, with 4 decimals at most", field="percentage"
        )
    return name, percentage


async def rates_of(partner_id: int | None) -> list[Rate]:
    """The issuer's active rates, in the order they were made (the order a document lists them in)."""
    rows = await TaxRate.filter(partner_id=partner_id, active=True).order_by("id")
    return [Rate(row.name, Decimal(row.percentage), row.inclusive) for row in rows]
