"""The documents every payment gets, issued as the payment moves.

- Opened: its invoice, finalized (numbered) in the transaction that commits the payment; the payment's
  amount is the invoice's total (after coupons, with exclusive taxes on top).
- Paid: the invoice is PAID and a receipt is issued for the money received.
- Failed for good (declined, not attempted, cancelled): the invoice is VOID (it keeps its number) and the
  checkout's coupon redemptions go back. A late success of such a payment gets a new invoice with the
  same lines (a void invoice is never revived), then its receipt.
- Refunded (a refund DONE, never one only requested) or charged back: a credit note against the invoice,
  on the refund's line or on its lines in order, never beyond what is left of each.

Whoever pays, the issuer is the one paid: a partner invoices its workspaces, the platform its partners.
Payments made before documents existed have no invoice, and nothing is issued for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from tortoise.transactions import in_transaction

from billing.core import audit, clock, sql
from billing.documents import coupons, credit_notes, invoices, numbering, taxes
from models.documents import Document, DocumentLine
from models.enums import DocumentKind, DocumentStatus
from models.payments import Payment

D = DocumentStatus
RECEIPT_ISSUED = "receipt.issued"


def issuer_of(partner_id: int | None, payer_key: str, collector: int | None = None) -> int | None:
    """Who a payment pays: the workspace's partner when a client pays; when a partner pays, the platform
    (None), or the parent that ``collector`` names (a top-up of a balance held with it)."""
    return collector if payer_key.startswith("PARTNER:") else partner_id


async def draft_for(
    partner_id: int | None,
    payer_key: str,
    currency: str,
    lines: Sequence[invoices.LineInput],
    collector: int | None = None,
) -> Document:
    return await invoices.create_draft(
        partner_id=issuer_of(partner_id, payer_key, collector), buyer_key=payer_key, currency=currency, lines=lines
    )


async def open_for(invoice: Document, payment_id: int) -> Document:
    """The payment's invoice, tied to it and finalized (in the transaction that commits the payment)."""
    await Document.filter(id=invoice.id).update(payment_id=payment_id)
    return await invoices.finalize(invoice.id)


async def invoice_of(payment_id: int) -> Document | None:
    """The payment's invoice: the latest one issued for it (a late success's replaces the void one)."""
    return await Document.filter(kind=DocumentKind.INVOICE, payment_id=payment_id).order_by("-id").first()


async def _set(invoice_id: int, target: DocumentStatus, was: DocumentStatus, column: str) -> bool:
    return (
        await sql.execute(
            f"UPDATE document SET status = $1, {column} = $2 WHERE id = $3 AND status = $4",  # noqa: S608
            target.value,
            clock.now(),
            invoice_id,
            was.value,
        )
        == 1
    )


async def paid(payment: Payment) -> None:
    """In the transaction that marks the payment paid: its invoice PAID, and a receipt."""
    invoice = await invoice_of(payment.id)
    if invoice is None:
        return
    if invoice.status is D.VOID:
        await coupons.retake(payment.id)  # before the new number: coupons, then numbering, as checkout locks them
        invoice = await _reissue(invoice, payment.id)
    if await _set(invoice.id, D.PAID, D.FINALIZED, "paid_at"):
        await _receipt(payment, invoice)


async def failed(payment: Payment) -> None:
    """In the transaction that records the payment's final failure: its invoice VOID, its coupons back."""
    invoice = await invoice_of(payment.id)
    if invoice is not None and await _set(invoice.id, D.VOID, D.FINALIZED, "voided_at"):
        await coupons.release(payment.id)


async def _reissue(void: Document, payment_id: int) -> Document:
    lines = await DocumentLine.filter(document_id=void.id).order_by("position")
    draft = await invoices.create_draft(
        partner_id=void.partner_id,
        buyer_key=void.buyer_key,
        currency=void.currency,
        lines=[
            invoices.LineInput(
                line.description,
                line.unit_price,
                line.quantity,
                line.item_type,
                line.item_id,
                tuple(coupons.Discount(str(d["code"]), str(d["name"]), int(d["amount"])) for d in line.discounts),
            )
            for line in lines
        ],
        rates=_rates_on(lines),
    )
    await Document.filter(id=draft.id).update(note=f"replaces the void {void.number_text}")
    return await open_for(draft, payment_id)


def _rates_on(lines: Sequence[DocumentLine]) -> list[taxes.Rate]:
    """The rates a document applied, as it applied them (the issuer's rates may have changed since)."""
    found: dict[str, taxes.Rate] = {}
    for line in lines:
        for tax in line.taxes:
            found.setdefault(
                str(tax["name"]), taxes.Rate(str(tax["name"]), Decimal(tax["percentage"]), bool(tax["inclusive"]))
            )
    return list(found.values())


async def _receipt(payment: Payment, invoice: Document) -> Document:
    series = await numbering.series_of(invoice.partner_id, DocumentKind.RECEIPT)
    now = clock.now()
    async with in_transaction("default"):
        number, text = await numbering.take_number(series.id, now)
        receipt = await Document.create(
            kind=DocumentKind.RECEIPT,
            partner_id=invoice.partner_id,
            buyer_key=invoice.buyer_key,
            currency=payment.currency,
            status=D.FINALIZED,
            series_id=series.id,
            number=number,
            number_text=text,
            subtotal=payment.amount,
            total=payment.amount,
            finalized_at=now,
            paid_at=now,
            payment_id=payment.id,
            refers_to_id=invoice.id,
        )
        await DocumentLine.create(
            document_id=receipt.id,
            position=1,
            description=f"Payment for invoice {invoice.number_text}",
            unit_price=payment.amount,
            subtotal=payment.amount,
            total=payment.amount,
        )
        # The payer is e-mailed the receipt, its PDF attached; the partner's webhooks hear of it.
        await audit.emit(
            RECEIPT_ISSUED,
            payment.partner_id,
            {
                "document_id": receipt.id,
                "number": text,
                "payment_id": payment.id,
                "payer_key": payment.payer_key,
                "amount": payment.amount,
                "currency": payment.currency,
            },
        )
    return receipt


async def credit_payment(payment: Payment, amount: int, *, reason: str, line_id: int | None = None) -> Document | None:
    """A credit note for ``amount`` of the payment given back: on ``line_id`` first (when the refund named
    one), then on the invoice's lines in order, never beyond what is left of each. None when the payment
    has no invoice, or nothing is left to credit."""
    invoice = await invoice_of(payment.id)
    if invoice is None or invoice.status not in credit_notes.CREDITABLE or amount <= 0:
        return None
    lines = await DocumentLine.filter(document_id=invoice.id).order_by("position")
    credited = await credit_notes.credited_per_line(invoice.id)
    order = sorted(lines, key=lambda line: line.id != line_id)  # the named line first, the rest in order
    wanted: dict[int, int] = {}
    for line in order:
        share = min(amount, line.total - credited.get(line.id, 0))
        if share > 0:
            wanted[line.id] = share
            amount -= share
    if not wanted:
        return None
    # The refund's reason (up to 500 characters, several lines) as a credit note's one line: never refused
    # here, where the money has already gone back.
    shown = " ".join(reason.split())[:300] or "refund"
    return await credit_notes.credit(invoice.id, reason=shown, amounts=wanted)
