"""What callers see of documents and what issuers set for them, scoped to the caller: a partner its own tax
rates, numbering, coupons and documents (and the platform's invoices to it); a workspace the documents it
was issued; the platform its own and everyone's. Every change is audited."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from billing.core import audit, tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Money
from billing.core.tenancy import Viewer
from billing.documents import coupons, credit_notes, numbering, taxes
from models.catalog import AddOn, CreditPackage, Plan
from models.documents import Coupon, CouponRedemption, Document, DocumentSeries, TaxRate
from models.enums import CouponDuration, CouponKind, DocumentKind, Permission, SeriesReset, ViewerKind
from models.tenancy import Partner

MAX_RATES = 20


def documents(viewer: Viewer, kind: DocumentKind | None = None) -> QuerySet[Document]:
    """The documents the caller may read: those it issued or was issued."""
    if viewer.is_platform:
        found = Document.all()
    elif viewer.kind is ViewerKind.WORKSPACE:
        found = Document.filter(partner_id=viewer.partner_id, buyer_key=f"WORKSPACE:{viewer.workspace_id}")
    else:
        found = Document.filter(
            Q(partner_id=viewer.partner_id) | Q(partner_id=None, buyer_key=f"PARTNER:{viewer.partner_id}")
        )
    found = found.exclude(status="DRAFT")  # a draft is the issuer's work in progress, never shown
    return found.filter(kind=kind) if kind is not None else found


def _issuer(viewer: Viewer) -> int | None:
    """Whose settings the caller writes: its partner's, or the platform's own."""
    viewer.require(Permission.MANAGE_BILLING)
    if viewer.kind is ViewerKind.WORKSPACE:
        raise BillingError(ErrorCode.FORBIDDEN, "documents are set up by the partner")
    return None if viewer.is_platform else viewer.partner_id


def _partner(viewer: Viewer) -> int:
    issuer = _issuer(viewer)
    if issuer is None:
        raise BillingError(ErrorCode.FORBIDDEN, "coupons are a partner's, for its clients")
    return issuer


def tax_rates(issuer: int | None) -> QuerySet[TaxRate]:
    return TaxRate.filter(partner_id=issuer).order_by("id")


async def create_tax_rate(viewer: Viewer, *, name: str, percentage: Decimal, inclusive: bool) -> TaxRate:
    issuer = _issuer(viewer)
    name, percentage = taxes.check_rate(name, percentage)
    if await TaxRate.filter(partner_id=issuer).count() >= MAX_RATES:
        raise BillingError(ErrorCode.INVALID_INPUT, f"at most {MAX_RATES} tax rates", field="name")
    try:
        async with in_transaction("default"):
            rate = await TaxRate.create(partner_id=issuer, name=name, percentage=percentage, inclusive=inclusive)
    except IntegrityError:
        raise BillingError(ErrorCode.ALREADY_EXISTS, "a tax rate has that name", field="name") from None
    await audit.record(
        actor=viewer.actor,
        action="tax_rate.create",
        target_type="TaxRate",
        target_id=rate.id,
        partner_id=issuer,
        after={"name": name, "percentage": str(percentage), "inclusive": inclusive},
    )
    return rate


async def set_tax_rate_active(viewer: Viewer, *, rate_id: int, active: bool) -> TaxRate:
    """Turn a rate on or off for documents from now on (those already issued keep theirs)."""
    issuer = _issuer(viewer)
    rate = await TaxRate.get_or_none(id=rate_id, partner_id=issuer)
    if rate is None:
        raise BillingError(ErrorCode.NOT_FOUND, "tax rate not found", field="taxRateId")
    await _switch(viewer, rate, active, issuer, action="tax_rate.set_active")
    return rate


async def _switch(viewer: Viewer, row: TaxRate | Coupon, active: bool, partner_id: int | None, *, action: str) -> None:
    """Turn a tax rate or a coupon on or off, audited."""
    before = row.active
    row.active = active
    await row.save(update_fields=["active"])
    await audit.record(
        actor=viewer.actor,
        action=action,
        target_type=type(row).__name__,
        target_id=row.id,
        partner_id=partner_id,
        before={"active": before},
        after={"active": active},
    )


async def series(issuer: int | None) -> list[DocumentSeries]:
    """The issuer's series, one per kind (made on first look, as its first document would)."""
    return [await numbering.series_of(issuer, kind) for kind in DocumentKind]


async def set_document_series(
    viewer: Viewer, *, kind: DocumentKind, prefix: str, digits: int, reset: SeriesReset
) -> DocumentSeries:
    issuer = _issuer(viewer)
    before = await numbering.series_of(issuer, kind)
    changed = await numbering.set_series(issuer, kind, prefix=prefix, digits=digits, reset=reset)
    await audit.record(
        actor=viewer.actor,
        action="document_series.set",
        target_type="DocumentSeries",
        target_id=changed.id,
        partner_id=issuer,
        before={"prefix": before.prefix, "digits": before.digits, "reset": before.reset.value},
        after={"prefix": prefix, "digits": digits, "reset": reset.value},
    )
    return changed


def visible_coupons(viewer: Viewer) -> QuerySet[Coupon]:
    """A partner's coupons (the platform sees every partner's); a workspace sees none (codes are handed out)."""
    if viewer.kind is ViewerKind.WORKSPACE:
        return Coupon.filter(id=None)
    return Coupon.all() if viewer.is_platform else Coupon.filter(partner_id=viewer.partner_id)


async def create_coupon(
    viewer: Viewer,
    *,
    code: str,
    name: str,
    kind: CouponKind,
    duration: CouponDuration,
    percentage: Decimal | None,
    amount: Money | None,
    periods: int | None,
    plan_ids: Sequence[int],
    add_on_ids: Sequence[int],
    package_ids: Sequence[int],
    max_redemptions: int | None,
    max_per_workspace: int | None,
    expires_at: datetime | None,
) -> Coupon:
    partner_id = _partner(viewer)
    await _check_own(partner_id, plan_ids, add_on_ids, package_ids)
    coupon = await coupons.create(
        partner_id,
        code=code,
        name=name,
        kind=kind,
        duration=duration,
        percentage=percentage,
        amount=amount.amount if amount else None,
        currency=amount.currency if amount else None,
        periods=periods,
        plan_ids=plan_ids,
        add_on_ids=add_on_ids,
        package_ids=package_ids,
        max_redemptions=max_redemptions,
        max_per_workspace=max_per_workspace,
        expires_at=expires_at,
    )
    await audit.record(
        actor=viewer.actor,
        action="coupon.create",
        target_type="Coupon",
        target_id=coupon.id,
        partner_id=partner_id,
        after={
            "code": coupon.code,
            "kind": kind.value,
            "percentage": str(coupon.percentage) if coupon.percentage is not None else None,
            "amount": audit.money(amount) if amount else None,
            "duration": duration.value,
            "periods": periods,
        },
    )
    return coupon


async def _check_own(
    partner_id: int, plan_ids: Sequence[int], add_on_ids: Sequence[int], package_ids: Sequence[int]
) -> None:
    """A coupon names only what its partner sells: another tenant's ids answer as not found."""
    for model, ids, field in (
        (Plan, plan_ids, "planIds"),
        (AddOn, add_on_ids, "addOnIds"),
        (CreditPackage, package_ids, "packageIds"),
    ):
        wanted = set(ids)
        if wanted and await model.filter(id__in=wanted, partner_id=partner_id).count() != len(wanted):
            raise BillingError(ErrorCode.NOT_FOUND, "not found", field=field)


async def set_coupon_active(viewer: Viewer, *, coupon_id: int, active: bool) -> Coupon:
    """An inactive coupon is redeemed no more; what was redeemed keeps applying by its duration."""
    partner_id = _partner(viewer)
    coupon = await Coupon.get_or_none(id=coupon_id, partner_id=partner_id)
    if coupon is None:
        raise BillingError(ErrorCode.NOT_FOUND, "coupon not found", field="couponId")
    await _switch(viewer, coupon, active, partner_id, action="coupon.set_active")
    return coupon


async def set_coupon_stacking(viewer: Viewer, *, stack: bool) -> Partner:
    partner_id = _partner(viewer)
    partner = await Partner.get(id=partner_id)
    before = partner.coupons_stack
    partner.coupons_stack = stack
    await partner.save(update_fields=["coupons_stack"])
    await audit.record(
        actor=viewer.actor,
        action="coupon.set_stacking",
        target_type="Partner",
        target_id=partner_id,
        partner_id=partner_id,
        before={"stack": before},
        after={"stack": stack},
    )
    return partner


async def apply_coupon(viewer: Viewer, *, workspace_id: int, code: str) -> CouponRedemption:
    """The partner gives one of its workspaces a coupon for its plan's coming renewals."""
    partner_id = _partner(viewer)
    workspace = await tenancy.get_scoped(tenancy.workspaces(viewer), workspace_id, "workspace")
    redemption = await coupons.apply_by_hand(partner_id, workspace.id, code)
    await audit.record(
        actor=viewer.actor,
        action="coupon.apply",
        target_type="Workspace",
        target_id=workspace.id,
        partner_id=partner_id,
        after={"coupon": audit.global_id("Coupon", redemption.coupon_id)},
    )
    return redemption


async def credit_invoice(
    viewer: Viewer, *, invoice_id: int, amounts: Mapping[int, int] | None, reason: str
) -> Document:
    """A correction: a credit note against one of the caller's finalized invoices, whole or per line (the
    money, if any goes back, is a refund of its payment, which issues its own credit note)."""
    issuer = _issuer(viewer)
    invoice = await Document.get_or_none(id=invoice_id, kind=DocumentKind.INVOICE, partner_id=issuer)
    if invoice is None:
        raise BillingError(ErrorCode.NOT_FOUND, "invoice not found", field="invoiceId")
    note = await credit_notes.credit(invoice.id, reason=reason, amounts=amounts)
    await audit.record(
        actor=viewer.actor,
        action="invoice.credit",
        target_type="Document",
        target_id=invoice.id,
        partner_id=issuer,
        after={
            "creditNote": audit.global_id("Document", note.id),
            "total": audit.money(Money(note.total, note.currency)),
        },
    )
    return note
