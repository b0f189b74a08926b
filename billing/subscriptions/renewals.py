"""Renewals and dunning, run by the worker at each subscription's ``next_action_at`` (flow F).

At a period's end the subscription ends (cancelled at period end, auto-renew off, validity or
maximum renewals reached), or takes its scheduled plan and rolls into the next period, which is
billed once: the period row is unique per subscription and start, and the roll is one transaction
holding the subscription's row (FOR UPDATE SKIP LOCKED on PostgreSQL), so any number of workers can
run the same due set.

A renewal that is not paid at once (a manual one nobody recorded yet, a short partner balance) is a
failure: the subscription is PAST_DUE and retried on the partner's schedule, counted in days after
the due date plus the plan's grace days (default days 1, 3, 9, 15, 21). The partner's thresholds
turn failures into RESTRICTED and SUSPENDED, or drop the workspace to the fallback plan (UChat: 3
daily retries then the free plan). A payment at any point clears it all. No further period is
billed while one is unpaid.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from tortoise.functions import Count
from tortoise.transactions import in_transaction

from billing.catalog import plans
from billing.charges import charging, gateway_configs, payments
from billing.core import audit, clock, sql, tenancy, work
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Money
from billing.core.periods import period_end
from billing.core.tenancy import Viewer
from billing.documents import coupons, invoices
from billing.subscriptions import lifecycle, workspace_status
from billing.subscriptions.lifecycle import Subscriber
from models.catalog import Plan
from models.enums import (
    PaymentMethodKind,
    PaymentMode,
    PaymentPurpose,
    PaymentStatus,
    PeriodStatus,
    Permission,
    SubscriptionStatus,
)
from models.payments import GatewayConfig, Payment, SavedPaymentMethod
from models.subscriptions import Subscription, SubscriptionPeriod
from models.tenancy import Partner, Workspace

log = logging.getLogger("whitebill.renewals")

RETRY_AFTER_ERROR = timedelta(hours=1)
MIN_RETRY_GAP = timedelta(days=1)
_NEXT_DUE = "SELECT id FROM subscription WHERE next_action_at <= $1 ORDER BY next_action_at, id LIMIT 1"


async def run_due(*, limit: int = 50) -> int:
    """Act on up to ``limit`` due subscriptions, one transaction each; returns how many."""
    handled = 0
    lock = " FOR UPDATE SKIP LOCKED" if sql.is_postgres() else ""
    while handled < limit:
        now = clock.now()
        subscription_id: int | None = None
        try:
            async with in_transaction("default"):
                rows = await sql.fetch(_NEXT_DUE + lock, now)
                if not rows:
                    return handled
                subscription_id = int(rows[0]["id"])
                await _act(await Subscription.get(id=subscription_id))
        except Exception:
            if subscription_id is None:
                raise
            # One subscription's failure must not stop the others: look at it again later.
            log.exception("renewal failed", extra={"subscription_id": subscription_id})
            await sql.execute(
                "UPDATE subscription SET next_action_at = $1 WHERE id = $2", now + RETRY_AFTER_ERROR, subscription_id
            )
        handled += 1
    return handled


async def _act(subscription: Subscription) -> None:
    unpaid = await SubscriptionPeriod.filter(subscription_id=subscription.id, status=PeriodStatus.DUE).first()
    if unpaid is not None:
        await _collect_or_fail(subscription, unpaid, retry=True)
    else:
        await _period_end(subscription)


def ending(
    subscription: Subscription, plan: Plan, workspace: Workspace | None, billed: int
) -> tuple[SubscriptionStatus, str] | None:
    """How and why the subscription ends at its period's end instead of renewing (None: it renews).
    ``billed``: how many periods it has been billed so far."""
    if subscription.cancel_at_period_end:
        return SubscriptionStatus.CANCELED, "canceled at period end"
    if workspace is not None and not workspace.auto_renew:
        return SubscriptionStatus.CANCELED, "auto-renew is off"
    if (plan.validity_periods is not None and billed >= plan.validity_periods) or (
        plan.max_renewals is not None and billed > plan.max_renewals
    ):
        return SubscriptionStatus.EXPIRED, "the plan's term is over"
    return None


async def _period_end(subscription: Subscription) -> None:
    due = subscription.current_period_end
    plan = await Plan.get(id=subscription.plan_id)
    billed = await SubscriptionPeriod.filter(subscription_id=subscription.id).count()
    workspace = await Workspace.get(id=subscription.workspace_id) if subscription.workspace_id else None
    ends = ending(subscription, plan, workspace, billed)
    if ends is not None:
        status, reason = ends
        await lifecycle.end(subscription, status, at=due, reason=reason)
        return
    if subscription.scheduled_plan_id is not None:
        plan = await Plan.get(id=subscription.scheduled_plan_id)
        await lifecycle.switch_plan(subscription, plan, note="scheduled change", at=due)
    # Roll into the next period; the current one is over.
    end = period_end(due, plan.interval, subscription.anchor_day)
    if subscription.status is SubscriptionStatus.TRIALING:
        await lifecycle.set_status(subscription, SubscriptionStatus.ACTIVE)
    subscription.current_period_start, subscription.current_period_end = due, end
    subscription.renewals += 1 if billed else 0
    subscription.next_action_at = end
    await subscription.save(
        update_fields=["status", "current_period_start", "current_period_end", "renewals", "next_action_at"]
    )
    period = await SubscriptionPeriod.create(
        partner_id=subscription.partner_id,
        subscription_id=subscription.id,
        plan_id=plan.id,
        number=billed + 1,
        starts_at=due,
        ends_at=end,
        amount=subscription.price_amount,
        currency=subscription.currency,
        status=PeriodStatus.DUE,
    )
    subscriber = Subscriber.of(subscription)
    card = await _card_on_file(subscription) if period.amount else None
    if card is not None:
        await _charge_card(subscription, period, card)
        await _unpaid(subscription, period, failed=False, overdue=False)
        return
    hosted = await _hosted_card_page(subscription) if period.amount and card is None else None
    if hosted is not None:
        await _ask_to_pay(subscription, period, hosted)
        await _unpaid(subscription, period, failed=False, overdue=False)
        return
    payment = await lifecycle.new_payment(
        subscriber,
        subscription.payment_mode,
        Money(period.amount, period.currency),
        {"kind": PaymentPurpose.SUBSCRIPTION_PERIOD, "period_id": period.id},
        f"{plan.name}, period {period.number}",
        lines=await _invoice_lines(subscription, period),
    )
    period.payment_id = payment.id
    await period.save(update_fields=["payment_id"])
    await _collect_or_fail(subscription, period, retry=False)


async def _invoice_lines(subscription: Subscription, period: SubscriptionPeriod) -> list[invoices.LineInput]:
    """The period's invoice line, less what the workspace's coupons take off this period (a retry of the
    same period gets the same)."""
    plan = await Plan.get(id=period.plan_id)
    line = invoices.LineInput(f"{plan.name}, period {period.number}", period.amount, 1, "Plan", plan.id)
    if subscription.workspace_id is not None and period.amount:
        held = await coupons.for_period(
            subscription.id, subscription.workspace_id, period.number, plan.id, period.currency
        )
        line = replace(line, discounts=tuple(coupons.discounts(held, period.amount)))
    return [line]


# --- renewals charged to a saved card --------------------------------------------------------------

CHARGE_SAVED_CARD = "renewal.charge_card"
_FINALLY_UNPAID = (PaymentStatus.DECLINED, PaymentStatus.NOT_ATTEMPTED, PaymentStatus.CANCELED)


async def _card_on_file(subscription: Subscription) -> SavedPaymentMethod | None:
    """The workspace's current saved card, whichever configuration saved it (a partner that switched
    provider keeps charging cards saved with the old one through it)."""
    if subscription.workspace_id is None:
        return None
    return await charging.card_on_file(f"WORKSPACE:{subscription.workspace_id}", subscription.partner_id)


async def _card_payment(
    subscription: Subscription, period: SubscriptionPeriod, config: GatewayConfig, payer_key: str, note: str
) -> Payment:
    """The period's card payment through ``config``, committed here and collected by a job: never call a
    provider while this transaction holds the subscription's row."""
    payment = await payments.create_payment(
        partner_id=subscription.partner_id,
        payer_key=payer_key,
        gateway_config_id=config.id,
        provider=config.provider,
        method=PaymentMethodKind.CARD,
        amount=period.amount,
        currency=period.currency,
        purpose={"kind": PaymentPurpose.SUBSCRIPTION_PERIOD, "period_id": period.id},
        note=f"period {period.number}, {note}",
        lines=await _invoice_lines(subscription, period),
    )
    period.payment_id = payment.id
    await period.save(update_fields=["payment_id"])
    return payment


async def _charge_card(subscription: Subscription, period: SubscriptionPeriod, card: SavedPaymentMethod) -> None:
    """A new payment for the period, charged off-session to the card on file."""
    config = await GatewayConfig.get(id=card.gateway_config_id)
    payment = await _card_payment(subscription, period, config, card.payer_key, "card on file")
    await work.schedule(
        CHARGE_SAVED_CARD, {"payment_id": payment.id, "card_id": card.id}, dedupe_key=f"charge-card:{payment.id}"
    )


ASK_TO_PAY = "renewal.ask_to_pay"


async def _hosted_card_page(subscription: Subscription) -> GatewayConfig | None:
    """With no card kept, a workspace whose partner collects by card through a provider that has its own
    card page (Asaas's invoice page) is sent a link to pay there, rather than waiting for the partner to
    record the payment by hand."""
    if subscription.workspace_id is None or subscription.payment_mode is not PaymentMode.MANUAL:
        return None
    config = await gateway_configs.active_config(subscription.partner_id)
    if (
        config is None
        or config.provider == gateway_configs.MANUAL
        or PaymentMethodKind.CARD.value not in config.methods
    ):
        return None
    return config if gateway_configs.gateway_for(config).capabilities().hosted_card_page else None


async def _ask_to_pay(subscription: Subscription, period: SubscriptionPeriod, config: GatewayConfig) -> None:
    """The period's payment through the partner's configuration: its payer action is the provider's card
    page, which the payer is e-mailed (payment.pending)."""
    payer_key = f"WORKSPACE:{subscription.workspace_id}"
    payment = await _card_payment(subscription, period, config, payer_key, "pay-now link")
    await work.schedule(ASK_TO_PAY, {"payment_id": payment.id}, dedupe_key=f"ask-to-pay:{payment.id}")


async def ask_to_pay_job(job: dict[str, Any]) -> dict[str, Any]:
    payment = await Payment.get(id=job["payment_id"])
    if payment.status in (PaymentStatus.CREATED, PaymentStatus.UNKNOWN):
        payment = await charging.collect(payment, description="renewal")
    return {"status": payment.status.value}


async def charge_card_job(job: dict[str, Any]) -> dict[str, Any]:
    payment = await Payment.get(id=job["payment_id"])
    card = await SavedPaymentMethod.get(id=job["card_id"])
    if payment.status in (PaymentStatus.CREATED, PaymentStatus.UNKNOWN):
        payment = await charging.collect(payment, saved_method=card, description="renewal")
    return {"status": payment.status.value}  # a decline is announced (payment.failed) where it is recorded


async def _collect_or_fail(subscription: Subscription, period: SubscriptionPeriod, *, retry: bool) -> None:
    assert period.payment_id is not None
    payment = await Payment.get(id=period.payment_id)
    if payment.method is PaymentMethodKind.CARD and payment.gateway_config_id is not None:
        if payment.status is PaymentStatus.SUCCEEDED:
            return
        card = await _card_on_file(subscription)
        if card is not None and payment.status in _FINALLY_UNPAID:
            await _charge_card(subscription, period, card)  # this retry's attempt
        await _unpaid(subscription, period, failed=retry, overdue=retry)
        return
    mode = subscription.payment_mode
    if await lifecycle.collect(payment, mode, by_hand=False, refuse_decline=False):
        return  # the fulfilment marked the period paid and cleared any dunning
    await _unpaid(subscription, period, failed=retry, overdue=retry or mode is not PaymentMode.MANUAL)


async def _unpaid(subscription: Subscription, period: SubscriptionPeriod, *, failed: bool, overdue: bool) -> None:
    """A renewal not paid when tried. The due-date attempt is not counted: a manual renewal is then
    simply issued (the partner records it when paid), an automatic one is overdue. Each retry day
    that finds it unpaid counts one failure."""
    partner = await Partner.get(id=subscription.partner_id)
    plan = await Plan.get(id=period.plan_id)
    failures = subscription.failed_renewals + (1 if failed else 0)
    retry_days: list[int] = list(partner.dunning_retry_days or [])
    next_retry = None
    if failures < len(retry_days):
        scheduled = period.starts_at + timedelta(days=plan.grace_days + retry_days[failures])
        # Catching up on a period that fell due long ago: retry a day later, not all at once.
        next_retry = scheduled if scheduled > clock.now() else clock.now() + MIN_RETRY_GAP
    if overdue and subscription.status is not SubscriptionStatus.PAST_DUE:
        await lifecycle.set_status(subscription, SubscriptionStatus.PAST_DUE)
    subscription.failed_renewals, subscription.next_retry_at, subscription.next_action_at = (
        failures,
        next_retry,
        next_retry,
    )
    await subscription.save(update_fields=["status", "failed_renewals", "next_retry_at", "next_action_at"])
    await audit.emit(
        "renewal.overdue" if overdue else "renewal.issued",
        subscription.partner_id,
        {
            "subscription_id": subscription.id,
            "workspace_id": subscription.workspace_id,
            "period": period.number,
            "failures": failures,
            "next_retry_at": next_retry.isoformat() if next_retry else None,
        },
    )
    if subscription.workspace_id is None or not overdue:
        return
    if partner.dunning_fallback_after and failures >= partner.dunning_fallback_after and partner.fallback_plan_id:
        await lifecycle.end(
            subscription, SubscriptionStatus.EXPIRED, at=clock.now(), reason="renewal unpaid: fallback plan"
        )
        return
    await workspace_status.recompute(subscription.workspace_id)


# --- forecast ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ForecastItem:
    subscription_id: int
    workspace_id: int | None
    due_at: datetime
    price: Money


@dataclass(frozen=True, slots=True)
class Forecast:
    days: int
    items: list[ForecastItem] = field(default_factory=list)

    def totals(self) -> list[Money]:
        sums: dict[str, int] = {}
        for item in self.items:
            sums[item.price.currency] = sums.get(item.price.currency, 0) + item.price.amount
        return [Money(amount, currency) for currency, amount in sorted(sums.items())]


async def forecast(viewer: Viewer, *, partner_id: int, days: int) -> Forecast:
    """Renewals due in the next ``days`` days for a partner's workspaces and its own plan, at the
    price each will be billed (a scheduled change's). What will not renew is left out by the rule the
    period's end applies (:func:`ending`: canceled, auto-renew off, validity or renewals used up)."""
    viewer.require(Permission.READ_REPORTS)
    partner = await tenancy.get_scoped(tenancy.partners(viewer), partner_id, "partner")
    if not 1 <= days <= 366:
        raise BillingError(ErrorCode.INVALID_INPUT, "a forecast covers 1 to 366 days", field="days")
    horizon = clock.now() + timedelta(days=days)
    rows = await Subscription.filter(
        partner_id=partner.id,
        status__in=[SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING],
        current_period_end__lt=horizon,
    ).order_by("current_period_end", "id")
    plan_ids = {r.plan_id for r in rows} | {r.scheduled_plan_id for r in rows if r.scheduled_plan_id}
    plans_by_id = {p.id: p for p in await Plan.filter(id__in=list(plan_ids))}
    workspace_ids = [r.workspace_id for r in rows if r.workspace_id]
    workspaces = {w.id: w for w in await Workspace.filter(id__in=workspace_ids)}
    billed = await _periods_billed([r.id for r in rows])
    items: list[ForecastItem] = []
    for row in rows:
        plan, price = plans_by_id[row.plan_id], Money(row.price_amount, row.currency)
        workspace = workspaces.get(row.workspace_id) if row.workspace_id else None
        so_far, due = billed.get(row.id, 0), row.current_period_end
        while due < horizon:  # a monthly plan renews twice in some 31-day windows
            if ending(row, plan, workspace, so_far) is not None:
                break
            if row.scheduled_plan_id and plan.id != row.scheduled_plan_id:  # the change takes effect here
                plan = plans_by_id[row.scheduled_plan_id]
                price = await plans.price_for(partner.id if row.workspace_id else None, plan)
            items.append(ForecastItem(row.id, row.workspace_id, due, price))
            so_far += 1
            due = period_end(due, plan.interval, row.anchor_day)
    return Forecast(days, items)


async def _periods_billed(subscription_ids: list[int]) -> dict[int, int]:
    """How many periods each subscription has been billed, as :func:`ending` counts them."""
    if not subscription_ids:
        return {}
    counted = (
        await SubscriptionPeriod.filter(subscription_id__in=subscription_ids)
        .annotate(n=Count("id"))
        .group_by("subscription_id")
        .values_list("subscription_id", "n")
    )
    return {int(subscription_id): int(n) for subscription_id, n in counted}


# --- the partner's policy ------------------------------------------------------------------------

MAX_RETRIES = 30


async def set_dunning_policy(
    viewer: Viewer,
    *,
    partner_id: int,
    retry_days: list[int],
    restrict_after: int,
    suspend_after: int,
    fallback_after: int | None,
    fallback_plan_id: int | None,
) -> Partner:
    """A partner's dunning schedule: retry days after the due date (increasing), the failure counts
    that restrict and suspend (0: never), and when to drop to the fallback plan instead. UChat's
    "3 daily retries then the free plan" is retry_days [1, 2, 3], restrict 0, suspend 0, fallback
    after 3 with the free plan as fallback. Only retry days count failures (the due-date attempt
    does not), so a threshold above the number of retry days would never be reached: the workspace
    would sit PAST_DUE on its plan, billed nothing and never retried again. Such a policy is refused."""
    viewer.require(Permission.MANAGE_PLANS)
    partner = await tenancy.get_scoped(tenancy.partners(viewer), partner_id, "partner")
    if len(retry_days) > MAX_RETRIES or any(not 1 <= d <= 366 for d in retry_days):
        raise BillingError(ErrorCode.INVALID_INPUT, f"at most {MAX_RETRIES} days, each 1 to 366", field="retryDays")
    if any(b <= a for a, b in itertools.pairwise(retry_days)):
        raise BillingError(ErrorCode.INVALID_INPUT, "retry days must increase", field="retryDays")
    for value, name in (
        (restrict_after, "restrictAfter"),
        (suspend_after, "suspendAfter"),
        (fallback_after, "fallbackAfter"),
    ):
        if value is not None and not 0 <= value <= MAX_RETRIES + 1:
            raise BillingError(ErrorCode.INVALID_INPUT, f"between 0 and {MAX_RETRIES + 1}", field=name)
    if fallback_plan_id is not None:
        plan = await tenancy.get_scoped(
            plans.visible_plans(viewer).filter(for_partners=False), fallback_plan_id, "plan", field="fallbackPlanId"
        )
        if plan.partner_id not in (None, partner.id):
            raise BillingError(ErrorCode.NOT_FOUND, "plan not found", field="fallbackPlanId")
    if fallback_after and fallback_plan_id is None:
        raise BillingError(ErrorCode.INVALID_INPUT, "name the fallback plan to drop to", field="fallbackPlanId")
    reachable = len(retry_days)
    for value, name in (
        (restrict_after, "restrictAfter"),
        (suspend_after, "suspendAfter"),
        (fallback_after, "fallbackAfter"),
    ):
        if value and value > reachable:
            raise BillingError(
                ErrorCode.INVALID_INPUT,
                f"{name} {value} is never reached: each retry day that finds the renewal unpaid is one failure,"
                f" and {reachable} retry day(s) count at most {reachable} (0 turns it off)",
                field=name,
            )
    before = {
        "retry_days": partner.dunning_retry_days,
        "restrict_after": partner.dunning_restrict_after,
        "suspend_after": partner.dunning_suspend_after,
        "fallback_after": partner.dunning_fallback_after,
        "fallback_plan_id": audit.global_id("Plan", partner.fallback_plan_id),
    }
    partner.dunning_retry_days, partner.dunning_restrict_after = list(retry_days), restrict_after
    partner.dunning_suspend_after, partner.dunning_fallback_after = suspend_after, fallback_after or None
    partner.fallback_plan_id = fallback_plan_id
    async with in_transaction("default"):
        await partner.save(
            update_fields=[
                "dunning_retry_days",
                "dunning_restrict_after",
                "dunning_suspend_after",
                "dunning_fallback_after",
                "fallback_plan_id",
            ]
        )
        await audit.record(
            actor=viewer.actor,
            action="partner.dunning_policy",
            target_type="Partner",
            target_id=partner.id,
            partner_id=partner.id,
            before=before,
            after={
                "retry_days": retry_days,
                "restrict_after": restrict_after,
                "suspend_after": suspend_after,
                "fallback_after": fallback_after,
                "fallback_plan_id": audit.global_id("Plan", fallback_plan_id),
            },
        )
    return partner
