"""Documents (invoices, credit notes, receipts), their lines and taxes, the issuer's tax rates and
numbering, and coupons."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.types import Info

from billing.documents import invoices, links, pdf
from models import documents as rows
from models import enums
from schema.amounts import Money
from schema.context import Context
from schema.ids import to_global_id
from schema.relay import Node

DocumentKind = strawberry.enum(enums.DocumentKind)
DocumentStatus = strawberry.enum(
    enums.DocumentStatus,
    description="An invoice is FINALIZED (numbered, never changed again) when its payment opens, then PAID or "
    "VOID (its payment failed for good; it keeps its number); credit notes and receipts are FINALIZED when made.",
)
SeriesReset = strawberry.enum(enums.SeriesReset)
CouponKind = strawberry.enum(enums.CouponKind)
CouponDuration = strawberry.enum(
    enums.CouponDuration,
    description="Which charges for a plan a coupon reduces: the first it applies to (ONCE), the first N periods "
    "(REPEATING), or all of them (FOREVER). Add-ons and packages are reduced once, at checkout.",
)


@strawberry.enum(description="The language a document's PDF is written in.")
class DocumentLanguage(Enum):
    EN = "en"
    PT_BR = "pt-BR"


def _global(type_name: str, db_id: int | None) -> strawberry.ID | None:
    return strawberry.ID(to_global_id(type_name, db_id)) if db_id is not None else None


@strawberry.type(description="One tax on a line or, added up per rate, on a document.")
class DocumentTax:
    name: str
    percentage: str = strawberry.field(description='A decimal percentage, e.g. "1.65".')
    inclusive: bool = strawberry.field(description="Already inside the price (true) or added on top of it.")
    amount: Money


@strawberry.type(description="What one coupon took off a line.")
class DocumentDiscount:
    code: str
    name: str
    amount: Money


def _taxes(found: list[dict[str, object]], currency: str) -> list[DocumentTax]:
    return [
        DocumentTax(
            name=str(t["name"]),
            percentage=str(t["percentage"]),
            inclusive=bool(t["inclusive"]),
            amount=Money.of(int(str(t["amount"])), currency),
        )
        for t in found
    ]


@strawberry.type(description="A line of a document: quantity times unit price, less its discount, plus its tax.")
class DocumentLine(Node):
    position: int
    description: str
    quantity: int
    unit_price: Money
    subtotal: Money
    discount: Money
    discounts: list[DocumentDiscount]
    tax: Money
    taxes: list[DocumentTax]
    total: Money
    refers_to_line_id: strawberry.ID | None = strawberry.field(
        description="A credit note's line: the invoice line it credits."
    )

    @classmethod
    def of(cls, row: rows.DocumentLine, currency: str) -> DocumentLine:
        return cls(
            id=strawberry.ID(to_global_id("DocumentLine", row.id)),
            position=row.position,
            description=row.description,
            quantity=row.quantity,
            unit_price=Money.of(row.unit_price, currency),
            subtotal=Money.of(row.subtotal, currency),
            discount=Money.of(row.discount, currency),
            discounts=[
                DocumentDiscount(code=str(d["code"]), name=str(d["name"]), amount=Money.of(int(d["amount"]), currency))
                for d in row.discounts
            ],
            tax=Money.of(row.tax, currency),
            taxes=_taxes(row.taxes, currency),
            total=Money.of(row.total, currency),
            refers_to_line_id=_global("DocumentLine", row.refers_to_line_id),
        )


@strawberry.type(description="An invoice, a credit note or a receipt, as it was finalized.")
class Document(Node):
    db_id: strawberry.Private[int]
    kind: DocumentKind
    status: DocumentStatus
    number: str | None = strawberry.field(description="As the issuer's series wrote it, e.g. ACME-2027-000123.")
    currency: str
    subtotal: Money
    discount_total: Money
    tax_total: Money
    total: Money
    buyer_id: strawberry.ID = strawberry.field(description="The Workspace or the Partner it was issued to.")
    payment_id: strawberry.ID | None = strawberry.field(description="The payment it invoices or acknowledges.")
    refers_to_id: strawberry.ID | None = strawberry.field(
        description="A credit note's or a receipt's invoice (a replacing invoice's names none)."
    )
    note: str = strawberry.field(description="A credit note's reason.")
    created_at: datetime
    finalized_at: datetime | None
    paid_at: datetime | None
    voided_at: datetime | None

    @strawberry.field(description="Its lines, in order (at most 200).")
    async def lines(self, info: Info[Context, None]) -> list[DocumentLine]:
        found = await rows.DocumentLine.filter(document_id=self.db_id).order_by("position")
        return [DocumentLine.of(line, self.currency) for line in found]

    @strawberry.field(
        description="A link to its PDF in the issuer's branding, valid for 10 minutes: anyone holding it may "
        "download this PDF. Without a language, the buyer's (Portuguese for documents in reais, else English)."
    )
    def pdf_url(self, language: DocumentLanguage | None = None) -> str:
        chosen = language.value if language else pdf.language_for(self.currency)
        return links.link(self.db_id, chosen)

    @strawberry.field(description="Its taxes, added up per rate, as the document shows them.")
    async def taxes(self) -> list[DocumentTax]:
        found = await rows.DocumentLine.filter(document_id=self.db_id).order_by("position")
        return _taxes(invoices.tax_breakdown(found), self.currency)

    @classmethod
    def of(cls, row: rows.Document) -> Document:
        kind, _, buyer = row.buyer_key.partition(":")
        return cls(
            id=strawberry.ID(to_global_id("Document", row.id)),
            db_id=row.id,
            kind=row.kind,
            status=row.status,
            number=row.number_text,
            currency=row.currency,
            subtotal=Money.of(row.subtotal, row.currency),
            discount_total=Money.of(row.discount_total, row.currency),
            tax_total=Money.of(row.tax_total, row.currency),
            total=Money.of(row.total, row.currency),
            buyer_id=strawberry.ID(to_global_id(kind.capitalize(), int(buyer))),
            payment_id=_global("Payment", row.payment_id),
            refers_to_id=_global("Document", row.refers_to_id),
            note=row.note,
            created_at=row.created_at,
            finalized_at=row.finalized_at,
            paid_at=row.paid_at,
            voided_at=row.voided_at,
        )


@strawberry.type(description="A tax the issuer applies to every line of its documents from now on.")
class TaxRate(Node):
    name: str
    percentage: str = strawberry.field(description='A decimal percentage, e.g. "5" or "1.65".')
    inclusive: bool = strawberry.field(description="Prices already include it (true), or it is added on top.")
    active: bool

    @classmethod
    def of(cls, row: rows.TaxRate) -> TaxRate:
        return cls(
            id=strawberry.ID(to_global_id("TaxRate", row.id)),
            name=row.name,
            percentage=_percentage(row.percentage),
            inclusive=row.inclusive,
            active=row.active,
        )


def _percentage(value: object) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@strawberry.type(description="How the issuer numbers one kind of document.")
class DocumentSeries:
    kind: DocumentKind
    prefix: str = strawberry.field(description="Before the number; {year} is the document's year (UTC).")
    digits: int
    reset: SeriesReset
    next_number: int = strawberry.field(description="The number the next document of this kind takes.")

    @classmethod
    def of(cls, row: rows.DocumentSeries) -> DocumentSeries:
        return cls(kind=row.kind, prefix=row.prefix, digits=row.digits, reset=row.reset, next_number=row.next_number)


@strawberry.type(description="Something off a price, redeemed by a code at checkout or applied by the partner.")
class Coupon(Node):
    code: str
    name: str
    kind: CouponKind
    percentage: str | None
    amount: Money | None = strawberry.field(description="A FIXED coupon's amount, in its currency.")
    duration: CouponDuration
    periods: int | None
    plan_ids: list[strawberry.ID] = strawberry.field(description="The plans it applies to (none named: all).")
    add_on_ids: list[strawberry.ID]
    package_ids: list[strawberry.ID] = strawberry.field(description="The credit packages it applies to.")
    max_redemptions: int | None
    max_per_workspace: int | None
    redeemed: int = strawberry.field(description="Redemptions held now (a voided checkout gives its one back).")
    expires_at: datetime | None
    active: bool

    @classmethod
    def of(cls, row: rows.Coupon) -> Coupon:
        return cls(
            id=strawberry.ID(to_global_id("Coupon", row.id)),
            code=row.code,
            name=row.name,
            kind=row.kind,
            percentage=_percentage(row.percentage) if row.percentage is not None else None,
            amount=Money.of(row.amount, row.currency) if row.amount is not None and row.currency else None,
            duration=row.duration,
            periods=row.periods,
            plan_ids=[strawberry.ID(to_global_id("Plan", i)) for i in row.plan_ids],
            add_on_ids=[strawberry.ID(to_global_id("AddOn", i)) for i in row.add_on_ids],
            package_ids=[strawberry.ID(to_global_id("CreditPackage", i)) for i in row.package_ids],
            max_redemptions=row.max_redemptions,
            max_per_workspace=row.max_per_workspace,
            redeemed=row.redeemed,
            expires_at=row.expires_at,
            active=row.active,
        )
