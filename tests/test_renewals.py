"""Flow F: renewals at period end and dunning when they are not paid, run by the worker under the
movable clock; periods keep their anchor day (Jan 31 -> Feb 28 -> Mar 31); no period is billed twice,
even with 4 worker processes on one PostgreSQL database."""

from __future__ import annotations

import asyncio
import importlib
import itertools
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.accounts import ledger
from billing.accounts.ledger import Leg
from billing.accounts.opening import open_wallet
from billing.catalog import plans
from billing.core import clock, sql
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Money
from billing.sales import purchases
from billing.subscriptions import current, lifecycle, renewals, workspace_status
from models.catalog import PartnerMargin
from models.enums import (
    BillingInterval,
    ExternalAccount,
    LedgerCause,
    MarginKind,
    OwnerKind,
    PaymentStatus,
    PeriodStatus,
    PlanChangeTiming,
    PlanHistoryStatus,
    SubscriptionStatus,
    WorkspaceStatus,
)
from models.operations import OutboxEvent
from models.payments import Payment
from models.subscriptions import Subscription, SubscriptionHistory, SubscriptionPeriod
from models.tenancy import Workspace
from models.wallets import LedgerEntry, Wallet
from tests.conftest import Backend
from tests.factories import PLATFORM, a_partner, a_workspace, partner_viewer

pytestmark = pytest.mark.usefixtures("database")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def at(moment: datetime) -> None:
    await clock.advance(moment - clock.now())


async def a_plan(partner, name: str = "Basic", amount: int = 4990, **extra):
    return await plans.create_plan(
        partner_viewer(partner),
        name=name,
        interval=BillingInterval.MONTHLY,
        price=Money(amount, "BRL"),
        limits={"members": 5},
        **extra,
    )


async def assigned(partner, workspace, plan, key: str = "a1") -> Subscription:
    return await lifecycle.assign_plan(
        partner_viewer(partner), workspace_id=workspace.id, plan_id=plan.id, note="", idempotency_key=key
    )


async def pay_due(partner, subscription_id: int) -> None:
    """The partner records every pending manual renewal of a subscription."""
    for period in await SubscriptionPeriod.filter(subscription_id=subscription_id, status=PeriodStatus.DUE):
        await purchases.record_payment(
            partner_viewer(partner),
            payment_id=period.payment_id,
            note="bank transfer",
            idempotency_key=f"r{period.payment_id}",
        )


async def status_of(workspace) -> WorkspaceStatus:
    return (await Workspace.get(id=workspace.id)).status


async def test_an_unpaid_manual_renewal_follows_the_default_dunning_schedule_until_paid() -> None:
    """Issued Feb 28 (anchor Jan 31); still unpaid on retry days 1, 3 and 9: three failures ->
    RESTRICTED; paying clears it; the next period starts on Mar 31."""
    partner = await a_partner()
    workspace = await a_workspace(partner)
    await at(utc(2027, 1, 31, 9))
    subscription = await assigned(partner, workspace, await a_plan(partner))
    assert subscription.current_period_end == utc(2027, 2, 28, 9)

    await at(utc(2027, 2, 28, 9))
    assert await renewals.run_due() == 1
    await subscription.refresh_from_db()
    # Issued, not yet overdue: the partner records it when its client pays.
    assert (subscription.status, subscription.failed_renewals) == (SubscriptionStatus.ACTIVE, 0)
    assert subscription.next_retry_at == utc(2027, 3, 1, 9)
    assert await renewals.run_due() == 0  # nothing again before the retry day

    await at(utc(2027, 3, 1, 9))
    await renewals.run_due()
    await subscription.refresh_from_db()
    assert (subscription.status, subscription.failed_renewals) == (SubscriptionStatus.PAST_DUE, 1)
    assert await status_of(workspace) is WorkspaceStatus.ACTIVE  # overdue, not yet restricting
    assert (await Workspace.get(id=workspace.id)).status_reasons == [{"kind": "PAYMENT_OVERDUE", "failures": 1}]
    for moment in (utc(2027, 3, 3, 9), utc(2027, 3, 9, 9)):
        await at(moment)
        await renewals.run_due()
    await subscription.refresh_from_db()
    assert subscription.failed_renewals == 3 and subscription.next_retry_at == utc(2027, 3, 15, 9)
    assert await status_of(workspace) is WorkspaceStatus.RESTRICTED
    with pytest.raises(BillingError) as refused:
        workspace_status.require_operational(await Workspace.get(id=workspace.id))
    assert refused.value.code is ErrorCode.PAYMENT_REQUIRED

    await pay_due(partner, subscription.id)
    await subscription.refresh_from_db()
    assert (subscription.status, subscription.failed_renewals, subscription.next_action_at) == (
        SubscriptionStatus.ACTIVE,
        0,
        utc(2027, 3, 31, 9),
    )
    assert await status_of(workspace) is WorkspaceStatus.ACTIVE
    assert await OutboxEvent.filter(event_type="renewal.issued").count() == 1
    assert await OutboxEvent.filter(event_type="renewal.overdue").count() == 3
    assert await OutboxEvent.filter(event_type="workspace.restricted").count() == 1
    assert await OutboxEvent.filter(event_type="plan.renewed").count() == 1


async def test_five_failures_suspend_and_a_late_payment_bills_the_missed_period_once() -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    await at(utc(2027, 1, 10))
    subscription = await assigned(partner, workspace, await a_plan(partner, grace_days=2))
    # Due Feb 10; with 2 grace days the retries on days 1, 3, 9, 15, 21 land on Feb 13, 15, 21, 27, Mar 5.
    for moment in (utc(2027, 2, 10), utc(2027, 2, 13), utc(2027, 2, 15), utc(2027, 2, 21), utc(2027, 2, 27)):
        await at(moment)
        assert await renewals.run_due() == 1
    await subscription.refresh_from_db()
    assert subscription.failed_renewals == 4 and await status_of(workspace) is WorkspaceStatus.RESTRICTED
    await at(utc(2027, 3, 5))
    await renewals.run_due()  # the last retry
    await subscription.refresh_from_db()
    assert subscription.failed_renewals == 5 and await status_of(workspace) is WorkspaceStatus.SUSPENDED
    assert subscription.next_action_at is None  # the schedule is spent

    await at(utc(2027, 4, 20))  # March's period is long over; nothing was billed while unpaid
    assert await renewals.run_due() == 0
    await pay_due(partner, subscription.id)
    assert await renewals.run_due() == 1  # the period due Mar 10 is billed now, once
    assert await renewals.run_due() == 0
    periods = await SubscriptionPeriod.filter(subscription_id=subscription.id).order_by("number")
    assert [(p.starts_at, p.status) for p in periods] == [
        (utc(2027, 1, 10), PeriodStatus.PAID),
        (utc(2027, 2, 10), PeriodStatus.PAID),
        (utc(2027, 3, 10), PeriodStatus.DUE),
    ]


async def test_uchat_policy_three_daily_retries_then_the_free_fallback_plan() -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    free = await a_plan(partner, "Free", 0)
    await renewals.set_dunning_policy(
        partner_viewer(partner),
        partner_id=partner.id,
        retry_days=[1, 2, 3],
        restrict_after=0,
        suspend_after=0,
        fallback_after=3,
        fallback_plan_id=free.id,
    )
    await at(utc(2027, 5, 1))
    paid = await assigned(partner, workspace, await a_plan(partner, "Pro", 9900))
    for day in (1, 2, 3):  # issued June 1, unpaid on June 2 and 3
        await at(utc(2027, 6, day))
        await renewals.run_due()
        assert await status_of(workspace) is WorkspaceStatus.ACTIVE  # this policy never restricts
    await at(utc(2027, 6, 4))
    await renewals.run_due()  # 3rd failure: down to the free plan, which the worker bills (0.00) at once
    await renewals.run_due()
    await paid.refresh_from_db()
    assert paid.status is SubscriptionStatus.EXPIRED
    now_on = await current.live_subscription(workspace.id)
    assert now_on is not None and now_on.plan_id == free.id and now_on.status is SubscriptionStatus.ACTIVE
    renewal = await Payment.get(purpose_kind="SUBSCRIPTION_PERIOD", amount=9900)
    assert renewal.status is PaymentStatus.CANCELED  # the unpaid period is void, not owed
    history = await lifecycle.history_of(workspace_id=workspace.id)
    assert [(h.plan_id, h.status) for h in history] == [
        (paid.plan_id, PlanHistoryStatus.EXPIRED),
        (free.id, PlanHistoryStatus.ACTIVE),
    ]


async def test_history_entries_closed_by_a_change_before_they_said_so_read_replaced() -> None:
    """Migration 0009: an entry closed by a change of plan used to keep its live status (ACTIVE with an
    end date); it now reads REPLACED. Open entries and those closed by the subscription's end keep theirs."""
    partner = await a_partner()
    changed, canceled = await a_workspace(partner, "Changed"), await a_workspace(partner, "Canceled")
    basic, pro = await a_plan(partner), await a_plan(partner, "Pro", 9900)
    await assigned(partner, changed, basic)
    await lifecycle.change_plan(
        partner_viewer(partner),
        workspace_id=changed.id,
        plan_id=pro.id,
        timing=PlanChangeTiming.NOW,
        note="",
        idempotency_key="c1",
    )
    await assigned(partner, canceled, basic, key="a2")
    await lifecycle.cancel(partner_viewer(partner), workspace_id=canceled.id, at_period_end=False)
    # As entries were written before: the replaced one still reads ACTIVE.
    await SubscriptionHistory.filter(status=PlanHistoryStatus.REPLACED).update(status=PlanHistoryStatus.ACTIVE)

    await sql.execute(importlib.import_module("models.migrations.0009_plan_history_replaced").REPLACED_ENTRIES)

    async def statuses(workspace: Workspace) -> list[tuple[int, PlanHistoryStatus, bool]]:
        return [
            (h.plan_id, h.status, h.ended_at is None) for h in await lifecycle.history_of(workspace_id=workspace.id)
        ]

    assert await statuses(changed) == [
        (basic.id, PlanHistoryStatus.REPLACED, False),
        (pro.id, PlanHistoryStatus.ACTIVE, True),
    ]
    assert await statuses(canceled) == [(basic.id, PlanHistoryStatus.CANCELED, False)]


async def test_validity_ends_a_plan_after_its_periods_and_a_trial_is_billed_at_its_end() -> None:
    partner = await a_partner()
    limited, trial = await a_workspace(partner, "Limited"), await a_workspace(partner, "Trial")
    await at(utc(2027, 1, 5))
    two_months = await a_plan(partner, "Two months", validity_periods=2)
    await assigned(partner, limited, two_months, "v")
    trying = await lifecycle.assign_plan(
        partner_viewer(partner),
        workspace_id=trial.id,
        plan_id=(await a_plan(partner, "Trial plan", trial_days=14)).id,
        note="",
        idempotency_key="t",
    )
    assert trying.status is SubscriptionStatus.TRIALING and trying.current_period_end == utc(2027, 1, 19)
    await at(utc(2027, 1, 19))
    await renewals.run_due()
    await trying.refresh_from_db()
    first = await SubscriptionPeriod.get(subscription_id=trying.id)
    assert (first.number, first.starts_at, first.status) == (1, utc(2027, 1, 19), PeriodStatus.DUE)
    assert trying.status is SubscriptionStatus.ACTIVE and trying.next_retry_at == utc(2027, 1, 20)  # issued

    sub = await current.live_subscription(limited.id)
    await at(utc(2027, 2, 5))
    await renewals.run_due()
    await pay_due(partner, sub.id)
    await at(utc(2027, 3, 5))
    await renewals.run_due()
    await sub.refresh_from_db()
    assert sub.status is SubscriptionStatus.EXPIRED and await status_of(limited) is WorkspaceStatus.RESTRICTED


async def test_a_future_dated_activation_is_active_now_and_first_charged_on_its_date() -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    await at(utc(2027, 3, 10))
    subscription = await lifecycle.assign_plan(
        partner_viewer(partner),
        workspace_id=workspace.id,
        plan_id=(await a_plan(partner)).id,
        note="starts billing in April",
        idempotency_key="f",
        charge_from=utc(2027, 4, 1),
    )
    assert subscription.status is SubscriptionStatus.ACTIVE and await status_of(workspace) is WorkspaceStatus.ACTIVE
    assert await SubscriptionPeriod.filter(subscription_id=subscription.id).count() == 0
    await at(utc(2027, 4, 1))
    await renewals.run_due()
    [period] = await SubscriptionPeriod.filter(subscription_id=subscription.id)
    assert (period.starts_at, period.ends_at, period.amount) == (utc(2027, 4, 1), utc(2027, 5, 1), 4990)


async def test_included_units_arrive_once_per_paid_period() -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    await at(utc(2027, 1, 1))
    plan = await a_plan(partner, included_units={"MESSAGE_CREDITS": 10_000})
    subscription = await assigned(partner, workspace, plan)
    await at(utc(2027, 2, 1))
    await renewals.run_due()
    credits = await Wallet.get(workspace_id=workspace.id, unit="MESSAGE_CREDITS")
    assert credits.balance == 10_000  # the renewal is not paid yet
    await pay_due(partner, subscription.id)
    await credits.refresh_from_db()
    assert credits.balance == 20_000


async def test_bulk_margins_over_a_family_are_exact_and_one_per_scope() -> None:
    partner = await a_partner()
    family = await plans.create_plan_family(PLATFORM, name="Chatbot")
    family_plans = [
        await plans.create_plan(
            PLATFORM, name=n, interval=BillingInterval.MONTHLY, price=Money(a, "BRL"), limits={}, family_id=family.id
        )
        for n, a in (("Basic", 4990), ("Pro", 9900), ("Basic yearly", 49900), ("Pro yearly", 99000))
    ]
    solo = await plans.create_plan(
        PLATFORM, name="Solo", interval=BillingInterval.MONTHLY, price=Money(1000, "BRL"), limits={}
    )
    viewer = partner_viewer(partner)
    await asyncio.gather(
        *(
            plans.set_margin(viewer, kind=MarginKind.PERCENTAGE, value=Decimal("15"), family_id=family.id)
            for _ in range(4)
        )
    )
    await plans.set_margin(viewer, kind=MarginKind.PERCENTAGE, value=Decimal("7.5"))  # bulk, below the family's
    # Bulk fixed margins are one per currency, beside the bulk percentage; the same currency again replaces it.
    await plans.set_margin(viewer, kind=MarginKind.FIXED, value=Decimal("250"), currency="BRL")
    await plans.set_margin(viewer, kind=MarginKind.FIXED, value=Decimal("300"), currency="BRL")
    assert await PartnerMargin.filter(partner_id=partner.id).count() == 3
    prices = [(await plans.price_for(partner.id, p)).amount for p in family_plans]
    assert prices == [5738, 11385, 57385, 113850]  # 49.90 x 1.15 = 57.385 -> 57.38, half-even
    # Outside the family: the bulk fixed margin in the plan's currency comes before the bulk percentage.
    assert (await plans.price_for(partner.id, solo)).amount == 1300


# --- 4 workers, 14 months, PostgreSQL -------------------------------------------------------------


def start_worker(backend: Backend, name: str) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ, DATABASE_URL=backend.url, WHITEBILL_ENV="test", WHITEBILL_TEST_CLOCK="1", LOG_LEVEL="WARNING"
    )
    return subprocess.Popen(
        [sys.executable, "-m", "whitebill.cli", "worker", "--name", name, "--poll", "0.02"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def settle() -> None:
    """Wait until the workers have acted on everything due at the clock's time."""
    for _ in range(1500):
        if not await Subscription.filter(next_action_at__lte=clock.now()).exists():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the workers did not act on what was due")


async def test_fourteen_months_of_renewals_by_four_workers_bill_each_period_once(database: Backend) -> None:
    if not database.is_postgres:
        pytest.skip("several worker processes share one database on PostgreSQL")
    partner = await a_partner()
    basic = await a_plan(partner)
    starter = await plans.create_plan(
        PLATFORM,
        name="Partner",
        interval=BillingInterval.MONTHLY,
        price=Money(30_000, "BRL"),
        limits={},
        for_partners=True,
    )
    balance = await open_wallet(partner_id=partner.id, owner_kind=OwnerKind.PARTNER, owner_id=partner.id, unit="BRL")
    await ledger.post([Leg(150_000, "BRL", ExternalAccount.GATEWAY, balance.id)], cause=LedgerCause.PURCHASE)

    workspaces = {}
    for name, start in (("Jan 31", utc(2027, 1, 31, 12)), ("Feb 15", utc(2027, 2, 15, 8)), ("Mar 1", utc(2027, 3, 1))):
        await at(start)
        workspaces[name] = await a_workspace(partner, name)
        await assigned(partner, workspaces[name], basic, name)
    partner_plan = await lifecycle.subscribe_partner_plan(
        partner_viewer(partner),
        partner_id=partner.id,
        plan_id=starter.id,
        timing=PlanChangeTiming.AUTO,
        idempotency_key="pp",
    )  # Mar 1: 300.00 a month from a balance of 1,500.00 -> short in August

    late = workspaces["Feb 15"]
    late_sub = await current.live_subscription(late.id)
    workers = [start_worker(database, f"w{i}") for i in range(4)]
    try:
        end = utc(2028, 5, 1)
        topped_up = late_paid = False
        while clock.now() < end:
            due = await Subscription.filter(next_action_at__isnull=False).order_by("next_action_at").first()
            if due is None or due.next_action_at >= end:
                break
            await at(max(due.next_action_at, clock.now()))
            await settle()
            for name, workspace in workspaces.items():
                sub = await current.live_subscription(workspace.id)
                if workspace is late and clock.now() >= utc(2027, 6, 15) and sub.failed_renewals < 3 and not late_paid:
                    continue  # June's renewal stays unpaid: failures on the due date, days 1 and 3
                if workspace is late and sub.failed_renewals == 3:
                    late_paid = True
                await pay_due(partner, sub.id)
            if not topped_up and (await Subscription.get(id=partner_plan.id)).failed_renewals >= 1:
                await ledger.post(
                    [Leg(300_000, "BRL", ExternalAccount.GATEWAY, balance.id)], cause=LedgerCause.PURCHASE
                )
                topped_up = True
            await settle()
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=10)

    jan31 = await current.live_subscription(workspaces["Jan 31"].id)
    starts = [p.starts_at for p in await SubscriptionPeriod.filter(subscription_id=jan31.id).order_by("number")]
    assert starts[:4] == [utc(2027, 1, 31, 12), utc(2027, 2, 28, 12), utc(2027, 3, 31, 12), utc(2027, 4, 30, 12)]
    assert starts[-1] == utc(2028, 4, 30, 12) and len(starts) == 16  # Jan 31 2027 .. Apr 30 2028
    for sub in await Subscription.all():
        periods = await SubscriptionPeriod.filter(subscription_id=sub.id).order_by("number")
        assert [p.number for p in periods] == list(range(1, len(periods) + 1))
        assert all(a.ends_at == b.starts_at for a, b in itertools.pairwise(periods))  # contiguous
        assert all(p.status is PeriodStatus.PAID for p in periods), sub.id
        payments = [await Payment.get(id=p.payment_id) for p in periods if p.payment_id]
        assert all(pay.status is PaymentStatus.SUCCEEDED for pay in payments)
        assert len({pay.id for pay in payments}) == len(payments)  # one payment per period
    events = [(e.event_type, e.payload.get("workspace_id")) for e in await OutboxEvent.all().order_by("id")]
    assert events.count(("renewal.overdue", late.id)) == 3
    assert events.count(("workspace.restricted", late.id)) == 1 and ("workspace.resumed", late.id) in events
    # The partner's own plan, short on Aug 1 and on the retry of Aug 2, then topped up.
    assert events.count(("renewal.overdue", None)) == 2
    partner_periods = await SubscriptionPeriod.filter(subscription_id=partner_plan.id).count()
    await balance.refresh_from_db()
    assert balance.balance == 450_000 - 30_000 * partner_periods  # every partner period debited once
    entries = await ledger_sum(balance.id)
    assert entries == balance.balance
    assert late_sub.id == (await current.live_subscription(late.id)).id


async def ledger_sum(wallet_id: int) -> int:
    return sum(e.amount for e in await LedgerEntry.filter(wallet_id=wallet_id))
