"""Invoices: put together as drafts, then finalized (numbered, and immutable from then on).

Amounts are integer minor units of the invoice's currency. A line's total is its quantity times its unit
price, less its discount, plus its tax; the invoice's totals are the sums of its lines'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tortoise.transactions import in_transaction

from billing.core import clock, sql
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import check_currency
from billing.core.text import check_text
from billing.documents import coupons, numbering, taxes
from models.documents import Document, DocumentLine
from models.enums import DocumentKind, DocumentStatus

MAX_LINES = 200


@dataclass(frozen=True, slots=True)
class LineInput:
    description: str
    unit_price: int  # minor units
    quantity: int = 1
    item_type: str = ""  # what the line bills, as a global id's type and id ("Plan", 4)
    item_id: int | None = None
    discounts: tuple[coupons.Discount, ...] = ()  # what coupons take off it (at most its amount)


async def create_draft(
    *,
    partner_id: int | None,
    buyer_key: str,
    currency: str,
    lines: Sequence[LineInput],
    rates: Sequence[taxes.Rate] | None = None,
) -> Document:
    """A DRAFT invoice from ``partner_id`` (None: the platform) to ``buyer_key``, with its lines, their taxes
    (the issuer's active rates unless ``rates`` are given) and its totals."""
    if rates is None:
        rates = await taxes.rates_of(partner_id)
    currency = check_currency(currency, field="currency")
    if not 0 < len(lines) <= MAX_LINES:
        raise BillingError(ErrorCode.INVALID_INPUT, f"an invoice has 1 to {MAX_LINES} lines", field="lines")
    rows = []
    for position, line in enumerate(lines, start=1):
        if line.quantity <= 0 or line.unit_price < 0:
            raise BillingError(
                ErrorCode.INVALID_AMOUNT, "quantities are positive and prices not negative", field="lines"
            )
        discount = sum(d.amount for d in line.discounts)
        amounts = taxes.line_amounts(line.quantity, line.unit_price, rates, discount)
        rows.append(
            DocumentLine(
                position=position,
                description=check_text(line.description, "lines", max_length=300),
                quantity=line.quantity,
                unit_price=line.unit_price,
                subtotal=amounts.subtotal,
                discount=amounts.discount,
                tax=amounts.tax,
                taxes=[tax.as_json() for tax in amounts.taxes],
                discounts=[d.as_json() for d in line.discounts],
                total=amounts.total,
                item_type=line.item_type,
                item_id=line.item_id,
            )
        )
    async with in_transaction("default"):
        invoice = await Document.create(
            kind=DocumentKind.INVOICE,
            partner_id=partner_id,
            buyer_key=buyer_key,
            currency=currency,
            subtotal=sum(r.subtotal for r in rows),
            discount_total=sum(r.discount for r in rows),
            tax_total=sum(r.tax for r in rows),
            total=sum(r.total for r in rows),
        )
        for row in rows:
            row.document_id = invoice.id
        await DocumentLine.bulk_create(rows)
    return invoice


async def finalize(invoice_id: int) -> Document:
    """Number the DRAFT invoice and freeze it. Finalizing one already finalized returns it unchanged."""
    invoice = await Document.get_or_none(kind=DocumentKind.INVOICE, id=invoice_id)
    if invoice is None:
        raise BillingError(ErrorCode.NOT_FOUND, "invoice not found", field="invoiceId")
    if invoice.status is not DocumentStatus.DRAFT:
        return invoice
    series = await numbering.series_of(invoice.partner_id, DocumentKind.INVOICE)
    now = clock.now()
    async with in_transaction("default"):
        # The status moves first, conditionally: a concurrent finalization of the same draft takes no number.
        moved = await sql.execute(
            "UPDATE document SET status = $1, finalized_at = $2 WHERE id = $3 AND status = $4",
            DocumentStatus.FINALIZED.value,
            now,
            invoice_id,
            DocumentStatus.DRAFT.value,
        )
        if moved == 1:
            number, text = await numbering.take_number(series.id, now)
            await sql.execute(
                "UPDATE document SET series_id = $1, number = $2, number_text = $3 WHERE id = $4",
                series.id,
                number,
                text,
                invoice_id,
            )
    return await Document.get(id=invoice_id)


def tax_breakdown(lines: Sequence[DocumentLine]) -> list[dict[str, object]]:
    """The document's taxes per rate, as it shows them: each rate's amounts over its lines, added up."""
    totals: dict[tuple[str, str, bool], int] = {}
    for line in lines:
        for tax in line.taxes:
            key = (tax["name"], tax["percentage"], tax["inclusive"])
            totals[key] = totals.get(key, 0) + int(tax["amount"])
    return [
        {"name": name, "percentage": percentage, "inclusive": inclusive, "amount": amount}
        for (name, percentage, inclusive), amount in totals.items()
    ]
