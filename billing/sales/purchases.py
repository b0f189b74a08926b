"""Selling units (points, credits, seats...) for money, and recording payments collected by hand."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from billing.accounts import expiry, ledger, top_ups
from billing.accounts.ledger import CausedBy, Leg
from billing.accounts.opening import workspace_wallet
from billing.auto_billing import engine
from billing.charges import payments
from billing.core import audit, clock, idempotency, tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Money, check_amount, check_unit
from billing.core.tenancy import Viewer
from billing.core.text import check_text
from billing.sales import checkout
from gateways.manual import ManualGateway
from models.catalog import CreditPackage
from models.enums import ExternalAccount, LedgerCause, PaymentMethodKind, PaymentPurpose, PaymentStatus, Permission
from models.payments import Payment
from models.wallets import Wallet


async def credit_wallet(payment: Payment) -> None:
    if payment.purpose.get("from_pool"):
        # A workspace's auto-billing bought its partner's credits: they come out of the partner's pool.
        await engine.credit_from_pool(payment)
        return
    wallet = await Wallet.get(id=payment.purpose["wallet_id"])
    quantity = int(payment.purpose["quantity"])
    await ledger.post(
        [Leg(quantity, wallet.unit, ExternalAccount.GATEWAY, wallet.id)],
        cause=LedgerCause.PURCHASE,
        caused_by=CausedBy("Payment", str(payment.id)),
        note=payment.note,
    )
    package_id = payment.purpose.get("package_id")
    package = await CreditPackage.get_or_none(id=package_id) if package_id else None
    if package is not None and package.expires_after_days:
        await expiry.add_lot(wallet, quantity, clock.now() + timedelta(days=package.expires_after_days))
    await top_ups.watch(wallet.id)


@dataclass(frozen=True, slots=True)
class ManualPurchase:
    payment_id: int
    wallet_id: int


async def record_manual_purchase(
    viewer: Viewer,
    *,
    workspace_id: int,
    unit: str,
    quantity: int,
    price: Money,
    note: str,
    idempotency_key: str,
) -> ManualPurchase:
    """The partner collected ``price`` its own way; the workspace receives ``quantity`` units."""
    viewer.require(Permission.MANAGE_BILLING)
    unit = check_unit(unit)
    check_amount(quantity, field="quantity")
    check_amount(price.amount, field="price", allow_zero=True)
    note = check_text(note, "note", max_length=1000, allow_empty=True, multiline=True)
    workspace = await tenancy.get_scoped(tenancy.workspaces(viewer), workspace_id, "workspace")
    request = {
        "workspace": workspace_id,
        "unit": unit,
        "quantity": quantity,
        "price": [price.amount, price.currency],
    }

    async def act() -> ManualPurchase:
        wallet = await workspace_wallet(workspace, unit)
        payment = await payments.create_payment(
            partner_id=workspace.partner_id,
            payer_key=f"WORKSPACE:{workspace.id}",
            gateway_config_id=None,
            provider=ManualGateway.name,
            method=PaymentMethodKind.MANUAL,
            amount=price.amount,
            currency=price.currency,
            purpose={"kind": PaymentPurpose.WALLET_CREDIT, "wallet_id": wallet.id, "quantity": quantity},
            note=note,
        )
        # Nothing to ask a provider: recording it is the partner saying it was paid, so the payment
        # and its fulfilment commit together with the idempotency record.
        await payments.move(
            payment.id,
            PaymentStatus.SUCCEEDED,
            reason="recorded by hand",
            provider_ref=f"manual_{payment.reference}",
        )
        await audit.record(
            actor=viewer.actor,
            action="purchase.manual",
            target_type="Payment",
            target_id=payment.id,
            partner_id=workspace.partner_id,
            after={
                "wallet_id": audit.global_id("Wallet", wallet.id),
                "quantity": audit.quantity(quantity, unit),
                "price": audit.money(price),
                "note": note,
            },
        )
        return ManualPurchase(payment.id, wallet.id)

    return await idempotency.run_once(
        scope=viewer.scope,
        operation="purchase.manual",
        key=idempotency_key,
        request=request,
        action=act,
        encode=lambda p: [p.payment_id, p.wallet_id],
        decode=lambda raw: ManualPurchase(*raw),
    )


async def record_payment(viewer: Viewer, *, payment_id: int, note: str, idempotency_key: str) -> Payment:
    """The partner says it collected a pending manual payment (a plan bought, a renewal due): the
    payment is paid and what it pays for is delivered, once. A repeat (the same key, or a payment
    already recorded by hand: a double click in a back office) answers the payment as first recorded."""
    viewer.require(Permission.MANAGE_BILLING)
    note = check_text(note, "note", max_length=1000, allow_empty=True, multiline=True)
    payment = await tenancy.get_scoped(tenancy.payments(viewer, with_descendants=True), payment_id, "payment")
    if not viewer.is_platform and checkout.collector_of(payment) != viewer.partner_id:
        # A partner's own payment to the platform (or to its parent) is recorded by whoever collects it:
        # a partner saying it paid itself would credit its own balance.
        if payment.partner_id != viewer.partner_id:
            raise BillingError(ErrorCode.NOT_FOUND, "payment not found", field="paymentId")
        raise BillingError(ErrorCode.FORBIDDEN, "a payment you make is recorded by whoever collects it")
    if payment.provider not in (ManualGateway.name, "balance"):
        raise BillingError(
            ErrorCode.INVALID_PAYMENT_TRANSITION, "only manual payments are recorded by hand", field="paymentId"
        )
    by_hand = f"manual_{payment.reference}"

    async def act() -> int:
        moved = await payments.move(
            payment.id,
            PaymentStatus.SUCCEEDED,
            reason=f"recorded by hand: {note}" if note else "recorded by hand",
            provider_ref=by_hand,
        )
        if not moved:
            await payment.refresh_from_db()
            if payment.status is PaymentStatus.SUCCEEDED and payment.provider_ref == by_hand:
                return int(payment.id)  # recorded already: nothing more to deliver
            raise BillingError(
                ErrorCode.INVALID_PAYMENT_TRANSITION, f"the payment is {payment.status.value}", field="paymentId"
            )
        await audit.record(
            actor=viewer.actor,
            action="payment.record",
            target_type="Payment",
            target_id=payment.id,
            partner_id=payment.partner_id,
            before={"status": payment.status},
            after={"status": PaymentStatus.SUCCEEDED, "note": note},
        )
        return int(payment.id)

    recorded = await idempotency.run_once(
        scope=viewer.scope,
        operation="payment.record",
        key=idempotency_key,
        request={"payment": payment.id, "note": note},
        action=act,
        encode=int,
        decode=int,
    )
    return await Payment.get(id=recorded)
