"""Setting documents up (tax rates, numbering), coupons, and correcting an invoice with a credit note."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Money as DomainMoney
from billing.core.money import check_currency, parse_decimal, to_minor
from billing.documents import manage
from models import enums
from models.enums import Permission
from schema.auth import viewer_with
from schema.context import Context
from schema.documents.types import (
    Coupon,
    CouponDuration,
    CouponKind,
    Document,
    DocumentKind,
    DocumentSeries,
    SeriesReset,
    TaxRate,
)
from schema.errors import UserError
from schema.ids import expect_id
from schema.mutations import mutation
from schema.tenants.types import Partner, Workspace

# --- tax rates and numbering -----------------------------------------------------------------------------


@strawberry.input(description="A tax on every line of the caller's documents from now on.")
class CreateTaxRateInput:
    name: str
    percentage: str = strawberry.field(description='A decimal percentage above 0, at most 100, e.g. "1.65".')
    inclusive: bool = strawberry.field(default=False, description="Prices already include it.")


@strawberry.type
class CreateTaxRatePayload:
    tax_rate: TaxRate | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="Turn a tax rate on or off for documents from now on (issued ones keep theirs).")
class SetTaxRateActiveInput:
    tax_rate_id: strawberry.ID
    active: bool


@strawberry.type
class SetTaxRateActivePayload:
    tax_rate: TaxRate | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="How the caller numbers one kind of document from its next one on.")
class SetDocumentSeriesInput:
    kind: DocumentKind
    prefix: str = strawberry.field(description='E.g. "ACME-{year}-": {year} is the document\'s year (UTC).')
    digits: int = 6
    reset: SeriesReset = strawberry.field(
        default=enums.SeriesReset.NEVER, description="YEARLY starts again at 1 each year; NEVER goes on counting."
    )


@strawberry.type
class SetDocumentSeriesPayload:
    series: DocumentSeries | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


# --- coupons ---------------------------------------------------------------------------------------------


@strawberry.input(description="A coupon: a percentage, or an amount in one currency, off what it applies to.")
class CreateCouponInput:
    code: str = strawberry.field(description="3 to 40 letters, digits, - or _; clients type it in any case.")
    name: str
    kind: CouponKind
    duration: CouponDuration
    percentage: str | None = strawberry.field(default=None, description='A PERCENTAGE coupon\'s, e.g. "10".')
    amount: str | None = strawberry.field(default=None, description='A FIXED coupon\'s, e.g. "20.00".')
    currency: str | None = strawberry.field(default=None, description="A FIXED coupon's currency.")
    periods: int | None = strawberry.field(default=None, description="How many periods a REPEATING coupon lasts.")
    plan_ids: list[strawberry.ID] = strawberry.field(default_factory=list)
    add_on_ids: list[strawberry.ID] = strawberry.field(default_factory=list)
    package_ids: list[strawberry.ID] = strawberry.field(default_factory=list)
    max_redemptions: int | None = None
    max_per_workspace: int | None = None
    expires_at: datetime | None = None


@strawberry.type
class CreateCouponPayload:
    coupon: Coupon | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="An inactive coupon is redeemed no more; redemptions held keep their duration.")
class SetCouponActiveInput:
    coupon_id: strawberry.ID
    active: bool


@strawberry.type
class SetCouponActivePayload:
    coupon: Coupon | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="Whether two coupons on one charge add up (otherwise a charge takes one).")
class SetCouponStackingInput:
    stack: bool


@strawberry.type
class SetCouponStackingPayload:
    partner: Partner | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="Give a workspace a coupon for its plan's coming renewals.")
class ApplyCouponInput:
    workspace_id: strawberry.ID
    code: str


@strawberry.type
class ApplyCouponPayload:
    workspace: Workspace | None = None
    coupon: Coupon | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


# --- corrections -----------------------------------------------------------------------------------------


@strawberry.input
class CreditLineInput:
    line_id: strawberry.ID
    amount: str = strawberry.field(description="In the invoice's currency, at most what is left of the line.")


@strawberry.input(description="A credit note against a finalized invoice: the invoice itself never changes.")
class CreditInvoiceInput:
    invoice_id: strawberry.ID
    reason: str
    lines: list[CreditLineInput] | None = strawberry.field(
        default=None, description="What to credit per line; omit to credit all that is left of every line."
    )


@strawberry.type
class CreditInvoicePayload:
    credit_note: Document | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


MAX_CREDIT_LINES = 200


@strawberry.type
class Mutation:
    @mutation(permission=Permission.MANAGE_BILLING)
    async def create_tax_rate(self, info: Info[Context, None], input: CreateTaxRateInput) -> CreateTaxRatePayload:
        rate = await manage.create_tax_rate(
            viewer_with(info),
            name=input.name,
            percentage=parse_decimal(input.percentage, "percentage"),
            inclusive=input.inclusive,
        )
        return CreateTaxRatePayload(tax_rate=TaxRate.of(rate))

    @mutation(permission=Permission.MANAGE_BILLING)
    async def set_tax_rate_active(
        self, info: Info[Context, None], input: SetTaxRateActiveInput
    ) -> SetTaxRateActivePayload:
        rate = await manage.set_tax_rate_active(
            viewer_with(info), rate_id=expect_id(input.tax_rate_id, "TaxRate", "taxRateId"), active=input.active
        )
        return SetTaxRateActivePayload(tax_rate=TaxRate.of(rate))

    @mutation(permission=Permission.MANAGE_BILLING)
    async def set_document_series(
        self, info: Info[Context, None], input: SetDocumentSeriesInput
    ) -> SetDocumentSeriesPayload:
        series = await manage.set_document_series(
            viewer_with(info),
            kind=enums.DocumentKind(input.kind.value),
            prefix=input.prefix,
            digits=input.digits,
            reset=enums.SeriesReset(input.reset.value),
        )
        return SetDocumentSeriesPayload(series=DocumentSeries.of(series))

    @mutation(permission=Permission.MANAGE_BILLING, fields={"couponCode": "code"})
    async def create_coupon(self, info: Info[Context, None], input: CreateCouponInput) -> CreateCouponPayload:
        amount = None
        if input.amount is not None or input.currency is not None:
            if input.amount is None or input.currency is None:
                raise BillingError(ErrorCode.INVALID_INPUT, "an amount goes with its currency", field="amount")
            currency = check_currency(input.currency)
            amount = DomainMoney(to_minor(input.amount, currency, "amount"), currency)
        coupon = await manage.create_coupon(
            viewer_with(info),
            code=input.code,
            name=input.name,
            kind=enums.CouponKind(input.kind.value),
            duration=enums.CouponDuration(input.duration.value),
            percentage=parse_decimal(input.percentage, "percentage") if input.percentage is not None else None,
            amount=amount,
            periods=input.periods,
            plan_ids=[expect_id(i, "Plan", "planIds") for i in input.plan_ids],
            add_on_ids=[expect_id(i, "AddOn", "addOnIds") for i in input.add_on_ids],
            package_ids=[expect_id(i, "CreditPackage", "packageIds") for i in input.package_ids],
            max_redemptions=input.max_redemptions,
            max_per_workspace=input.max_per_workspace,
            expires_at=input.expires_at,
        )
        return CreateCouponPayload(coupon=Coupon.of(coupon))

    @mutation(permission=Permission.MANAGE_BILLING)
    async def set_coupon_active(self, info: Info[Context, None], input: SetCouponActiveInput) -> SetCouponActivePayload:
        coupon = await manage.set_coupon_active(
            viewer_with(info), coupon_id=expect_id(input.coupon_id, "Coupon", "couponId"), active=input.active
        )
        return SetCouponActivePayload(coupon=Coupon.of(coupon))

    @mutation(permission=Permission.MANAGE_BILLING)
    async def set_coupon_stacking(
        self, info: Info[Context, None], input: SetCouponStackingInput
    ) -> SetCouponStackingPayload:
        partner = await manage.set_coupon_stacking(viewer_with(info), stack=input.stack)
        return SetCouponStackingPayload(partner=Partner.of(partner))

    @mutation(permission=Permission.MANAGE_BILLING, fields={"couponCode": "code", "couponCodes": "code"})
    async def apply_coupon(self, info: Info[Context, None], input: ApplyCouponInput) -> ApplyCouponPayload:
        viewer = viewer_with(info)
        redemption = await manage.apply_coupon(
            viewer, workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"), code=input.code
        )
        await redemption.fetch_related("coupon", "workspace")
        return ApplyCouponPayload(workspace=Workspace.of(redemption.workspace), coupon=Coupon.of(redemption.coupon))

    @mutation(permission=Permission.MANAGE_BILLING)
    async def credit_invoice(self, info: Info[Context, None], input: CreditInvoiceInput) -> CreditInvoicePayload:
        viewer = viewer_with(info)
        invoice_id = expect_id(input.invoice_id, "Document", "invoiceId")
        amounts = None
        if input.lines is not None:
            if not 0 < len(input.lines) <= MAX_CREDIT_LINES:
                raise BillingError(ErrorCode.INVALID_INPUT, f"1 to {MAX_CREDIT_LINES} lines", field="lines")
            invoice = await manage.documents(viewer, enums.DocumentKind.INVOICE).get_or_none(id=invoice_id)
            currency = invoice.currency if invoice else "USD"
            amounts = {}
            for n, line in enumerate(input.lines):
                line_id = expect_id(line.line_id, "DocumentLine", f"lines[{n}].lineId")
                if line_id in amounts:
                    raise BillingError(ErrorCode.INVALID_INPUT, "each line once", field=f"lines[{n}].lineId")
                amounts[line_id] = to_minor(line.amount, currency, f"lines[{n}].amount")
        note = await manage.credit_invoice(viewer, invoice_id=invoice_id, amounts=amounts, reason=input.reason)
        return CreditInvoicePayload(credit_note=Document.of(note))
