"""Credit notes: what goes back to a buyer against a finalized invoice, whole or line by line, numbered in
the issuer's own credit-note series. The invoice is never edited; what was credited is read from its credit
notes, and no line is ever credited beyond its total."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from tortoise.transactions import in_transaction

from billing.core import clock, sql
from billing.core.errors import BillingError, ErrorCode
from billing.core.text import check_text
from billing.documents import numbering, taxes
from models.documents import Document, DocumentLine
from models.enums import DocumentKind, DocumentStatus

CREDITABLE = (DocumentStatus.FINALIZED, DocumentStatus.PAID)
_LOCK_PG = "SELECT id FROM document WHERE id = $1 FOR UPDATE"
_LOCK_SQLITE = "SELECT id FROM document WHERE id = $1"  # SQLite writes one transaction at a time


async def _credited_shares(invoice_id: int) -> dict[int, tuple[int, int]]:
    """Per invoice line: the tax and the net (before exclusive taxes) its credit notes gave back so far."""
    rows = await sql.fetch(
        "SELECT l.refers_to_line_id AS line, SUM(l.tax) AS tax, SUM(l.subtotal) AS net FROM document_line l"
        " JOIN document d ON d.id = l.document_id"
        " WHERE d.kind = $1 AND d.refers_to_id = $2 GROUP BY l.refers_to_line_id",
        DocumentKind.CREDIT_NOTE.value,
        invoice_id,
    )
    return {int(row["line"]): (int(row["tax"]), int(row["net"])) for row in rows}


async def credited_per_line(invoice_id: int) -> dict[int, int]:
    """How much of each of the invoice's lines its credit notes gave back, by line id."""
    rows = await sql.fetch(
        "SELECT l.refers_to_line_id AS line, SUM(l.total) AS credited FROM document_line l"
        " JOIN document d ON d.id = l.document_id"
        " WHERE d.kind = $1 AND d.refers_to_id = $2 GROUP BY l.refers_to_line_id",
        DocumentKind.CREDIT_NOTE.value,
        invoice_id,
    )
    return {int(row["line"]): int(row["credited"]) for row in rows}


async def credit(invoice_id: int, *, reason: str, amounts: Mapping[int, int] | None = None) -> Document:
    """A finalized credit note against the invoice: ``amounts`` gives minor units per invoice line id (None:
    whatever of every line is not credited yet). Each line's share of the tax goes with it, in proportion,
    rounded half-even."""
    reason = check_text(reason, "reason", max_length=300)
    invoice = await Document.get_or_none(id=invoice_id, kind=DocumentKind.INVOICE)
    if invoice is None:
        raise BillingError(ErrorCode.NOT_FOUND, "invoice not found", field="invoiceId")
    if invoice.status not in CREDITABLE:
        raise BillingError(ErrorCode.INVALID_INPUT, "only a finalized invoice is credited", field="invoiceId")
    series = await numbering.series_of(invoice.partner_id, DocumentKind.CREDIT_NOTE)
    now = clock.now()
    async with in_transaction("default"):
        # Credit notes of one invoice are made one at a time: none credits what another just took.
        await sql.fetch(_LOCK_PG if sql.is_postgres() else _LOCK_SQLITE, invoice_id)
        lines = {line.id: line for line in await DocumentLine.filter(document_id=invoice_id).order_by("position")}
        credited = await credited_per_line(invoice_id)
        shares = await _credited_shares(invoice_id)
        wanted = amounts if amounts is not None else {i: line.total - credited.get(i, 0) for i, line in lines.items()}
        rows: list[DocumentLine] = []
        for line_id, amount in wanted.items():
            line = lines.get(line_id)
            if line is None:
                raise BillingError(ErrorCode.NOT_FOUND, "that line is not on this invoice", field="lines")
            left = line.total - credited.get(line_id, 0)
            if amounts is not None and not 0 < amount <= left:
                raise BillingError(
                    ErrorCode.INVALID_AMOUNT, f"line {line.position} has {left} left to credit", field="lines"
                )
            if amount <= 0:
                continue
            # The line's tax and its exclusive part go back in proportion, rounded half-even; the credit that
            # empties the line takes exactly what is left of them, so credits never add up past the invoice.
            exclusive = line.total - (line.subtotal - line.discount)
            tax_back, net_back = shares.get(line_id, (0, 0))
            exclusive_back = credited.get(line_id, 0) - net_back
            if amount == left:
                tax, on_top = line.tax - tax_back, exclusive - exclusive_back
            else:
                tax = min(taxes.rounded(Decimal(line.tax) * amount / line.total), line.tax - tax_back)
                on_top = min(taxes.rounded(Decimal(exclusive) * amount / line.total), exclusive - exclusive_back)
            rows.append(
                DocumentLine(
                    position=len(rows) + 1,
                    description=line.description,
                    quantity=1,
                    unit_price=amount - on_top,
                    subtotal=amount - on_top,  # before the exclusive taxes, as the invoice line's subtotal
                    tax=tax,
                    total=amount,
                    item_type=line.item_type,
                    item_id=line.item_id,
                    refers_to_line_id=line.id,
                )
            )
        if not rows:
            raise BillingError(ErrorCode.INVALID_AMOUNT, "nothing is left to credit on this invoice", field="lines")
        number, text = await numbering.take_number(series.id, now)
        note = await Document.create(
            kind=DocumentKind.CREDIT_NOTE,
            partner_id=invoice.partner_id,
            buyer_key=invoice.buyer_key,
            currency=invoice.currency,
            status=DocumentStatus.FINALIZED,
            series_id=series.id,
            number=number,
            number_text=text,
            subtotal=sum(r.subtotal for r in rows),
            tax_total=sum(r.tax for r in rows),
            total=sum(r.total for r in rows),
            finalized_at=now,
            refers_to_id=invoice.id,
            note=reason,
        )
        for row in rows:
            row.document_id = note.id
        await DocumentLine.bulk_create(rows)
    return note
