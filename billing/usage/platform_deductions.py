"""The centralised balance (flow D): what a partner owes the platform for its clients' plans.

When a client pays (or the partner records) a platform plan's first period, a change of plan or a
renewal, the partner's centralised balance is debited the *platform* price, not the price the
client paid: the margin is the partner's. A change of plan costs the partner the same share of the
platform price as the client's prorated charge is of the client price, rounded once, half-even.

The deduction is written in the transaction that marks the client's payment paid, one row per
payment (unique), and debited there when the balance (and its credit limit, set by the platform)
allows. When it does not, the client is not held back: the row stays PENDING, the partner is told
(``partner.balance_insufficient``), and a job retries the debit, hourly, until it goes through.
Partner plans are not deducted here: the partner pays them from the balance directly.

Resellers of resellers: a sub-partner's client's payment debits every level of the chain its parent's
price, from the client's partner up to the platform's direct partner (debited the platform's price), in
one posting: all of them or none. A level short of balance holds the whole deduction back; that partner is
the one told, and the retry debits every level once.

The platform's credit packages go down a chain the same way (:func:`on_package_payment`): a partner
reselling below another buys them from its parent, for money, at the parent's price; every level above it
is then debited its own parent's price for them (kind PACKAGE), the platform's direct partner the platform's.
"""

from __future__ import annotations

import json
from datetime import timedelta
from fractions import Fraction
from typing import Any

from tortoise.transactions import in_transaction

from billing.accounts import ledger, opening
from billing.accounts.ledger import CausedBy, Leg
from billing.catalog import plans
from billing.core import audit, clock, sql, work
from billing.core.errors import BillingError, ErrorCode
from billing.core.periods import round_half_even
from models.catalog import Plan
from models.enums import ExternalAccount, LedgerCause, OwnerKind, PaymentPurpose, PaymentStatus
from models.payments import Payment
from models.subscriptions import SubscriptionPeriod
from models.wallets import PlatformDeduction, Wallet

RETRY_JOB = "platform_deduction.retry"
RETRY_EVERY = timedelta(hours=1)


async def _plan_of(payment: Payment) -> Plan | None:
    purpose = payment.purpose
    if payment.purpose_kind == PaymentPurpose.SUBSCRIPTION_PERIOD:
        period = await SubscriptionPeriod.get_or_none(id=purpose.get("period_id"))
        return await Plan.get_or_none(id=period.plan_id) if period else None
    return await Plan.get_or_none(id=purpose.get("plan_id"))


async def on_client_payment(payment: Payment) -> None:
    if payment.status is not PaymentStatus.SUCCEEDED or not payment.payer_key.startswith("WORKSPACE:"):
        return
    if int(payment.purpose.get("price", payment.amount)) <= 0 or payment.partner_id is None:
        return
    plan = await _plan_of(payment)
    if plan is None or plan.partner_id is not None:  # the partner's own plan: all of it is the partner's
        return
    chain, by_level = await plans.margins_down(payment.partner_id)
    client_price = plans.price_down(by_level, plan).amount
    if client_price <= 0:
        return
    # On the client's price, before the partner's coupons and its taxes: those are the partner's to give
    # and to collect, not the platform's. Each level pays its parent's price, in that same proportion.
    paid = int(payment.purpose.get("price", payment.amount))
    levels = [
        {
            "partner_id": partner,
            "amount": round_half_even(Fraction(paid) * plans.price_down(by_level[:n], plan).amount / client_price),
        }
        for n, partner in enumerate(chain)
    ]
    amount = levels[-1]["amount"]
    if amount <= 0:
        return
    kind = "RENEWAL" if payment.purpose_kind == PaymentPurpose.SUBSCRIPTION_PERIOD else "PLAN"
    workspace_id = int(payment.payer_key.split(":", 1)[1])
    rows = await sql.fetch(
        "INSERT INTO platform_deduction (created_at, partner_id, workspace_id, kind, source, plan_id, amount,"
        " currency, attempts, chain) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9)"
        " ON CONFLICT (source, kind) DO NOTHING RETURNING id",
        clock.now(),
        payment.partner_id,
        workspace_id,
        kind,
        f"Payment:{payment.id}",
        plan.id,
        amount,
        plan.currency,
        json.dumps(levels if len(levels) > 1 else []),
    )
    if rows:
        await _debit(int(rows[0]["id"]), first=True)


async def on_package_payment(payment: Payment) -> None:
    """A partner reselling below another has paid its parent for the platform's packages: every level above
    it owes its own parent's price for them, as fixed when the purchase was made (``owed_above``, from
    ``plans.package_purchase``: a margin changed while the payment was pending changes nothing)."""
    if payment.status is not PaymentStatus.SUCCEEDED or not payment.payer_key.startswith("PARTNER:"):
        return
    levels = payment.purpose.get("owed_above") or []
    if payment.purpose.get("collector") is None or not levels:
        return  # bought from the platform itself, or a top-up of the balance
    rows = await sql.fetch(
        "INSERT INTO platform_deduction (created_at, partner_id, workspace_id, kind, source, plan_id, amount,"
        " currency, attempts, chain) VALUES ($1, $2, NULL, 'PACKAGE', $3, NULL, $4, $5, 0, $6)"
        " ON CONFLICT (source, kind) DO NOTHING RETURNING id",
        clock.now(),
        int(levels[-1]["partner_id"]),
        f"Payment:{payment.id}",
        int(levels[-1]["amount"]),
        payment.currency,
        json.dumps(levels if len(levels) > 1 else []),
    )
    if rows:
        await _debit(int(rows[0]["id"]), first=True)


async def _debit(deduction_id: int, *, first: bool = False) -> bool:
    """Debit one pending deduction; True once it is debited (now or before)."""
    deduction = await PlatformDeduction.get(id=deduction_id)
    if deduction.debited_at is not None:
        return True
    levels = deduction.chain or [{"partner_id": deduction.partner_id, "amount": deduction.amount}]
    wallets = [
        await opening.open_wallet(
            partner_id=level["partner_id"],
            owner_kind=OwnerKind.PARTNER,
            owner_id=level["partner_id"],
            unit=deduction.currency,
        )
        for level in levels
    ]
    # The platform's direct partner pays the platform; each level below pays its parent (its revenue).
    legs = [
        Leg(
            int(level["amount"]),
            deduction.currency,
            wallet.id,
            ExternalAccount.PLATFORM_REVENUE if n == 0 else ExternalAccount.PARTNER_REVENUE,
        )
        for n, (level, wallet) in enumerate(zip(levels, wallets, strict=True))
        if int(level["amount"]) > 0
    ]
    try:
        async with in_transaction("default"):
            claimed = await sql.execute(
                "UPDATE platform_deduction SET debited_at = $1, attempts = attempts + 1"
                " WHERE id = $2 AND debited_at IS NULL",
                clock.now(),
                deduction.id,
            )
            if claimed != 1:
                return True
            posted = await ledger.post(
                legs,
                cause=LedgerCause.RENEWAL if deduction.kind == "RENEWAL" else LedgerCause.PURCHASE,
                caused_by=CausedBy("PlatformDeduction", str(deduction.id)),
                note=f"platform price, {deduction.source}",
            )
            await sql.execute(
                "UPDATE platform_deduction SET posting_id = $1 WHERE id = $2", posted.posting_id, deduction.id
            )
    except BillingError as error:
        if error.code is not ErrorCode.INSUFFICIENT_BALANCE:
            raise
        await sql.execute("UPDATE platform_deduction SET attempts = attempts + 1 WHERE id = $1", deduction.id)
        if first:
            short = await _short_level(levels, wallets)
            await audit.emit(
                "partner.balance_insufficient",
                int(short["partner_id"]),
                {
                    "deduction_id": deduction.id,
                    "kind": deduction.kind,
                    "amount": int(short["amount"]),
                    "currency": deduction.currency,
                    "workspace_id": deduction.workspace_id if short["partner_id"] == deduction.partner_id else None,
                },
            )
        await work.schedule(
            RETRY_JOB,
            {"deduction_id": deduction.id},
            run_at=clock.now() + RETRY_EVERY,
            dedupe_key=f"deduction:{deduction.id}:{deduction.attempts + 1}",
        )
        return False
    return True


async def _short_level(levels: list[dict[str, Any]], wallets: list[Wallet]) -> dict[str, Any]:
    """The level of the chain whose balance cannot pay its share (the first, from the top, if several)."""
    for level, wallet in zip(levels, wallets, strict=True):
        current = await Wallet.get(id=wallet.id)
        if current.balance - int(level["amount"]) < -current.credit_limit:
            return level
    return levels[-1]


async def retry_job(job: dict[str, Any]) -> dict[str, Any]:
    return {"debited": await _debit(int(job["deduction_id"]))}
