"""Refunds, disputes and chargebacks, partial or full, and what they take back.

Whatever reports it (the partner's ``refundPayment``, a provider webhook, the reconciler), a refund
is recorded as the payment's cumulative refunded amount. What the payment bought is reversed up to
that amount once: ``payment.reversed_amount`` moves forward with a conditional update in the same
transaction as the reversal's own ledger entries, so a refund reported twice takes back once.

The partner's policy decides what a reversal means: points bought are taken back in proportion
(never below what the wallet still holds: spent points are not turned into debt); a fully
refunded plan payment either ends the plan now or lets the paid period run out without renewal.
"""

from __future__ import annotations

import hashlib

from tortoise.transactions import in_transaction

from billing.accounts import expiry, ledger, opening
from billing.accounts.ledger import CausedBy, Leg
from billing.charges import gateway_configs, payments
from billing.core import audit, clock, idempotency, sql, tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Entered, Money, check_amount, minor_of
from billing.core.tenancy import Viewer
from billing.core.text import check_text
from billing.subscriptions import current, lifecycle, workspace_status
from gateways.base import Outcome
from models.enums import (
    ExternalAccount,
    LedgerCause,
    OwnerKind,
    PaymentPurpose,
    PaymentStatus,
    Permission,
    RefundPlanPolicy,
    SubscriptionStatus,
)
from models.payments import GatewayConfig, Payment
from models.subscriptions import Subscription, SubscriptionPeriod, WorkspaceAddOn
from models.tenancy import Partner
from models.wallets import Wallet

S = PaymentStatus
REFUNDABLE = (S.SUCCEEDED, S.PARTIALLY_REFUNDED)
_HOLD = "SELECT id FROM payment WHERE id = $1"
_PLAN_KINDS = (PaymentPurpose.PLAN_PURCHASE, PaymentPurpose.PLAN_CHANGE, PaymentPurpose.SUBSCRIPTION_PERIOD)


async def record_refund(payment_id: int, total_refunded: int, *, reason: str) -> bool:
    """The provider (or the partner, for a manual payment) refunded ``total_refunded`` in all."""
    async with in_transaction("default"):
        # Reports of cumulative totals may race (webhooks, the partner, the reconciler): the row is
        # held until this one is recorded, so a smaller total read before a larger one was written
        # cannot overwrite it (the status move is conditional on the status only).
        lock = " FOR UPDATE" if sql.is_postgres() else ""  # SQLite runs one writing transaction at a time
        await sql.fetch(_HOLD + lock, payment_id)
        payment = await Payment.get(id=payment_id)
        total = min(total_refunded, payment.amount)
        if total <= payment.refunded_amount:
            return False  # already known
        target = S.REFUNDED if total >= payment.amount else S.PARTIALLY_REFUNDED
        if not await payments.move(payment.id, target, reason=reason, refunded_amount=total):
            return False
        await _reverse(payment, total, LedgerCause.REFUND)
        return True


async def record_chargeback(payment_id: int, *, reason: str) -> bool:
    """A dispute was lost: the whole payment is gone, and so is what it bought."""
    async with in_transaction("default"):
        payment = await Payment.get(id=payment_id)
        if payment.status is S.SUCCEEDED or payment.status is S.PARTIALLY_REFUNDED:
            await payments.move(payment.id, S.DISPUTED, reason=reason)
        if not await payments.move(payment.id, S.CHARGED_BACK, reason=reason):
            return False
        await _reverse(payment, payment.amount, LedgerCause.CHARGEBACK)
        return True


async def _reverse(payment: Payment, upto: int, cause: LedgerCause) -> None:
    """Take back what ``payment`` bought, in proportion, up to ``upto`` of its amount, once."""
    rows = await sql.fetch("SELECT reversed_amount FROM payment WHERE id = $1", payment.id)
    before = int(rows[0]["reversed_amount"])
    if upto <= before or payment.amount <= 0:
        return
    moved = await sql.execute(
        "UPDATE payment SET reversed_amount = $1 WHERE id = $2 AND reversed_amount = $3", upto, payment.id, before
    )
    if moved != 1:
        return  # a concurrent report reversed it
    partner = await Partner.get(id=payment.partner_id) if payment.partner_id else None
    caused_by = CausedBy("Payment", str(payment.id))
    if payment.method.value == "BALANCE" and payment.partner_id:
        # Paid from the partner's balance with the platform: the money goes back there.
        wallet = await opening.open_wallet(
            partner_id=payment.partner_id,
            owner_kind=OwnerKind.PARTNER,
            owner_id=payment.partner_id,
            unit=payment.currency,
        )
        await ledger.post(
            [Leg(upto - before, payment.currency, ExternalAccount.PLATFORM_REVENUE, wallet.id)],
            cause=cause,
            caused_by=caused_by,
            note="refund",
        )
    kind = payment.purpose_kind
    if kind == PaymentPurpose.WALLET_CREDIT and (partner is None or partner.refund_takes_back_units):
        await _take_back_units(payment, before, upto, cause, caused_by)
    elif upto >= payment.amount and kind in _PLAN_KINDS:
        await _undo_plan(payment, partner)
    elif upto >= payment.amount and kind == PaymentPurpose.ADD_ON_PURCHASE:
        if partner is None or partner.refund_plan_policy is RefundPlanPolicy.END_NOW:
            await _undo_add_on(payment)
    await audit.emit(
        "payment.reversed",
        partner_id=payment.partner_id,
        payload={"payment_id": payment.id, "reversed": upto, "amount": payment.amount, "cause": cause.value},
    )


async def _take_back_units(payment: Payment, before: int, upto: int, cause: LedgerCause, caused_by: CausedBy) -> None:
    quantity = int(payment.purpose["quantity"])
    due = quantity * upto // payment.amount - quantity * before // payment.amount
    wallet = await Wallet.get_or_none(id=payment.purpose["wallet_id"])
    if wallet is None or due <= 0:
        return
    available = max(0, wallet.balance + wallet.credit_limit)
    take = min(due, available)
    if take > 0:
        await ledger.post(
            [Leg(take, wallet.unit, wallet.id, ExternalAccount.GATEWAY)],
            cause=cause,
            caused_by=caused_by,
            note=f"taken back: {take} of {due}" if take < due else "taken back",
        )
        await expiry.consume(wallet.id, take)


async def _subscription_paid_by(payment: Payment) -> Subscription | None:
    if payment.purpose_kind == PaymentPurpose.PLAN_CHANGE:
        return await Subscription.get_or_none(id=payment.purpose["subscription_id"])
    period = await SubscriptionPeriod.filter(payment_id=payment.id).first()
    return await Subscription.get_or_none(id=period.subscription_id) if period else None


async def _undo_plan(payment: Payment, partner: Partner | None) -> None:
    subscription = await _subscription_paid_by(payment)
    if subscription is None or subscription.status not in current.LIVE:
        return
    if partner is not None and partner.refund_plan_policy is RefundPlanPolicy.END_NOW:
        await lifecycle.end(subscription, SubscriptionStatus.CANCELED, at=clock.now(), reason="payment refunded")
    else:
        subscription.cancel_at_period_end = True
        await subscription.save(update_fields=["cancel_at_period_end"])


async def _undo_add_on(payment: Payment) -> None:
    row = await WorkspaceAddOn.get_or_none(
        workspace_id=payment.purpose["workspace_id"], add_on_id=payment.purpose["add_on_id"]
    )
    if row is None:
        return
    row.quantity = max(0, row.quantity - int(payment.purpose["quantity"]))
    row.active = row.quantity > 0
    await row.save(update_fields=["quantity", "active"])
    await workspace_status.recompute(int(payment.purpose["workspace_id"]))


def _provider_key(payment: Payment, key: str) -> str:
    # The provider dedupes refunds on this: a retry of the same request never refunds twice.
    return f"{payment.reference}-refund-{hashlib.sha256(key.encode()).hexdigest()[:24]}"


async def refund_payment(
    viewer: Viewer, *, payment_id: int, amount: Entered | None, reason: str, idempotency_key: str
) -> Payment:
    """The partner refunds a payment, in full or in part (``amount`` in the payment's currency; None:
    what is left), through the provider that collected it."""
    if viewer.kind == "WORKSPACE":
        raise BillingError(ErrorCode.FORBIDDEN, "refunds are made by the partner")
    viewer.require(Permission.MANAGE_BILLING)
    reason = check_text(reason, "reason", max_length=500, allow_empty=True, multiline=True)
    payment = await tenancy.get_scoped(tenancy.payments(viewer), payment_id, "payment")
    if payment.payer_key.startswith("PARTNER:") and not viewer.is_platform:
        # The platform collected it (from the partner's balance or through its own gateway).
        raise BillingError(ErrorCode.FORBIDDEN, "what a partner paid the platform is refunded by the platform")
    asked = minor_of(amount, payment.currency) if amount is not None else None

    async def act() -> int:
        current = await Payment.get(id=payment.id)
        if current.status not in REFUNDABLE:
            raise BillingError(
                ErrorCode.INVALID_PAYMENT_TRANSITION,
                f"a {current.status.value} payment cannot be refunded",
                field="paymentId",
            )
        remaining = current.amount - current.refunded_amount
        wanted = remaining if asked is None else asked
        check_amount(wanted, field="amount")
        if wanted > remaining:
            raise BillingError(ErrorCode.INVALID_AMOUNT, f"at most {remaining} can still be refunded", field="amount")
        await audit.record(
            actor=viewer.actor,
            action="payment.refund",
            target_type="Payment",
            target_id=payment.id,
            partner_id=payment.partner_id,
            after={"amount": audit.money(Money(wanted, payment.currency)), "reason": reason},
        )
        return int(current.refunded_amount) + wanted

    total = await idempotency.run_once(
        scope=viewer.scope,
        operation="payment.refund",
        key=idempotency_key,
        request={"payment": payment_id, "amount": asked},
        action=act,
        encode=int,
        decode=int,
    )
    await payment.refresh_from_db()
    if total > payment.refunded_amount and payment.gateway_config_id and payment.provider_ref:
        config = await GatewayConfig.get(id=payment.gateway_config_id)
        if config.provider != gateway_configs.MANUAL:
            gateway = gateway_configs.gateway_for(config)
            result = await gateway.refund(
                payment.provider_ref,
                total - payment.refunded_amount,
                payment.currency,
                _provider_key(payment, idempotency_key),
            )
            if result.outcome is Outcome.UNKNOWN:
                raise BillingError(
                    ErrorCode.GATEWAY_UNAVAILABLE, "the provider did not answer: retry with the same idempotency key"
                )
            if result.outcome not in (Outcome.SUCCEEDED, Outcome.PENDING):
                raise BillingError(ErrorCode.REFUND_REFUSED, f"the provider refused the refund: {result.reason}")
    await record_refund(payment.id, total, reason=reason or "refunded by the partner")
    await payment.refresh_from_db()
    return payment


async def set_policy(
    viewer: Viewer, *, partner_id: int, plan_policy: RefundPlanPolicy, take_back_units: bool
) -> Partner:
    """What refunds and chargebacks of this partner's clients' payments take back."""
    viewer.require(Permission.MANAGE_BILLING)
    partner = await tenancy.get_scoped(tenancy.partners(viewer), partner_id, "partner")
    before = {"plan_policy": partner.refund_plan_policy.value, "take_back_units": partner.refund_takes_back_units}
    partner.refund_plan_policy, partner.refund_takes_back_units = plan_policy, take_back_units
    await partner.save(update_fields=["refund_plan_policy", "refund_takes_back_units"])
    await audit.record(
        actor=viewer.actor,
        action="refund_policy.set",
        target_type="Partner",
        target_id=partner.id,
        partner_id=partner.id,
        before=before,
        after={"plan_policy": plan_policy.value, "take_back_units": take_back_units},
    )
    return partner
