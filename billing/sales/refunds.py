"""Refunds, disputes and chargebacks, partial or full, and what they take back.

A refund is a row with a state (:class:`~models.payments.Refund`): REQUESTED when asked of the provider,
DONE when the provider says the money went back, FAILED when it refused, denied or cancelled it, or when
a done refund failed after all (Stripe's ``refund.failed``). Only a DONE refund takes anything back, and
a done refund that fails gives back what it took. The provider's word arrives with its answer to the
request, in webhooks (:func:`apply_states`) and from the reconciler, which asks again about REQUESTED
refunds (:func:`check_due`); a refund made at the provider itself is adopted when it is reported.

The payment's ``refunded_amount`` is the sum of its DONE refunds. What the payment bought is reversed up
to that amount once: ``payment.reversed_amount`` moves forward (or back, for a failed refund) with a
conditional update in the same transaction as the reversal's own ledger entries, so a refund reported
twice takes back once.

The partner's policy decides what a reversal means: points bought are taken back in proportion
(never below what the wallet still holds: spent points are not turned into debt); a fully
refunded plan payment either ends the plan now or lets the paid period run out without renewal.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta

from tortoise.transactions import in_transaction

from billing.accounts import expiry, ledger, opening
from billing.accounts.ledger import CausedBy, Leg
from billing.charges import gateway_configs, payments
from billing.core import audit, clock, idempotency, sql, tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Entered, Money, check_amount, minor_of
from billing.core.tenancy import Viewer
from billing.core.text import check_text
from billing.documents import credit_notes, issuing
from billing.sales import checkout
from billing.subscriptions import current, lifecycle, workspace_status
from gateways.base import DisputeStatus, FollowsUp, Outcome, RefundState
from models.documents import DocumentLine
from models.enums import (
    ExternalAccount,
    LedgerCause,
    OwnerKind,
    PaymentPurpose,
    PaymentStatus,
    Permission,
    RefundPlanPolicy,
    RefundStatus,
    SubscriptionStatus,
)
from models.payments import GatewayConfig, Payment, Refund
from models.subscriptions import Subscription, SubscriptionPeriod, WorkspaceAddOn
from models.tenancy import Partner
from models.wallets import Wallet

S = PaymentStatus
R = RefundStatus
REFUNDABLE = (S.SUCCEEDED, S.PARTIALLY_REFUNDED)
_HOLD = "SELECT id FROM payment WHERE id = $1"
_PLAN_KINDS = (PaymentPurpose.PLAN_PURCHASE, PaymentPurpose.PLAN_CHANGE, PaymentPurpose.SUBSCRIPTION_PERIOD)
# A REQUESTED refund is asked about again after these waits, then daily (a boleto refund waits for the payer).
CHECKS = (timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1), timedelta(hours=4), timedelta(days=1))
# Legal refund moves: a refund is settled once, but a done one may still fail.
_MOVES = {(R.REQUESTED, R.DONE), (R.REQUESTED, R.FAILED), (R.DONE, R.FAILED)}
REFUND_SUCCEEDED, REFUND_FAILED = "refund.succeeded", "refund.failed"
log = logging.getLogger("whitebill.refunds")


async def _hold(payment_id: int) -> None:
    # Reports may race (the partner, webhooks, the reconciler): the payment row is held until this one is
    # recorded, so totals are read and written one report at a time.
    lock = " FOR UPDATE" if sql.is_postgres() else ""  # SQLite runs one writing transaction at a time
    await sql.fetch(_HOLD + lock, payment_id)


async def _requested(payment_id: int) -> int:
    rows = await sql.fetch(
        "SELECT COALESCE(SUM(amount), 0) AS total FROM refund WHERE payment_id = $1 AND status = $2",
        payment_id,
        R.REQUESTED.value,
    )
    return int(rows[0]["total"])


async def settle(
    refund_id: int, outcome: Outcome, *, provider_ref: str | None = None, reason: str | None = None
) -> bool:
    """The provider says the refund is done (SUCCEEDED) or not (DECLINED); False if that changes nothing."""
    target = {Outcome.SUCCEEDED: R.DONE, Outcome.DECLINED: R.FAILED}.get(outcome)
    if target is None:
        return False
    async with in_transaction("default"):
        refund = await Refund.get(id=refund_id)
        await _hold(refund.payment_id)
        await refund.refresh_from_db()
        was = refund.status
        if (was, target) not in _MOVES:
            return False
        changed = await sql.execute(
            "UPDATE refund SET status = $1, settled_at = $2, updated_at = $2, next_check_at = NULL,"
            " failure_reason = $3, provider_ref = COALESCE($4, provider_ref) WHERE id = $5 AND status = $6",
            target.value,
            clock.now(),
            (reason or "the provider did not refund it") if target is R.FAILED else None,
            provider_ref,
            refund.id,
            was.value,
        )
        if changed != 1:
            return False
        payment = await Payment.get(id=refund.payment_id)
        if target is R.DONE:
            total = min(payment.amount, payment.refunded_amount + refund.amount)
            status = S.REFUNDED if total >= payment.amount else S.PARTIALLY_REFUNDED
            if await payments.move(payment.id, status, reason=refund.reason or "refunded", refunded_amount=total):
                await _reverse(payment, total, LedgerCause.REFUND)
            else:  # disputed or charged back meanwhile: the money went back all the same
                log.warning("a refund was done on a payment that could not move", extra={"payment_id": payment.id})
            # The money went back: its credit note, against the payment's invoice.
            await issuing.credit_payment(
                payment, refund.amount, reason=refund.reason or "refund", line_id=refund.invoice_line_id
            )
        elif was is R.DONE:
            total = max(0, payment.refunded_amount - refund.amount)
            status = S.PARTIALLY_REFUNDED if total > 0 else S.SUCCEEDED
            if await payments.move(
                payment.id, status, reason=reason or "refund failed", refunded_amount=total, undoing_refund=True
            ):
                await _restore(payment, total)
        await refund.refresh_from_db()
        await audit.emit(
            REFUND_SUCCEEDED if target is R.DONE else REFUND_FAILED,
            payment.partner_id,
            {
                "refund_id": refund.id,
                "payment_id": payment.id,
                "amount": refund.amount,
                "currency": refund.currency,
                "reason": refund.failure_reason if target is R.FAILED else refund.reason,
                "was_done": was is R.DONE,
            },
        )
        return True


async def _note_pending(
    refund: Refund, *, provider_ref: str | None, payer_action: dict[str, object] | None = None
) -> None:
    await sql.execute(
        "UPDATE refund SET provider_ref = COALESCE($1, provider_ref), payer_action = COALESCE($2, payer_action),"
        " next_check_at = $3, check_attempts = check_attempts + 1 WHERE id = $4 AND status = $5",
        provider_ref,
        _json(payer_action),
        clock.now() + CHECKS[min(refund.check_attempts, len(CHECKS) - 1)],
        refund.id,
        R.REQUESTED.value,
    )


def _json(value: dict[str, object] | None) -> str | None:
    return json.dumps(value) if value is not None else None


async def record_refund(payment_id: int, total_refunded: int, *, reason: str) -> bool:
    """The provider reports only that ``total_refunded`` was refunded in all (no detail per refund): what
    exceeds the refunds already known (done or requested) is a refund made at the provider, recorded as
    done. A total that includes a refund still REQUESTED here leaves it to that refund's own report."""
    async with in_transaction("default"):
        await _hold(payment_id)
        payment = await Payment.get(id=payment_id)
        if payment.status not in REFUNDABLE:
            return False  # not paid (or disputed): a refund of it is not believed
        total = min(total_refunded, payment.amount)
        extra = total - payment.refunded_amount - await _requested(payment_id)
        if extra <= 0:
            return False  # already known
        refund, _ = await Refund.get_or_create(
            payment_id=payment.id,
            key=f"reported-total-{total}",
            defaults={
                "partner_id": payment.partner_id,
                "amount": extra,
                "currency": payment.currency,
                "reason": reason,
            },
        )
        return await settle(refund.id, Outcome.SUCCEEDED)


RECEIPT_UNDONE = "receipt-undone-"  # the key of a refund that stands for an undone cash receipt


async def undo_receipt(payment_id: int, *, event_id: str, reason: str) -> bool:
    """A payment the partner recorded as paid by hand at the provider (Asaas: received in cash) is unpaid
    again. No money moved, but what the payment bought goes back as for a refund: it is recorded as a done
    refund of what is left of the payment (key ``receipt-undone-<event>``), so the partner's policy
    applies, the partner is told (``refund.succeeded``), and paying after all gives it back
    (:func:`paid_after_undo`)."""
    async with in_transaction("default"):
        await _hold(payment_id)
        payment = await Payment.get(id=payment_id)
        if payment.status not in REFUNDABLE:
            return False
        left = payment.amount - payment.refunded_amount - await _requested(payment_id)
        if left <= 0:
            return False
        refund, _ = await Refund.get_or_create(
            payment_id=payment.id,
            key=f"{RECEIPT_UNDONE}{event_id}"[:128],
            defaults={"partner_id": payment.partner_id, "amount": left, "currency": payment.currency, "reason": reason},
        )
        return await settle(refund.id, Outcome.SUCCEEDED)


async def paid_after_undo(payment_id: int, *, reason: str) -> bool:
    """The provider says a payment whose cash receipt was undone is paid after all: each such reversal
    fails, which gives back what it took (``refund.failed`` tells the partner)."""
    undone = Refund.filter(payment_id=payment_id, status=R.DONE, key__startswith=RECEIPT_UNDONE).order_by("id")
    why = f"paid after the cash receipt was undone ({reason})"
    settled = [await settle(refund.id, Outcome.DECLINED, reason=why) for refund in await undone]
    return any(settled)


async def apply_states(
    payment: Payment, states: tuple[RefundState, ...] | list[RefundState], *, reason: str, complete: bool
) -> None:
    """Fold the provider's view of the payment's refunds in: each is matched to ours by the key we sent
    (or the provider's id) and settled. ``complete`` says the states are every refund of the payment (a
    payment's listed refunds, not one refund's event): only then are refunds we never asked for adopted
    (made at the provider), and only for what the provider reports beyond the refunds known here, so a
    refund recorded without its provider's id (before refunds were rows) is never taken twice."""
    unmatched: list[RefundState] = []
    for state in states:
        refund = await _match(payment, state)
        if refund is None:
            unmatched.append(state)
        elif state.outcome is Outcome.PENDING:
            if state.provider_ref and refund.provider_ref != state.provider_ref and refund.status is R.REQUESTED:
                await Refund.filter(id=refund.id).update(provider_ref=state.provider_ref)
        else:
            await settle(refund.id, state.outcome, provider_ref=state.provider_ref, reason=state.reason)
    await payment.refresh_from_db()
    if not complete or not unmatched or payment.status not in REFUNDABLE:
        return
    for outcome in (Outcome.SUCCEEDED, Outcome.PENDING):
        reported = sum(s.amount for s in states if s.outcome is outcome)
        known = payment.refunded_amount if outcome is Outcome.SUCCEEDED else await _requested(payment.id)
        gap = reported - known
        for state in (s for s in unmatched if s.outcome is outcome):
            if gap <= 0:
                break
            refund = await _adopt(payment, state, min(state.amount, gap), reason=reason)
            gap -= refund.amount
            if outcome is Outcome.SUCCEEDED:
                await settle(refund.id, outcome, provider_ref=state.provider_ref)
                await payment.refresh_from_db()


async def _match(payment: Payment, state: RefundState) -> Refund | None:
    if state.key:
        found = await Refund.get_or_none(payment_id=payment.id, key=state.key)
        if found is not None:
            return found
    if state.provider_ref:
        return await Refund.filter(payment_id=payment.id, provider_ref=state.provider_ref).first()
    return None


async def _adopt(payment: Payment, state: RefundState, amount: int, *, reason: str) -> Refund:
    key = state.key or state.provider_ref or f"provider-{state.amount}"
    refund, _ = await Refund.get_or_create(
        payment_id=payment.id,
        key=key[:128],
        defaults={
            "partner_id": payment.partner_id,
            "amount": amount,
            "currency": payment.currency,
            "provider_ref": state.provider_ref,
            "reason": f"made at the provider ({reason})",
        },
    )
    return refund


DISPUTE_CHECK = timedelta(days=1)


async def check_dispute(payment: Payment) -> None:
    """Ask the provider how a DISPUTED payment's dispute stands: lost takes back what it bought, won puts
    the payment back to SUCCEEDED (nothing was taken, nothing is delivered again), open asks again
    tomorrow."""
    config = await GatewayConfig.get_or_none(id=payment.gateway_config_id) if payment.gateway_config_id else None
    if payment.status is not S.DISPUTED or config is None or not payment.provider_ref:
        await sql.execute("UPDATE payment SET next_check_at = NULL WHERE id = $1", payment.id)
        return
    gateway = gateway_configs.gateway_for(config)
    status = await gateway.dispute_of(payment.provider_ref) if isinstance(gateway, FollowsUp) else None
    if status is DisputeStatus.LOST:
        await record_chargeback(payment.id, reason="dispute lost (found by the reconciler)")
    elif status is DisputeStatus.WON:
        await payments.move(payment.id, S.SUCCEEDED, reason="dispute won (found by the reconciler)", next_check_at=None)


async def check_disputes_due(*, limit: int = 20) -> int:
    """The reconciler's daily look at disputed payments (a provider may never announce the end: Asaas
    documents no event for a lost chargeback)."""
    taken = await _take_due("payment", S.DISPUTED.value, DISPUTE_CHECK, limit)
    for payment_id in taken:
        try:
            await check_dispute(await Payment.get(id=payment_id))
        except Exception:
            log.exception("checking a dispute failed", extra={"payment_id": payment_id})
    return len(taken)


async def _take_due(table: str, status: str, lease: timedelta, limit: int) -> list[int]:
    """Claim up to ``limit`` rows of ``table`` (payment or refund) in ``status`` whose ``next_check_at``
    has come, each by moving it forward by ``lease`` with a conditional update, so any number of workers
    may look and each row is taken by one; a worker that dies holding one only delays it."""
    rows = await sql.fetch(
        f"SELECT id, next_check_at FROM {table} WHERE status = $1 AND next_check_at IS NOT NULL"  # noqa: S608
        " AND next_check_at <= $2 ORDER BY next_check_at, id LIMIT $3",
        status,
        clock.now(),
        limit,
    )
    taken = []
    for row in rows:
        moved = await sql.execute(
            f"UPDATE {table} SET next_check_at = $1 WHERE id = $2 AND next_check_at = $3",  # noqa: S608
            clock.now() + lease,
            row["id"],
            row["next_check_at"],
        )
        if moved == 1:
            taken.append(int(row["id"]))
    return taken


async def record_chargeback(payment_id: int, *, reason: str) -> bool:
    """A dispute was lost: the whole payment is gone, and so is what it bought."""
    async with in_transaction("default"):
        payment = await Payment.get(id=payment_id)
        if payment.status is S.SUCCEEDED or payment.status is S.PARTIALLY_REFUNDED:
            await payments.move(payment.id, S.DISPUTED, reason=reason)
        if not await payments.move(payment.id, S.CHARGED_BACK, reason=reason, next_check_at=None):
            return False
        await _reverse(payment, payment.amount, LedgerCause.CHARGEBACK)
        await issuing.credit_payment(payment, payment.amount, reason=f"dispute lost: {reason}"[:300])
        return True


async def _move_reversed(payment: Payment, to: int, *, up: bool) -> int | None:
    """Move ``payment.reversed_amount`` up (a reversal) or down (a failed refund) to ``to`` with a
    conditional update; the amount it held before, or None if it is already there or past it, or a
    concurrent report moved it first (then that report acts, once)."""
    rows = await sql.fetch("SELECT reversed_amount FROM payment WHERE id = $1", payment.id)
    before = int(rows[0]["reversed_amount"])
    if (to <= before if up else to >= before) or payment.amount <= 0:
        return None
    moved = await sql.execute(
        "UPDATE payment SET reversed_amount = $1 WHERE id = $2 AND reversed_amount = $3", to, payment.id, before
    )
    return before if moved == 1 else None


async def _balance_back(payment: Payment, amount: int, cause: LedgerCause, caused_by: CausedBy, note: str) -> None:
    """A payment from the partner's balance with the platform: ``amount`` goes back to that balance (or,
    negative, is taken from it again)."""
    if payment.method.value != "BALANCE" or not payment.partner_id:
        return
    wallet = await opening.open_wallet(
        partner_id=payment.partner_id, owner_kind=OwnerKind.PARTNER, owner_id=payment.partner_id, unit=payment.currency
    )
    leg = (
        Leg(amount, payment.currency, ExternalAccount.PLATFORM_REVENUE, wallet.id)
        if amount > 0
        else Leg(-amount, payment.currency, wallet.id, ExternalAccount.PLATFORM_REVENUE)
    )
    await ledger.post([leg], cause=cause, caused_by=caused_by, note=note)


async def _reverse(payment: Payment, upto: int, cause: LedgerCause) -> None:
    """Take back what ``payment`` bought, in proportion, up to ``upto`` of its amount, once."""
    before = await _move_reversed(payment, upto, up=True)
    if before is None:
        return
    partner = await Partner.get(id=payment.partner_id) if payment.partner_id else None
    caused_by = CausedBy("Payment", str(payment.id))
    # Paid from the partner's balance with the platform: the money goes back there.
    await _balance_back(payment, upto - before, cause, caused_by, "refund")
    kind = payment.purpose_kind
    if kind == PaymentPurpose.WALLET_CREDIT and await _takes_back_units(payment, partner):
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


async def _takes_back_units(payment: Payment, partner: Partner | None) -> bool:
    """Whether a reversal takes back the units a payment bought: the seller's choice. A client's payment was
    collected by its partner; a partner's purchase from a parent reselling above it, by that parent (never
    the buyer's own setting); the platform always takes back what it sold."""
    if payment.payer_key.startswith("PARTNER:"):
        collector = checkout.collector_of(payment)
        if collector is None:
            return True
        return bool((await Partner.get(id=collector)).refund_takes_back_units)
    return partner is None or partner.refund_takes_back_units


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


async def _restore(payment: Payment, down_to: int) -> None:
    """A done refund failed: give back what the reversal took beyond ``down_to``, once (the conditional
    update on ``reversed_amount``). Points come back as far as the reversal took them; a plan left to run
    out renews again and an add-on taken away comes back; a plan ended at once stays ended (the partner,
    told by ``refund.failed``, sells it again if it wants)."""
    before = await _move_reversed(payment, down_to, up=False)
    if before is None:
        return
    caused_by = CausedBy("Payment", str(payment.id))
    await _balance_back(payment, down_to - before, LedgerCause.REFUND_FAILED, caused_by, "refund failed")
    kind = payment.purpose_kind
    if kind == PaymentPurpose.WALLET_CREDIT:
        await _give_back_units(payment, down_to, caused_by)
    elif before >= payment.amount > down_to and kind in _PLAN_KINDS:
        subscription = await _subscription_paid_by(payment)
        if subscription is not None and subscription.status in current.LIVE and subscription.cancel_at_period_end:
            subscription.cancel_at_period_end = False
            await subscription.save(update_fields=["cancel_at_period_end"])
    elif before >= payment.amount > down_to and kind == PaymentPurpose.ADD_ON_PURCHASE:
        partner = await Partner.get_or_none(id=payment.partner_id) if payment.partner_id else None
        if partner is None or partner.refund_plan_policy is RefundPlanPolicy.END_NOW:
            await _redo_add_on(payment)
    await audit.emit(
        "payment.restored",
        partner_id=payment.partner_id,
        payload={"payment_id": payment.id, "reversed": down_to, "amount": payment.amount},
    )


async def _give_back_units(payment: Payment, down_to: int, caused_by: CausedBy) -> None:
    """Units the payment's refunds took from its wallet, less what ``down_to`` still takes in proportion."""
    wallet = await Wallet.get_or_none(id=payment.purpose["wallet_id"])
    if wallet is None:
        return
    rows = await sql.fetch(
        "SELECT COALESCE(SUM(e.amount), 0) AS moved FROM ledger_entry e JOIN posting p ON p.id = e.posting_id"
        " WHERE e.wallet_id = $1 AND p.caused_by_type = $2 AND p.caused_by_id = $3 AND e.cause IN ($4, $5)",
        wallet.id,
        caused_by.type,
        caused_by.id,
        LedgerCause.REFUND.value,
        LedgerCause.REFUND_FAILED.value,
    )
    taken = -int(rows[0]["moved"])  # refunds debit the wallet, restorations credit it
    keep = int(payment.purpose["quantity"]) * down_to // payment.amount
    give = taken - keep
    if give > 0:
        await ledger.post(
            [Leg(give, wallet.unit, ExternalAccount.GATEWAY, wallet.id)],
            cause=LedgerCause.REFUND_FAILED,
            caused_by=caused_by,
            note="given back: the refund failed",
        )


async def _redo_add_on(payment: Payment) -> None:
    row = await WorkspaceAddOn.get_or_none(
        workspace_id=payment.purpose["workspace_id"], add_on_id=payment.purpose["add_on_id"]
    )
    if row is None:
        return
    row.quantity += int(payment.purpose["quantity"])
    row.active = row.quantity > 0
    await row.save(update_fields=["quantity", "active"])
    await workspace_status.recompute(int(payment.purpose["workspace_id"]))


def _provider_key(payment: Payment, key: str) -> str:
    # The provider dedupes refunds on this: a retry of the same request never refunds twice.
    return f"{payment.reference}-refund-{hashlib.sha256(key.encode()).hexdigest()[:24]}"


async def refund_payment(
    viewer: Viewer,
    *,
    payment_id: int,
    amount: Entered | None,
    reason: str,
    idempotency_key: str,
    invoice_line_id: int | None = None,
) -> tuple[Payment, Refund]:
    """The partner refunds a payment, in full or in part (``amount`` in the payment's currency; None:
    what is left, or what is left of ``invoice_line_id``, a line of the payment's invoice), through the
    provider that collected it. The refund is REQUESTED until the provider says it is done (then its
    credit note is issued); a repeat with the same key answers the same refund."""
    if viewer.kind == "WORKSPACE":
        raise BillingError(ErrorCode.FORBIDDEN, "refunds are made by the partner")
    viewer.require(Permission.MANAGE_BILLING)
    reason = check_text(reason, "reason", max_length=500, allow_empty=True, multiline=True)
    payment = await tenancy.get_scoped(tenancy.payments(viewer, with_descendants=True), payment_id, "payment")
    if not viewer.is_platform and checkout.collector_of(payment) != viewer.partner_id:
        # What a partner paid is refunded by whoever collected it: the platform (from the partner's balance
        # or through its own gateway), or the parent it topped its balance up with.
        if payment.partner_id != viewer.partner_id:
            raise BillingError(ErrorCode.NOT_FOUND, "payment not found", field="paymentId")
        raise BillingError(ErrorCode.FORBIDDEN, "what a partner paid is refunded by whoever collected it")
    asked = minor_of(amount, payment.currency) if amount is not None else None

    async def act() -> int:
        await _hold(payment.id)
        current = await Payment.get(id=payment.id)
        if current.status not in REFUNDABLE:
            raise BillingError(
                ErrorCode.INVALID_PAYMENT_TRANSITION,
                f"a {current.status.value} payment cannot be refunded",
                field="paymentId",
            )
        requested = await _requested(current.id)
        remaining = current.amount - current.refunded_amount - requested
        if invoice_line_id is not None:
            remaining = min(remaining, await _left_on_line(current, invoice_line_id))
        wanted = remaining if asked is None else asked
        check_amount(wanted, field="amount")
        if wanted > remaining:
            pending = f" ({requested} more is being refunded)" if requested else ""
            raise BillingError(
                ErrorCode.INVALID_AMOUNT, f"at most {remaining} can still be refunded{pending}", field="amount"
            )
        refund = await Refund.create(
            payment_id=current.id,
            partner_id=current.partner_id,
            amount=wanted,
            currency=current.currency,
            key=_provider_key(current, idempotency_key),
            reason=reason or "refunded by the partner",
            invoice_line_id=invoice_line_id,
        )
        await audit.record(
            actor=viewer.actor,
            action="payment.refund",
            target_type="Payment",
            target_id=payment.id,
            partner_id=payment.partner_id,
            after={"amount": audit.money(Money(wanted, payment.currency)), "reason": reason},
        )
        return int(refund.id)

    refund_id = await idempotency.run_once(
        scope=viewer.scope,
        operation="payment.refund",
        key=idempotency_key,
        request={"payment": payment_id, "amount": asked, "line": invoice_line_id},
        action=act,
        encode=int,
        decode=int,
    )
    refund = await Refund.get(id=refund_id)
    if refund.status is R.REQUESTED and refund.provider_ref is None:
        await ask_provider(payment, refund, raise_refusal=True)
    await payment.refresh_from_db()
    await refund.refresh_from_db()
    return payment, refund


async def _left_on_line(payment: Payment, line_id: int) -> int:
    """What of a line of the payment's invoice is neither credited nor being refunded."""
    invoice = await issuing.invoice_of(payment.id)
    line = await DocumentLine.get_or_none(id=line_id, document_id=invoice.id) if invoice else None
    if line is None:
        raise BillingError(ErrorCode.NOT_FOUND, "that line is not on this payment's invoice", field="invoiceLineId")
    requested = await Refund.filter(payment_id=payment.id, status=R.REQUESTED, invoice_line_id=line_id)
    credited = (await credit_notes.credited_per_line(line.document_id)).get(line_id, 0)
    left = line.total - credited - sum(refund.amount for refund in requested)
    return max(0, int(left))


async def ask_provider(payment: Payment, refund: Refund, *, raise_refusal: bool = False) -> None:
    """Ask the payment's provider for a REQUESTED refund (again: the key makes a repeat harmless)."""
    config = await GatewayConfig.get_or_none(id=payment.gateway_config_id) if payment.gateway_config_id else None
    if config is None or config.provider == gateway_configs.MANUAL or not payment.provider_ref:
        await settle(refund.id, Outcome.SUCCEEDED)  # the partner gave the money back itself
        return
    gateway = gateway_configs.gateway_for(config)
    result = await gateway.refund(payment.provider_ref, refund.amount, payment.currency, refund.key)
    if result.outcome is Outcome.SUCCEEDED:
        await settle(refund.id, Outcome.SUCCEEDED, provider_ref=result.provider_ref)
    elif result.outcome is Outcome.PENDING:
        await _note_pending(refund, provider_ref=result.provider_ref, payer_action=result.payer_action)
    elif result.outcome is Outcome.UNKNOWN:
        await _note_pending(refund, provider_ref=None)
        if raise_refusal:
            raise BillingError(
                ErrorCode.GATEWAY_UNAVAILABLE, "the provider did not answer: retry with the same idempotency key"
            )
    else:  # DECLINED or NOT_ATTEMPTED: nothing was refunded
        await settle(refund.id, Outcome.DECLINED, reason=f"the provider refused the refund: {result.reason}")
        if raise_refusal:
            raise BillingError(ErrorCode.REFUND_REFUSED, f"the provider refused the refund: {result.reason}")


async def check(refund: Refund) -> None:
    """The reconciler's look at one REQUESTED refund: asked again if the provider never answered it,
    else matched against the provider's list of the payment's refunds."""
    payment = await Payment.get(id=refund.payment_id)
    if refund.provider_ref is None:
        await ask_provider(payment, refund)
        return
    config = await GatewayConfig.get_or_none(id=payment.gateway_config_id) if payment.gateway_config_id else None
    if config is None or config.provider == gateway_configs.MANUAL or not payment.provider_ref:
        return
    gateway = gateway_configs.gateway_for(config)
    states = await gateway.refunds_of(payment.provider_ref) if isinstance(gateway, FollowsUp) else None
    if states is not None:
        await apply_states(payment, states, reason="found by the reconciler", complete=True)
    await refund.refresh_from_db()
    if refund.status is R.REQUESTED:
        await _note_pending(refund, provider_ref=None)


async def check_due(*, limit: int = 20) -> int:
    """Ask about up to ``limit`` REQUESTED refunds whose time has come (one worker each)."""
    taken = await _take_due("refund", R.REQUESTED.value, timedelta(minutes=10), limit)
    for refund_id in taken:
        try:
            await check(await Refund.get(id=refund_id))
        except Exception:
            log.exception("checking a refund failed", extra={"refund_id": refund_id})
    return len(taken)


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
