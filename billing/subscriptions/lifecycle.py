"""Subscriptions: a workspace's (or, for partner plans, a partner's) plan over time (flows A, E, G).

Whatever costs money happens as the fulfilment of a payment, in the transaction that marks it paid:
a plan bought (PLAN_PURCHASE) starts the subscription with its first period paid; an upgrade
(PLAN_CHANGE) switches the plan; a renewal (SUBSCRIPTION_PERIOD) marks its period paid and clears
dunning. So a plan bought by hand, from the partner's balance, or (later) through a gateway's checkout
behaves the same, and is delivered once however often the payment's success is reported.

Who pays how: a partner or the platform acting by hand has collected the money its own way (the
payment is recorded as paid); a workspace user buying asks for a payment that stays PENDING until the
partner records it; partner plans are debited from the partner's centralised balance.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from billing.accounts import expiry, ledger, opening
from billing.accounts.ledger import CausedBy, Leg
from billing.auto_billing import engine
from billing.catalog import plans
from billing.charges import charging, payments
from billing.core import audit, clock, idempotency, observe, tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Money
from billing.core.periods import period_end, prorate
from billing.core.tenancy import Viewer
from billing.core.text import check_text
from billing.documents import coupons, invoices
from billing.subscriptions import limits, workspace_status
from billing.subscriptions.current import LIVE, live_partner_subscription, live_subscription
from gateways.manual import ManualGateway
from models.catalog import Plan
from models.enums import (
    BillingInterval,
    ExternalAccount,
    LedgerCause,
    OwnerKind,
    PaymentMethodKind,
    PaymentMode,
    PaymentPurpose,
    PaymentStatus,
    PeriodStatus,
    Permission,
    PlanChangeTiming,
    PlanHistoryStatus,
    PlanStatus,
    SubscriptionStatus,
)
from models.payments import Payment
from models.subscriptions import Subscription, SubscriptionHistory, SubscriptionPeriod
from models.tenancy import Partner, Workspace

BALANCE_PROVIDER = "balance"
MAX_FUTURE_START = timedelta(days=366)


@dataclass(frozen=True, slots=True)
class Subscriber:
    """Who a subscription belongs to: a workspace of a partner, or the partner itself (partner plans)."""

    partner_id: int
    workspace_id: int | None = None

    @property
    def payer_key(self) -> str:
        return f"WORKSPACE:{self.workspace_id}" if self.workspace_id else f"PARTNER:{self.partner_id}"

    @property
    def mode(self) -> PaymentMode:
        return PaymentMode.MANUAL if self.workspace_id else PaymentMode.PARTNER_BALANCE

    @classmethod
    def of(cls, subscription: Subscription) -> Subscriber:
        return cls(subscription.partner_id, subscription.workspace_id)


async def _live_of(subscriber: Subscriber) -> Subscription | None:
    if subscriber.workspace_id:
        return await live_subscription(subscriber.workspace_id)
    return await live_partner_subscription(subscriber.partner_id)


def _whole_second() -> datetime:
    """Periods start on a whole second: proration counts seconds."""
    return clock.now().replace(microsecond=0)


def _months(interval: BillingInterval) -> int:
    return 12 if interval is BillingInterval.YEARLY else 1


async def _price(subscriber: Subscriber, plan: Plan) -> Money:
    # Partners pay the platform price for their own plans; workspaces pay their partner's price.
    return await plans.price_for(subscriber.partner_id if subscriber.workspace_id else None, plan)


# --- history -------------------------------------------------------------------------------------


# While a plan is current its entry mirrors the subscription's status; once over, it says what ended
# it: REPLACED by a change of plan, or the subscription's final status (CANCELED, EXPIRED).


def _as_history(status: SubscriptionStatus) -> PlanHistoryStatus:
    return PlanHistoryStatus(status.value)


async def _open_history(subscription: Subscription, plan_id: int, at: datetime, note: str = "") -> None:
    await SubscriptionHistory.create(
        partner_id=subscription.partner_id,
        subscription_id=subscription.id,
        plan_id=plan_id,
        status=_as_history(subscription.status),
        started_at=at,
        note=note,
    )


async def _close_history(subscription: Subscription, at: datetime, status: PlanHistoryStatus) -> None:
    await SubscriptionHistory.filter(subscription_id=subscription.id, ended_at=None).update(ended_at=at, status=status)


async def set_status(subscription: Subscription, status: SubscriptionStatus) -> None:
    """The subscription's status, mirrored on its open history row."""
    subscription.status = status
    await SubscriptionHistory.filter(subscription_id=subscription.id, ended_at=None).update(status=_as_history(status))


# --- collecting money ----------------------------------------------------------------------------


class _AlreadySettled(Exception):
    """Raised inside a savepoint to undo a debit for a payment that something else settled first."""


async def new_payment(
    subscriber: Subscriber,
    mode: PaymentMode,
    money: Money,
    purpose: dict[str, Any],
    note: str,
    *,
    lines: Sequence[invoices.LineInput] | None = None,
) -> Payment:
    balance = mode is PaymentMode.PARTNER_BALANCE
    return await payments.create_payment(
        partner_id=subscriber.partner_id,
        payer_key=subscriber.payer_key,
        gateway_config_id=None,
        provider=BALANCE_PROVIDER if balance else ManualGateway.name,
        method=PaymentMethodKind.BALANCE if balance else PaymentMethodKind.MANUAL,
        amount=money.amount,
        currency=money.currency,
        purpose=purpose,
        note=note,
        lines=lines,
    )


async def collect(payment: Payment, mode: PaymentMode, *, by_hand: bool, refuse_decline: bool) -> bool:
    """Try to collect ``payment`` now; True once it is paid (and so fulfilled).

    Nothing to pay, or a partner recording a manual payment: paid. A manual payment nobody has
    recorded: PENDING until the partner does. The partner's balance: debited in the same transaction
    as the fulfilment; when short, the payment is DECLINED, or with ``refuse_decline`` the caller's
    whole action is refused with INSUFFICIENT_BALANCE.
    """
    if payment.amount == 0:
        return await payments.move(payment.id, PaymentStatus.SUCCEEDED, reason="nothing to pay")
    if mode is PaymentMode.MANUAL:
        if by_hand:
            return await payments.move(
                payment.id,
                PaymentStatus.SUCCEEDED,
                reason="recorded by hand",
                provider_ref=f"manual_{payment.reference}",
            )
        instructions = {"kind": "MANUAL", "instructions": "pay your provider as agreed; it records the payment"}
        await payments.move(
            payment.id,
            PaymentStatus.PENDING,
            reason="awaiting the partner's record of payment",
            payer_action=json.dumps(instructions),
        )
        return False
    wallet = await opening.open_wallet(
        partner_id=payment.partner_id, owner_kind=OwnerKind.PARTNER, owner_id=payment.partner_id, unit=payment.currency
    )
    try:
        async with observe.savepoint():  # undone alone when something else settled the payment first
            await ledger.post(
                [Leg(payment.amount, payment.currency, wallet.id, ExternalAccount.PLATFORM_REVENUE)],
                cause=LedgerCause.RENEWAL
                if payment.purpose_kind == PaymentPurpose.SUBSCRIPTION_PERIOD
                else LedgerCause.PURCHASE,
                caused_by=CausedBy("Payment", str(payment.id)),
                note=payment.note,
            )
            if not await payments.move(
                payment.id,
                PaymentStatus.SUCCEEDED,
                reason="debited from the partner balance",
                provider_ref=f"balance_{payment.reference}",
            ):
                raise _AlreadySettled
    except _AlreadySettled:
        return False
    except BillingError as error:
        if error.code is not ErrorCode.INSUFFICIENT_BALANCE or refuse_decline:
            raise
        await payments.move(payment.id, PaymentStatus.DECLINED, reason="the partner balance is short")
        return False
    return True


# --- starting, switching, ending ------------------------------------------------------------------


async def _record_paid_period(
    subscription: Subscription, payment: Payment | None, starts_at: datetime, ends_at: datetime
) -> SubscriptionPeriod:
    number = await SubscriptionPeriod.filter(subscription_id=subscription.id).count() + 1
    period = await SubscriptionPeriod.create(
        partner_id=subscription.partner_id,
        subscription_id=subscription.id,
        plan_id=subscription.plan_id,
        number=number,
        starts_at=starts_at,
        ends_at=ends_at,
        amount=payment.amount if payment else 0,
        currency=subscription.currency,
        status=PeriodStatus.PAID,
        payment_id=payment.id if payment else None,
        paid_at=clock.now(),
    )
    await grant_included_units(subscription, period)
    return period


async def grant_included_units(subscription: Subscription, period: SubscriptionPeriod) -> None:
    """A paid period brings its plan's included units (credits...) to the workspace: issued, or, with
    the partner's auto-billing, transferred from its pool once the pool holds them (flow C)."""
    if subscription.workspace_id is None:
        return
    plan = await Plan.get(id=period.plan_id)
    from_pool = await engine.pool_units(subscription.partner_id)
    for unit, quantity in sorted(plan.included_units.items()):
        if quantity <= 0:
            continue
        if unit in from_pool:
            await engine.grant_from_pool(
                partner_id=subscription.partner_id,
                workspace_id=subscription.workspace_id,
                unit=unit,
                quantity=int(quantity),
                source=CausedBy("SubscriptionPeriod", str(period.id)),
                note=f"included in {plan.name}, period {period.number}",
                expires_at=period.ends_at if plan.included_units_expire else None,
            )
            continue
        wallet = await opening.open_wallet(
            partner_id=subscription.partner_id,
            owner_kind=OwnerKind.WORKSPACE,
            owner_id=subscription.workspace_id,
            unit=unit,
        )
        await ledger.post(
            [Leg(int(quantity), unit, ExternalAccount.ISSUANCE, wallet.id)],
            cause=LedgerCause.RENEWAL,
            caused_by=CausedBy("SubscriptionPeriod", str(period.id)),
            note=f"included in {plan.name}, period {period.number}",
        )
        if plan.included_units_expire:  # an allowance: what is left at the period's end is gone
            await expiry.add_lot(wallet, int(quantity), period.ends_at)


async def start(
    subscriber: Subscriber,
    plan: Plan,
    price: Money,
    *,
    note: str = "",
    paid_by: Payment | None = None,
    first_due: datetime | None = None,
    trial_days: int = 0,
) -> Subscription:
    """Start a subscription now: paid for its first period, or free until ``first_due`` (a
    future-dated activation) or until its trial ends; the worker bills the next period then."""
    now = _whole_second()
    if trial_days:
        end, status = now + timedelta(days=trial_days), SubscriptionStatus.TRIALING
    elif first_due is not None:
        end, status = first_due, SubscriptionStatus.ACTIVE
    else:
        end, status = period_end(now, plan.interval, now.day), SubscriptionStatus.ACTIVE
    subscription = await Subscription.create(
        partner_id=subscriber.partner_id,
        workspace_id=subscriber.workspace_id,
        plan_id=plan.id,
        status=status,
        price_amount=price.amount,
        currency=price.currency,
        anchor_day=end.day if (trial_days or first_due) else now.day,
        current_period_start=now,
        current_period_end=end,
        trial_end=end if trial_days else None,
        payment_mode=subscriber.mode,
        next_action_at=end,
    )
    await _open_history(subscription, plan.id, now, note)
    if paid_by is not None or not (trial_days or first_due):
        await _record_paid_period(subscription, paid_by, now, end)
    await _announce(subscriber, "plan.changed", {"plan_id": plan.id, "subscription_id": subscription.id})
    return subscription


async def switch_plan(
    subscription: Subscription,
    plan: Plan,
    *,
    note: str = "",
    paid_by: Payment | None = None,
    at: datetime | None = None,
) -> None:
    """Put the subscription on ``plan`` from now, or from ``at``, a period's end (a scheduled
    change: the roll then starts the next period). A change of interval now starts a new period."""
    now = at or _whole_second()
    price = await _price(Subscriber.of(subscription), plan)
    old_interval = (await Plan.get(id=subscription.plan_id)).interval
    await _close_history(subscription, now, PlanHistoryStatus.REPLACED)
    subscription.plan_id, subscription.price_amount, subscription.currency = plan.id, price.amount, price.currency
    subscription.scheduled_plan_id = None
    fields = ["plan_id", "price_amount", "currency", "scheduled_plan_id"]
    if at is None and plan.interval is not old_interval and subscription.status is SubscriptionStatus.ACTIVE:
        end = period_end(now, plan.interval, now.day)
        subscription.current_period_start, subscription.current_period_end = now, end
        subscription.anchor_day, subscription.next_action_at = now.day, end
        fields += ["current_period_start", "current_period_end", "anchor_day", "next_action_at"]
        await subscription.save(update_fields=fields)
        await _record_paid_period(subscription, paid_by, now, end)
    else:
        await subscription.save(update_fields=fields)
    await _open_history(subscription, plan.id, now, note)
    await _announce(
        Subscriber.of(subscription), "plan.changed", {"plan_id": plan.id, "subscription_id": subscription.id}
    )


async def end(
    subscription: Subscription, status: SubscriptionStatus, *, at: datetime, reason: str, fallback: bool = True
) -> None:
    """End a subscription (canceled, expired, lapsed); a workspace then drops to its partner's
    fallback plan, if the partner named one (unless another plan replaces it)."""
    await set_status(subscription, status)
    subscription.ended_at, subscription.next_action_at, subscription.next_retry_at = at, None, None
    subscription.scheduled_plan_id = None
    await subscription.save(
        update_fields=["status", "ended_at", "next_action_at", "next_retry_at", "scheduled_plan_id"]
    )
    await _close_history(subscription, at, _as_history(status))
    for period in await SubscriptionPeriod.filter(subscription_id=subscription.id, status=PeriodStatus.DUE):
        await SubscriptionPeriod.filter(id=period.id).update(status=PeriodStatus.VOID)
        if period.payment_id:
            await payments.move(period.payment_id, PaymentStatus.CANCELED, reason=reason)
    subscriber = Subscriber.of(subscription)
    await _announce(
        subscriber, "subscription.ended", {"subscription_id": subscription.id, "status": status, "reason": reason}
    )
    partner = await Partner.get(id=subscription.partner_id)
    fallback_id = partner.fallback_plan_id
    if fallback and subscriber.workspace_id and fallback_id and fallback_id != subscription.plan_id:
        fallback_plan = await Plan.get(id=fallback_id)
        # Billed by the worker at once (nothing to pay for a free plan).
        price = await _price(subscriber, fallback_plan)
        await start(subscriber, fallback_plan, price, note=f"fallback: {reason}", first_due=at)


async def _announce(subscriber: Subscriber, event: str, payload: dict[str, Any]) -> None:
    if subscriber.workspace_id:
        payload = {"workspace_id": subscriber.workspace_id, **payload}
        await workspace_status.recompute(subscriber.workspace_id)
    await audit.emit(event, subscriber.partner_id, payload)


# --- fulfilments ---------------------------------------------------------------------------------


async def plan_bought(payment: Payment) -> None:
    purpose = payment.purpose
    subscriber = Subscriber(int(purpose["partner_id"]), purpose.get("workspace_id"))
    plan = await Plan.get(id=purpose["plan_id"])
    current = await _live_of(subscriber)
    if current is not None:
        # Paid while another plan was live (two purchases raced): the money bought a full period of
        # this plan, so the old subscription gives way to it.
        await end(current, SubscriptionStatus.CANCELED, at=clock.now(), reason="replaced by a purchase", fallback=False)
    # The plan costs its price from now on, whatever this first charge's coupons and taxes made of it.
    price = Money(int(purpose.get("price", payment.amount)), payment.currency)
    subscription = await start(subscriber, plan, price, note=str(purpose.get("note", "")), paid_by=payment)
    await coupons.attach(payment.id, subscription.id, first_period=1)


async def plan_changed(payment: Payment) -> None:
    subscription = await Subscription.get(id=payment.purpose["subscription_id"])
    if subscription.status not in LIVE:
        return  # ended before the payment arrived: the payment stays on record for a refund
    plan = await Plan.get(id=payment.purpose["plan_id"])
    await switch_plan(subscription, plan, note=str(payment.purpose.get("note", "")), paid_by=payment)


async def period_paid(payment: Payment) -> None:
    period = await SubscriptionPeriod.get(id=payment.purpose["period_id"])
    if period.status is not PeriodStatus.DUE:
        return
    await SubscriptionPeriod.filter(id=period.id).update(status=PeriodStatus.PAID, paid_at=clock.now())
    subscription = await Subscription.get(id=period.subscription_id)
    await grant_included_units(subscription, period)
    if subscription.status in LIVE and not await SubscriptionPeriod.exists(
        subscription_id=subscription.id, status=PeriodStatus.DUE
    ):
        if subscription.status is SubscriptionStatus.PAST_DUE:
            await set_status(subscription, SubscriptionStatus.ACTIVE)
        # Renewals wait while a period is unpaid: the next one is due at the current period's end.
        subscription.failed_renewals, subscription.next_retry_at = 0, None
        subscription.next_action_at = subscription.current_period_end
        await subscription.save(update_fields=["status", "failed_renewals", "next_retry_at", "next_action_at"])
    await _announce(
        Subscriber.of(subscription),
        "plan.renewed",
        {"subscription_id": subscription.id, "period": period.number, "payment_id": payment.id},
    )


# --- what callers ask for ------------------------------------------------------------------------


async def _assignable_plan(viewer: Viewer, plan_id: int, *, for_partner: bool) -> Plan:
    if for_partner:
        plan = await tenancy.get_scoped(Plan.filter(partner_id=None, for_partners=True), plan_id, "plan")
    else:
        plan = await tenancy.get_scoped(plans.visible_plans(viewer), plan_id, "plan")
    if plan.status is PlanStatus.ARCHIVED:
        raise BillingError(ErrorCode.INVALID_INPUT, "an archived plan cannot be assigned", field="planId")
    if viewer.kind == "WORKSPACE" and plan.status is PlanStatus.HIDDEN:
        raise BillingError(ErrorCode.NOT_FOUND, "plan not found", field="planId")
    return plan


async def _check_limits(viewer: Viewer, subscriber: Subscriber, plan_id: int, force: bool) -> None:
    if subscriber.workspace_id:
        workspace = await Workspace.get(id=subscriber.workspace_id)
        found = (await limits.preview_for(viewer, workspace, plan_id, {})).excesses
        limits.refuse_unless_forced(found, force)


async def _first_subscription(subscriber: Subscriber) -> bool:
    if subscriber.workspace_id:
        return not await Subscription.exists(workspace_id=subscriber.workspace_id)
    return not await Subscription.exists(partner_id=subscriber.partner_id, workspace_id=None)


async def _subscribe(
    viewer: Viewer,
    subscriber: Subscriber,
    plan: Plan,
    *,
    note: str,
    force: bool,
    charge_from: datetime | None,
    by_hand: bool,
) -> Subscription | Payment:
    """Start a subscriber's first live subscription: free until ``charge_from``, a trial, or paid now."""
    await _check_limits(viewer, subscriber, plan.id, force)
    price = await _price(subscriber, plan)
    if charge_from is not None:
        now = clock.now()
        if not now < charge_from <= now + MAX_FUTURE_START:
            raise BillingError(
                ErrorCode.INVALID_INPUT, "the first charge is due within the next year", field="chargeFrom"
            )
        return await start(subscriber, plan, price, note=note, first_due=charge_from)
    if plan.trial_days and await _first_subscription(subscriber):
        if plan.trial_requires_payment_method and not await charging.saved_methods(subscriber.payer_key).exists():
            raise BillingError(
                ErrorCode.PAYMENT_METHOD_REQUIRED, "this plan's trial needs a saved payment method", field="planId"
            )
        return await start(subscriber, plan, price, note=note, trial_days=plan.trial_days)
    payment = await new_payment(subscriber, subscriber.mode, price, purchase_purpose(subscriber, plan, note), note)
    if await collect(payment, subscriber.mode, by_hand=by_hand, refuse_decline=True):
        subscription = await _live_of(subscriber)
        assert subscription is not None  # the fulfilment started it
        return subscription
    return await Payment.get(id=payment.id)


def purchase_purpose(subscriber: Subscriber, plan: Plan, note: str) -> dict[str, Any]:
    """What a payment that buys ``plan`` delivers when paid: its first period, starting then."""
    return {
        "kind": PaymentPurpose.PLAN_PURCHASE,
        "partner_id": subscriber.partner_id,
        "workspace_id": subscriber.workspace_id,
        "plan_id": plan.id,
        "note": note,
    }


async def plan_for_sale(viewer: Viewer, workspace: Workspace, plan_id: int) -> tuple[Plan, Money] | None:
    """A plan a workspace without one may buy through a gateway, and its price; None when buying it
    costs nothing now (free, or a trial), so it starts at once through :func:`purchase_plan`."""
    if await live_subscription(workspace.id) is not None:
        raise BillingError(ErrorCode.ALREADY_EXISTS, "the workspace has a plan: change it instead", field="planId")
    subscriber = Subscriber(workspace.partner_id, workspace.id)
    plan = await _assignable_plan(viewer, plan_id, for_partner=False)
    await _check_limits(viewer, subscriber, plan.id, False)
    price = await _price(subscriber, plan)
    if price.amount == 0 or (plan.trial_days and await _first_subscription(subscriber)):
        return None
    return plan, price


def _is_upgrade(old_price: int, old_interval: BillingInterval, new_price: Money, new_interval: BillingInterval) -> bool:
    # Compare prices per month: 99.00 a month is more than 990.00 a year.
    return new_price.amount * _months(old_interval) >= old_price * _months(new_interval)


async def _change(
    viewer: Viewer,
    subscription: Subscription,
    plan: Plan,
    *,
    timing: PlanChangeTiming,
    note: str,
    force: bool,
    by_hand: bool,
) -> Subscription | Payment:
    subscriber = Subscriber.of(subscription)
    if subscription.status is SubscriptionStatus.PAST_DUE:
        raise BillingError(ErrorCode.PAYMENT_REQUIRED, "pay the overdue renewal before changing plan")
    if plan.id == subscription.plan_id:
        if subscription.scheduled_plan_id is None:
            raise BillingError(ErrorCode.INVALID_INPUT, "the subscription is on this plan already", field="planId")
        subscription.scheduled_plan_id = None  # keeping the current plan calls off a scheduled change
        await subscription.save(update_fields=["scheduled_plan_id"])
        return subscription
    price = await _price(subscriber, plan)
    if price.currency != subscription.currency:
        raise BillingError(ErrorCode.CURRENCY_MISMATCH, "the new plan is priced in another currency", field="planId")
    old_plan = await Plan.get(id=subscription.plan_id)
    upgrade = _is_upgrade(subscription.price_amount, old_plan.interval, price, plan.interval)
    now_ = timing == PlanChangeTiming.NOW or (timing == PlanChangeTiming.AUTO and upgrade)
    await _check_limits(viewer, subscriber, plan.id, force)
    if not now_:
        subscription.scheduled_plan_id = plan.id
        await subscription.save(update_fields=["scheduled_plan_id"])
        await audit.emit(
            "plan.change_scheduled",
            subscription.partner_id,
            {"subscription_id": subscription.id, "plan_id": plan.id, "at": subscription.current_period_end.isoformat()},
        )
        return subscription
    amount = _change_charge(subscription, old_plan, plan, price, clock.now())
    purpose = {"kind": PaymentPurpose.PLAN_CHANGE, "subscription_id": subscription.id, "plan_id": plan.id, "note": note}
    payment = await new_payment(subscriber, subscription.payment_mode, Money(amount, price.currency), purpose, note)
    if await collect(payment, subscription.payment_mode, by_hand=by_hand, refuse_decline=True):
        await subscription.refresh_from_db()
        return subscription
    return await Payment.get(id=payment.id)


def _change_charge(subscription: Subscription, old_plan: Plan, plan: Plan, price: Money, now: datetime) -> int:
    """What a change now costs: the price difference for the rest of the period, by the second,
    rounded once; with a change of interval, the new period's price less the unused part of the old."""
    if subscription.status is not SubscriptionStatus.ACTIVE:
        return 0  # a trial (or a free stretch before the first charge) stays free
    start_, end_ = subscription.current_period_start, subscription.current_period_end
    if plan.interval is old_plan.interval:
        return max(prorate(price.amount - subscription.price_amount, start_, end_, now), 0)
    return max(price.amount - prorate(subscription.price_amount, start_, end_, now), 0)


async def _workspace_for(viewer: Viewer, workspace_id: int, permission: Permission) -> Workspace:
    if viewer.kind != "WORKSPACE":
        viewer.require(permission)
    return await tenancy.get_scoped(tenancy.workspaces(viewer), workspace_id, "workspace")


async def _once(
    viewer: Viewer,
    operation: str,
    key: str,
    request: dict[str, Any],
    act: Callable[[], Awaitable[Subscription | Payment]],
) -> Subscription | Payment:
    """Run a subscription action once per idempotency key; a replay answers what the first call made."""

    async def run() -> list[Any]:
        made = await act()
        return ["Payment" if isinstance(made, Payment) else "Subscription", made.id]

    kind, made_id = await idempotency.run_once(
        scope=viewer.scope, operation=operation, key=key, request=request, action=run, encode=list, decode=list
    )
    return await (Payment if kind == "Payment" else Subscription).get(id=made_id)


async def assign_plan(
    viewer: Viewer,
    *,
    workspace_id: int,
    plan_id: int,
    note: str,
    idempotency_key: str,
    force: bool = False,
    charge_from: datetime | None = None,
) -> Subscription:
    """The partner puts a workspace on a plan by hand, after collecting payment its own way (flow A):
    the first period is recorded as paid, or nothing is charged before ``charge_from``. On a
    workspace that has a plan this changes it now, the price difference recorded as paid."""
    viewer.require(Permission.MANAGE_PLANS)
    workspace = await tenancy.get_scoped(tenancy.workspaces(viewer), workspace_id, "workspace")
    note = check_text(note, "note", max_length=1000, allow_empty=True, multiline=True)
    subscriber = Subscriber(workspace.partner_id, workspace.id)
    request = {"workspace": workspace_id, "plan": plan_id, "note": note, "force": force, "from": str(charge_from)}

    async def act() -> Subscription | Payment:
        plan = await _assignable_plan(viewer, plan_id, for_partner=False)
        current = await live_subscription(workspace.id)
        if current is not None:
            made = await _change(
                viewer, current, plan, timing=PlanChangeTiming.NOW, note=note, force=force, by_hand=True
            )
        else:
            made = await _subscribe(
                viewer, subscriber, plan, note=note, force=force, charge_from=charge_from, by_hand=True
            )
        await audit.record(
            actor=viewer.actor,
            action="plan.assign",
            target_type="Workspace",
            target_id=workspace.id,
            partner_id=workspace.partner_id,
            before={"plan_id": audit.global_id("Plan", current.plan_id)} if current else None,
            after={
                "plan_id": audit.global_id("Plan", plan.id),
                "note": note,
                "forced": force,
                "charge_from": None if charge_from is None else charge_from.isoformat(),
            },
        )
        return made

    made = await _once(viewer, "plan.assign", idempotency_key, request, act)
    assert isinstance(made, Subscription)  # by hand, it is paid at once
    return made


async def purchase_plan(
    viewer: Viewer, *, workspace_id: int, plan_id: int, idempotency_key: str
) -> Subscription | Payment:
    """A workspace buys a plan. Without a gateway the partner collects the money and records the
    payment (``recordPayment``), which starts the plan; until then the payment is PENDING. A trial or
    a free plan starts at once. Allowed without a plan, whatever the workspace's status."""
    workspace = await _workspace_for(viewer, workspace_id, Permission.MANAGE_BILLING)
    subscriber = Subscriber(workspace.partner_id, workspace.id)

    async def act() -> Subscription | Payment:
        if await live_subscription(workspace.id) is not None:
            raise BillingError(ErrorCode.ALREADY_EXISTS, "the workspace has a plan: change it instead", field="planId")
        plan = await _assignable_plan(viewer, plan_id, for_partner=False)
        return await _subscribe(viewer, subscriber, plan, note="", force=False, charge_from=None, by_hand=False)

    return await _once(viewer, "plan.purchase", idempotency_key, {"workspace": workspace_id, "plan": plan_id}, act)


async def change_plan(
    viewer: Viewer,
    *,
    workspace_id: int,
    plan_id: int,
    timing: PlanChangeTiming,
    note: str,
    idempotency_key: str,
    force: bool = False,
) -> Subscription | Payment:
    """Upgrade at once, paying the difference for the rest of the period; downgrade at period end,
    unless asked for now. A partner's change is paid by hand; a workspace user's waits for payment."""
    workspace = await _workspace_for(viewer, workspace_id, Permission.MANAGE_PLANS)
    note = check_text(note, "note", max_length=1000, allow_empty=True, multiline=True)
    request = {"workspace": workspace_id, "plan": plan_id, "timing": timing, "note": note, "force": force}

    async def act() -> Subscription | Payment:
        current = await live_subscription(workspace.id)
        if current is None:
            raise BillingError(
                ErrorCode.SUBSCRIPTION_REQUIRED, "the workspace has no plan to change", field="workspaceId"
            )
        plan = await _assignable_plan(viewer, plan_id, for_partner=False)
        by_hand = viewer.kind != "WORKSPACE"
        made = await _change(viewer, current, plan, timing=timing, note=note, force=force and by_hand, by_hand=by_hand)
        await audit.record(
            actor=viewer.actor,
            action="plan.change",
            target_type="Workspace",
            target_id=workspace.id,
            partner_id=workspace.partner_id,
            before={"plan_id": audit.global_id("Plan", current.plan_id)},
            after={"plan_id": audit.global_id("Plan", plan.id), "timing": timing, "note": note},
        )
        return made

    return await _once(viewer, "plan.change", idempotency_key, request, act)


async def cancel(viewer: Viewer, *, workspace_id: int, at_period_end: bool) -> Subscription:
    """Cancel now, or at the end of the paid period (the workspace keeps its plan until then)."""
    workspace = await _workspace_for(viewer, workspace_id, Permission.MANAGE_PLANS)
    async with in_transaction("default"):
        subscription = await live_subscription(workspace.id)
        if subscription is None:
            raise BillingError(
                ErrorCode.SUBSCRIPTION_REQUIRED, "the workspace has no plan to cancel", field="workspaceId"
            )
        if at_period_end:
            subscription.cancel_at_period_end = True
            await subscription.save(update_fields=["cancel_at_period_end"])
        else:
            await end(subscription, SubscriptionStatus.CANCELED, at=clock.now(), reason="canceled")
        await audit.record(
            actor=viewer.actor,
            action="subscription.cancel",
            target_type="Subscription",
            target_id=subscription.id,
            partner_id=workspace.partner_id,
            after={"at_period_end": at_period_end},
        )
    return await Subscription.get(id=subscription.id)


async def set_auto_renew(viewer: Viewer, *, workspace_id: int, enabled: bool) -> Workspace:
    """Auto-renew off: the subscription runs to the end of its period and then ends."""
    workspace = await _workspace_for(viewer, workspace_id, Permission.MANAGE_PLANS)
    async with in_transaction("default"):
        await Workspace.filter(id=workspace.id).update(auto_renew=enabled)
        await audit.record(
            actor=viewer.actor,
            action="workspace.auto_renew",
            target_type="Workspace",
            target_id=workspace.id,
            partner_id=workspace.partner_id,
            before={"auto_renew": workspace.auto_renew},
            after={"auto_renew": enabled},
        )
    return await Workspace.get(id=workspace.id)


async def subscribe_partner_plan(
    viewer: Viewer, *, partner_id: int, plan_id: int, timing: PlanChangeTiming, idempotency_key: str
) -> Subscription:
    """A partner's own plan with the platform (flow G), paid from its centralised balance at the
    platform price: the first plan, or a change (upgrades now with the prorated difference)."""
    viewer.require(Permission.MANAGE_BILLING)
    partner = await tenancy.get_scoped(tenancy.partners(viewer), partner_id, "partner")
    if partner.parent_id is not None:
        # Its balance is held with its parent: a platform plan paid from it would be paid by nobody above.
        raise BillingError(
            ErrorCode.FORBIDDEN,
            "partner plans are the platform's, for its direct partners: a partner reselling below another has none",
            field="planId",
        )
    subscriber = Subscriber(partner.id)

    async def act() -> Subscription | Payment:
        plan = await _assignable_plan(viewer, plan_id, for_partner=True)
        current = await live_partner_subscription(partner.id)
        if current is None:
            made = await _subscribe(viewer, subscriber, plan, note="", force=False, charge_from=None, by_hand=False)
        else:
            made = await _change(viewer, current, plan, timing=timing, note="", force=False, by_hand=False)
        await audit.record(
            actor=viewer.actor,
            action="partner_plan.subscribe",
            target_type="Partner",
            target_id=partner.id,
            partner_id=partner.id,
            before={"plan_id": audit.global_id("Plan", current.plan_id)} if current else None,
            after={"plan_id": audit.global_id("Plan", plan.id), "timing": timing},
        )
        return made

    request = {"partner": partner_id, "plan": plan_id, "timing": timing}
    made = await _once(viewer, "partner_plan.subscribe", idempotency_key, request, act)
    assert isinstance(made, Subscription)  # the balance pays at once or the call is refused
    return made


def history_of(*, workspace_id: int | None = None, partner_id: int | None = None) -> QuerySet[SubscriptionHistory]:
    """Every plan a workspace (or a partner, for its own plans) has had, oldest first (entries are
    written in the order the plans start)."""
    if workspace_id is not None:
        query = SubscriptionHistory.filter(subscription__workspace_id=workspace_id)
    else:
        query = SubscriptionHistory.filter(subscription__partner_id=partner_id, subscription__workspace_id=None)
    return query.order_by("id")
