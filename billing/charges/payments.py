"""The payment spine: the state table, charging through a gateway, and exactly-once fulfilment.

A payment row is committed before the provider is called; its random ``reference`` (``pay_…``) is the
provider's idempotency key (and Asaas's externalReference). Every provider answer moves the payment
through :data:`TRANSITIONS` with a conditional UPDATE, and the move to SUCCEEDED runs what its purpose
delivers (the table in :mod:`billing.dispatch`) in the same transaction, so the thing bought is delivered
exactly once however many times the answer arrives (the charge's own reply, a webhook, the reconciler).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tortoise.transactions import in_transaction

from billing.charges import pay_links
from billing.core import audit, clock, observe, realtime, sql
from billing.core.errors import BillingError, ErrorCode
from billing.documents import invoices, issuing
from gateways.base import ChargeRequest, ChargeResult, Gateway, Outcome, Payer
from models.catalog import AddOn, CreditPackage, Plan
from models.enums import PaymentMethodKind, PaymentPurpose, PaymentStatus
from models.payments import Payment, PaymentTransition
from models.wallets import Wallet

S = PaymentStatus

# Legal moves: to-status -> the statuses it may come from.
TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    S.PENDING: frozenset({S.CREATED, S.UNKNOWN, S.NOT_ATTEMPTED}),
    # An off-session charge waits for the payer to authenticate; a pending one never goes back to it.
    S.REQUIRES_ACTION: frozenset({S.CREATED, S.UNKNOWN, S.NOT_ATTEMPTED}),
    # A late success (a pix paid after we gave up on it) still delivers: the money was collected.
    S.SUCCEEDED: frozenset(
        {S.CREATED, S.PENDING, S.UNKNOWN, S.NOT_ATTEMPTED, S.DECLINED, S.CANCELED, S.REQUIRES_ACTION}
    ),
    S.DECLINED: frozenset({S.CREATED, S.PENDING, S.UNKNOWN, S.NOT_ATTEMPTED, S.REQUIRES_ACTION}),
    S.NOT_ATTEMPTED: frozenset({S.CREATED, S.UNKNOWN}),
    S.UNKNOWN: frozenset({S.CREATED, S.PENDING, S.NOT_ATTEMPTED}),
    S.CANCELED: frozenset({S.CREATED, S.PENDING, S.NOT_ATTEMPTED, S.DECLINED, S.REQUIRES_ACTION}),
    S.PARTIALLY_REFUNDED: frozenset({S.SUCCEEDED, S.PARTIALLY_REFUNDED}),
    S.REFUNDED: frozenset({S.SUCCEEDED, S.PARTIALLY_REFUNDED}),
    S.DISPUTED: frozenset({S.SUCCEEDED, S.PARTIALLY_REFUNDED}),
    S.CHARGED_BACK: frozenset({S.DISPUTED}),
}
# A dispute won puts the payment back to SUCCEEDED without fulfilling again.
_DISPUTE_WON = (S.DISPUTED, S.SUCCEEDED)
# A done refund that failed after all (``undoing_refund``): the payment goes back to what it was. Only
# then: a late "payment succeeded" must never take a refunded payment back.
_REFUND_UNDONE = frozenset(
    {
        (S.REFUNDED, S.SUCCEEDED),
        (S.REFUNDED, S.PARTIALLY_REFUNDED),
        (S.PARTIALLY_REFUNDED, S.SUCCEEDED),
        (S.PARTIALLY_REFUNDED, S.PARTIALLY_REFUNDED),
    }
)

_OUTCOME_STATUS = {
    Outcome.SUCCEEDED: S.SUCCEEDED,
    Outcome.PENDING: S.PENDING,
    Outcome.DECLINED: S.DECLINED,
    Outcome.NOT_ATTEMPTED: S.NOT_ATTEMPTED,
    Outcome.UNKNOWN: S.UNKNOWN,
    Outcome.REQUIRES_ACTION: S.REQUIRES_ACTION,
}

Fulfilment = Callable[[Payment], Awaitable[None]]
ReferenceLearnt = Callable[[Payment], Awaitable[object]]


@dataclass(frozen=True)
class Deliveries:
    """What a paid payment of each purpose delivers (credit a wallet, activate a plan...), and what else
    runs, in the same transaction, when a payment of a purpose gets a final answer. The table itself is
    written once, in :mod:`billing.dispatch`, where every area that sells something is in view."""

    on_paid: Mapping[PaymentPurpose, Fulfilment]
    on_settled: Mapping[PaymentPurpose, Sequence[Fulfilment]]
    # Once a provider's answer has given a payment its provider reference (outside any transaction):
    # provider events that arrived before it, kept as ignored, are applied to it.
    on_provider_ref: ReferenceLearnt | None = None


_deliveries: Deliveries | None = None
# An answer that ends the attempt: what waited on it (a wallet's top-up slot) can be freed.
FINAL = frozenset({S.SUCCEEDED, S.DECLINED, S.NOT_ATTEMPTED, S.CANCELED})


def install(deliveries: Deliveries) -> None:
    global _deliveries
    _deliveries = deliveries


def _table() -> Deliveries:
    if _deliveries is None:  # a process that moves payments without billing.dispatch.install()
        raise RuntimeError("payment deliveries are not installed: call billing.dispatch.install() at start-up")
    return _deliveries


def can_move(current: PaymentStatus, target: PaymentStatus, *, undoing_refund: bool = False) -> bool:
    if undoing_refund:
        return (current, target) in _REFUND_UNDONE
    return current in TRANSITIONS.get(target, frozenset()) or (current, target) == _DISPUTE_WON


async def create_payment(
    *,
    partner_id: int | None,
    payer_key: str,
    gateway_config_id: int | None,
    provider: str,
    method: PaymentMethodKind,
    amount: int,
    currency: str,
    purpose: dict[str, Any],
    note: str = "",
    remote_ip: str | None = None,
    lines: Sequence[invoices.LineInput] | None = None,
) -> Payment:
    """The payment of ``amount`` (the price, before coupons and exclusive taxes) and its finalized invoice,
    committed together: ``lines`` are the invoice's (by default one line for the whole price), and the
    amount charged is the invoice's total. The purpose keeps the price (``price``), which is what a plan
    costs from then on, whatever this charge took off or added."""
    if purpose.get("kind") not in _table().on_paid:
        raise BillingError(ErrorCode.INVALID_INPUT, f"nothing fulfils a payment for {purpose.get('kind')!r}")
    if lines is None:
        item_type, item_id = _item_of(purpose)
        lines = [invoices.LineInput(await _describe(purpose), amount, 1, item_type, item_id)]
    if sum(line.quantity * line.unit_price for line in lines) != amount:
        raise ValueError("an invoice's lines add up to the payment's price")
    async with in_transaction("default"):
        collector = purpose.get("collector")  # a parent collecting from a partner below it (checkout.Sale)
        invoice = await issuing.draft_for(partner_id, payer_key, currency, lines, int(collector) if collector else None)
        payment = await Payment.create(
            partner_id=partner_id,
            payer_key=payer_key,
            reference=f"pay_{uuid.uuid4().hex}",
            gateway_config_id=gateway_config_id,
            provider=provider,
            method=method,
            amount=invoice.total,
            currency=currency,
            purpose={**purpose, "price": amount},
            purpose_kind=purpose["kind"],
            note=note,
            remote_ip=remote_ip,
        )
        await issuing.open_for(invoice, payment.id)
        observe.payment_moved(provider, S.CREATED.value)
    return payment


_LABELS = {
    PaymentPurpose.PLAN_PURCHASE: "Plan",
    PaymentPurpose.PLAN_CHANGE: "Change of plan",
    PaymentPurpose.SUBSCRIPTION_PERIOD: "Plan renewal",
    PaymentPurpose.ADD_ON_PURCHASE: "Add-on",
    PaymentPurpose.WALLET_CREDIT: "Credits",
}


async def _describe(purpose: Mapping[str, Any]) -> str:
    """What the buyer reads on the invoice line: the plan, add-on or package by name, or the units bought;
    never the partner's own note, which stays on the payment."""
    label = _LABELS[PaymentPurpose(purpose["kind"])]
    if purpose.get("plan_id") is not None:
        plan = await Plan.get_or_none(id=purpose["plan_id"])
        return f"{label}: {plan.name}" if plan else label
    if purpose.get("add_on_id") is not None:
        add_on = await AddOn.get_or_none(id=purpose["add_on_id"])
        return f"{add_on.name} x {purpose.get('quantity', 1)}" if add_on else label
    if purpose.get("package_id") is not None:
        package = await CreditPackage.get_or_none(id=purpose["package_id"])
        return package.name if package else label
    if purpose.get("wallet_id") is not None:
        wallet = await Wallet.get_or_none(id=purpose["wallet_id"])
        return f"{purpose.get('quantity')} {wallet.unit}" if wallet else label
    return label


def _item_of(purpose: Mapping[str, Any]) -> tuple[str, int | None]:
    """What a payment's invoice line bills, from its purpose: a plan, an add-on or a package."""
    for key, kind in (("plan_id", "Plan"), ("add_on_id", "AddOn"), ("package_id", "CreditPackage")):
        if purpose.get(key) is not None:
            return kind, int(purpose[key])
    return "", None


async def move(
    payment_id: int, target: PaymentStatus, *, reason: str = "", undoing_refund: bool = False, **changes: Any
) -> bool:
    """Move a payment to ``target`` if the table allows it from its current status.

    Returns False (and changes nothing) when the move is not legal now, e.g. a second delivery of
    the same success. A move to SUCCEEDED fulfils the purpose in the same transaction.
    """
    async with in_transaction("default"):
        rows = await sql.fetch(
            "SELECT status, purpose_kind, partner_id, provider FROM payment WHERE id = $1", payment_id
        )
        if not rows:
            raise BillingError(ErrorCode.NOT_FOUND, "payment not found")
        current = PaymentStatus(rows[0]["status"])
        if not can_move(current, target, undoing_refund=undoing_refund):
            return False
        sets = ["status = $1", "updated_at = $2"]
        params: list[Any] = [target.value, clock.now()]
        for column, value in changes.items():
            params.append(value)
            sets.append(f"{column} = ${len(params)}")
        params += [payment_id, current.value]
        # Conditional on the status we read: a concurrent move makes this one a no-op.
        updated = await sql.execute(
            f"UPDATE payment SET {', '.join(sets)} WHERE id = ${len(params) - 1} AND status = ${len(params)}",  # noqa: S608
            *params,
        )
        if updated != 1:
            return False
        await PaymentTransition.create(payment_id=payment_id, from_status=current, to_status=target, reason=reason)
        observe.payment_moved(rows[0]["provider"], target.value)  # counted once this commits
        # Subscribers (paymentChanged) hear of it once this commits (PostgreSQL) or at once (SQLite).
        await realtime.publish(realtime.Change(realtime.PAYMENT, payment_id, rows[0]["partner_id"]))
        # Its documents first (a late success takes its coupons back before the plan they reduce starts).
        if not undoing_refund and (target in _VOIDS or (target is S.SUCCEEDED and current is not S.DISPUTED)):
            settled = await Payment.get(id=payment_id)
            await (issuing.paid(settled) if target is S.SUCCEEDED else issuing.failed(settled))
        if target is S.SUCCEEDED and current is not S.DISPUTED:
            await _fulfil(payment_id)
        hooks = _table().on_settled.get(PaymentPurpose(rows[0]["purpose_kind"]), ()) if target in FINAL else ()
        if hooks or target in _ANNOUNCED:
            payment = await Payment.get(id=payment_id)
            for hook in hooks:
                await hook(payment)
            if target in _ANNOUNCED:
                await _announce(payment, target)
        return True


# A payment that ends here never collects (a late success aside): its invoice is void. NOT_ATTEMPTED is not
# among them: the same payment is charged again (a tax id added, say), and its invoice waits for it.
_VOIDS = frozenset({S.DECLINED, S.CANCELED})

# The payer hears of these (e-mail) and so does the partner (webhooks).
_ANNOUNCED = {
    S.PENDING: "payment.pending",
    S.DECLINED: "payment.failed",
    S.REQUIRES_ACTION: "payment.requires_action",
}


async def _announce(payment: Payment, status: PaymentStatus) -> None:
    await audit.emit(
        _ANNOUNCED[status],
        payment.partner_id,
        {
            "payment_id": payment.id,
            "payer_key": payment.payer_key,
            "amount": payment.amount,
            "currency": payment.currency,
            "purpose": payment.purpose_kind,
            "payer_action": payment.payer_action,
            "reason": payment.decline_reason,
        },
    )


async def _fulfil(payment_id: int) -> None:
    fulfilled = await sql.execute(
        "UPDATE payment SET fulfilled_at = $1 WHERE id = $2 AND fulfilled_at IS NULL", clock.now(), payment_id
    )
    if fulfilled != 1:
        return
    payment = await Payment.get(id=payment_id)
    await _table().on_paid[PaymentPurpose(payment.purpose_kind)](payment)


async def apply_result(payment: Payment, result: ChargeResult) -> Payment:
    """Fold a provider answer into the payment."""
    changes: dict[str, Any] = {}
    if result.provider_ref:
        changes["provider_ref"] = result.provider_ref
    if result.decline_reason:
        changes["decline_reason"] = result.decline_reason
    if result.payer_action is not None:
        action = result.payer_action
        if result.outcome is Outcome.REQUIRES_ACTION:  # the payer completes it at whitebill's pay-now page
            action = {**action, "url": pay_links.link(payment.reference)}
        changes["payer_action"] = json.dumps(action)
    await move(payment.id, _OUTCOME_STATUS[result.outcome], reason=result.decline_reason or "", **changes)
    await payment.refresh_from_db()
    held = _table().on_provider_ref
    if payment.provider_ref and held is not None:
        await held(payment)
        await payment.refresh_from_db()
    return payment


async def charge(
    gateway: Gateway,
    payment: Payment,
    payer: Payer,
    *,
    saved_method_ref: str | None = None,
    method_token: str | None = None,
    save_method: bool = False,
    off_session: bool = False,
    description: str = "",
    remote_ip: str | None = None,
) -> tuple[Payment, ChargeResult]:
    """Ask the provider to collect a committed payment. Never call this inside a transaction."""
    request = ChargeRequest(
        payment_id=payment.id,
        idempotency_key=payment.reference,
        amount=payment.amount,
        currency=payment.currency,
        method=payment.method.value,
        payer=payer,
        description=description,
        saved_method_ref=saved_method_ref,
        method_token=method_token,
        save_method=save_method,
        off_session=off_session,
        remote_ip=payment.remote_ip or remote_ip,  # the payer's address now, else the one kept with the card
    )
    try:
        result = await gateway.charge(request)
    except Exception as exc:  # a timeout or a crash in the adapter: we do not know if money moved
        result = ChargeResult(Outcome.UNKNOWN, decline_reason=f"{type(exc).__name__}")
    return await apply_result(payment, result), result
