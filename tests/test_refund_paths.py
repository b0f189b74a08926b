"""Refunds and chargebacks, the paths the end-to-end tests do not take: a payment made from the partner's
balance with the platform, add-ons, reports that race each other, and a provider that will not refund.
Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
import pytest
from aiohttp import web

from billing.accounts import ledger, opening
from billing.accounts.ledger import Leg
from billing.catalog import plans
from billing.charges import gateway_configs, payments
from billing.core import clock
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Money
from billing.core.tenancy import Viewer
from billing.sales import provider_webhooks, refunds
from billing.subscriptions import current, lifecycle
from gateways.base import ChargeRequest, ChargeResult, Outcome, Payer, RefundState, WebhookNotice
from models.enums import (
    BillingInterval,
    ExternalAccount,
    GatewayMode,
    LedgerCause,
    OwnerKind,
    PaymentMethodKind,
    PaymentStatus,
    PlanChangeTiming,
    RefundPlanPolicy,
    RefundStatus,
    SubscriptionStatus,
    ViewerKind,
)
from models.operations import OutboxEvent
from models.payments import GatewayConfig, Payment, PaymentTransition, Refund
from models.subscriptions import Subscription, WorkspaceAddOn
from models.tenancy import Partner, Workspace
from models.wallets import LedgerEntry, Wallet
from tests.factories import PLATFORM, a_partner, a_workspace, partner_viewer
from tests.test_gateway_stripe import Reply, a_fake_stripe
from whitebill.settings import configure_domain, load_settings

pytestmark = pytest.mark.usefixtures("database")

S = PaymentStatus
PRICE, POINTS = 4990, 500


async def refund_entries(wallet_id: int, cause: LedgerCause = LedgerCause.REFUND) -> list[int]:
    return list(
        await LedgerEntry.filter(wallet_id=wallet_id, cause=cause).order_by("id").values_list("amount", flat=True)
    )


async def refused(call: Any, **kwargs: Any) -> BillingError:
    with pytest.raises(BillingError) as caught:
        await call(**kwargs)
    return caught.value


# ---------------------------------------------------------------- paid from the partner's balance

PARTNER_PLAN = 300_00
BALANCE = 1000_00


async def a_partner_on_a_balance_paid_plan() -> tuple[Partner, Wallet, Payment]:
    """A partner with R$ 1.000,00 on its balance, R$ 300,00 of it paid for its own plan."""
    partner = await a_partner()
    plan = await plans.create_plan(
        PLATFORM,
        name=f"Partner {partner.id}",
        interval=BillingInterval.MONTHLY,
        price=Money(PARTNER_PLAN, "BRL"),
        limits={},
        for_partners=True,
    )
    balance = await opening.open_wallet(
        partner_id=partner.id, owner_kind=OwnerKind.PARTNER, owner_id=partner.id, unit="BRL"
    )
    await ledger.post([Leg(BALANCE, "BRL", ExternalAccount.GATEWAY, balance.id)], cause=LedgerCause.PURCHASE)
    subscription = await lifecycle.subscribe_partner_plan(
        partner_viewer(partner),
        partner_id=partner.id,
        plan_id=plan.id,
        timing=PlanChangeTiming.AUTO,
        idempotency_key="pp",
    )
    assert subscription.status is SubscriptionStatus.ACTIVE
    payment = await Payment.get(payer_key=f"PARTNER:{partner.id}")
    assert (payment.method, payment.status, payment.amount) == (PaymentMethodKind.BALANCE, S.SUCCEEDED, PARTNER_PLAN)
    assert (await Wallet.get(id=balance.id)).balance == BALANCE - PARTNER_PLAN
    return partner, balance, payment


async def test_a_balance_paid_plan_refunded_by_the_platform_puts_the_money_back_on_the_partners_balance() -> None:
    partner, balance, payment = await a_partner_on_a_balance_paid_plan()
    refunded, _ = await refunds.refund_payment(
        PLATFORM, payment_id=payment.id, amount=None, reason="goodwill", idempotency_key="r-1"
    )
    assert (refunded.status, refunded.refunded_amount, refunded.reversed_amount) == (
        S.REFUNDED,
        PARTNER_PLAN,
        PARTNER_PLAN,
    )
    assert (await Wallet.get(id=balance.id)).balance == BALANCE
    assert await refund_entries(balance.id) == [PARTNER_PLAN]
    # The default policy lets the paid month run out, and nothing renews.
    subscription = await current.live_partner_subscription(partner.id)
    assert subscription is not None and subscription.status is SubscriptionStatus.ACTIVE
    assert subscription.cancel_at_period_end is True


async def test_a_balance_paid_plan_refunded_in_full_ends_now_when_the_partner_chose_end_now() -> None:
    partner, balance, payment = await a_partner_on_a_balance_paid_plan()
    await refunds.set_policy(
        partner_viewer(partner), partner_id=partner.id, plan_policy=RefundPlanPolicy.END_NOW, take_back_units=True
    )
    await refunds.refund_payment(PLATFORM, payment_id=payment.id, amount=None, reason="", idempotency_key="r-1")
    assert await current.live_partner_subscription(partner.id) is None
    ended = await Subscription.get(partner_id=partner.id, workspace_id=None)
    assert ended.status is SubscriptionStatus.CANCELED
    assert (await Wallet.get(id=balance.id)).balance == BALANCE


async def test_a_balance_payment_refunded_in_two_parts_returns_each_part_once() -> None:
    _, balance, payment = await a_partner_on_a_balance_paid_plan()
    for key in ("r-1", "r-1"):  # the same request twice: refunded once
        made, _ = await refunds.refund_payment(
            PLATFORM, payment_id=payment.id, amount="100.00", reason="", idempotency_key=key
        )
        assert (made.status, made.refunded_amount) == (S.PARTIALLY_REFUNDED, 100_00)
    assert (await Wallet.get(id=balance.id)).balance == BALANCE - PARTNER_PLAN + 100_00
    rest, _ = await refunds.refund_payment(
        PLATFORM, payment_id=payment.id, amount=None, reason="", idempotency_key="r-2"
    )
    assert (rest.status, rest.refunded_amount) == (S.REFUNDED, PARTNER_PLAN)
    assert await refund_entries(balance.id) == [100_00, 200_00]
    assert (await Wallet.get(id=balance.id)).balance == BALANCE


async def test_a_partner_cannot_refund_to_itself_what_it_paid_the_platform() -> None:
    """The platform collected it: only the platform gives it back."""
    partner, balance, payment = await a_partner_on_a_balance_paid_plan()
    error = await refused(
        refunds.refund_payment,
        viewer=partner_viewer(partner),
        payment_id=payment.id,
        amount=None,
        reason="",
        idempotency_key="r-1",
    )
    assert error.code is ErrorCode.FORBIDDEN
    await payment.refresh_from_db()
    assert (payment.status, payment.refunded_amount) == (S.SUCCEEDED, 0)
    assert (await Wallet.get(id=balance.id)).balance == BALANCE - PARTNER_PLAN
    assert await refund_entries(balance.id) == []


async def test_a_workspace_cannot_refund_its_own_payment() -> None:
    wallet, payment = await a_points_payment()
    workspace_viewer = Viewer(
        kind=ViewerKind.WORKSPACE,
        actor="test:workspace",
        partner_id=payment.partner_id,
        workspace_id=wallet.workspace_id,
        permissions=frozenset(),
    )
    error = await refused(
        refunds.refund_payment,
        viewer=workspace_viewer,
        payment_id=payment.id,
        amount=None,
        reason="",
        idempotency_key="r-1",
    )
    assert error.code is ErrorCode.FORBIDDEN
    assert (await Payment.get(id=payment.id)).refunded_amount == 0


# ---------------------------------------------------------------- what a refund may ask for


async def a_points_payment(partner: Partner | None = None, **payment: Any) -> tuple[Wallet, Payment]:
    """R$ 49,90 for 500 points, paid (the points delivered)."""
    workspace = await a_workspace(partner or await a_partner())
    wallet = await opening.workspace_wallet(workspace, "POINTS")
    made = await payments.create_payment(
        partner_id=workspace.partner_id,
        payer_key=f"WORKSPACE:{workspace.id}",
        gateway_config_id=payment.get("gateway_config_id"),
        provider=payment.get("provider", "manual"),
        method=PaymentMethodKind.CARD,
        amount=PRICE,
        currency="BRL",
        purpose={"kind": "WALLET_CREDIT", "wallet_id": wallet.id, "quantity": POINTS},
    )
    assert await payments.move(made.id, S.SUCCEEDED, provider_ref=payment.get("provider_ref"))
    assert (await Wallet.get(id=wallet.id)).balance == POINTS
    return wallet, await Payment.get(id=made.id)


async def test_a_refund_of_more_than_is_left_or_of_nothing_is_refused_with_invalid_amount() -> None:
    wallet, payment = await a_points_payment()
    viewer = partner_viewer(await Partner.get(id=payment.partner_id))
    await refunds.refund_payment(viewer, payment_id=payment.id, amount="40.00", reason="", idempotency_key="r-1")
    too_much = await refused(
        refunds.refund_payment, viewer=viewer, payment_id=payment.id, amount="9.91", reason="", idempotency_key="r-2"
    )
    assert (too_much.code, too_much.field) == (ErrorCode.INVALID_AMOUNT, "amount")
    assert "at most 990" in too_much.message
    nothing = await refused(
        refunds.refund_payment, viewer=viewer, payment_id=payment.id, amount="0", reason="", idempotency_key="r-3"
    )
    assert (nothing.code, nothing.field) == (ErrorCode.INVALID_AMOUNT, "amount")
    assert (await Payment.get(id=payment.id)).refunded_amount == 4000
    assert (await Wallet.get(id=wallet.id)).balance == POINTS - 400  # 40.00 of 49.90 took back 400 of 500


async def test_a_payment_not_paid_cannot_be_refunded_nor_recorded_as_refunded() -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    wallet = await opening.workspace_wallet(workspace, "POINTS")
    pending = await payments.create_payment(
        partner_id=partner.id,
        payer_key=f"WORKSPACE:{workspace.id}",
        gateway_config_id=None,
        provider="manual",
        method=PaymentMethodKind.PIX,
        amount=PRICE,
        currency="BRL",
        purpose={"kind": "WALLET_CREDIT", "wallet_id": wallet.id, "quantity": POINTS},
    )
    assert await payments.move(pending.id, S.PENDING)
    error = await refused(
        refunds.refund_payment,
        viewer=partner_viewer(partner),
        payment_id=pending.id,
        amount=None,
        reason="",
        idempotency_key="r-1",
    )
    assert (error.code, error.field) == (ErrorCode.INVALID_PAYMENT_TRANSITION, "paymentId")
    # A provider reporting a refund of it is not believed either.
    assert await refunds.record_refund(pending.id, PRICE, reason="charge.refunded") is False
    await pending.refresh_from_db()
    assert (pending.status, pending.refunded_amount, pending.reversed_amount) == (S.PENDING, 0, 0)
    assert await PaymentTransition.filter(payment_id=pending.id, to_status=S.REFUNDED).count() == 0


# ---------------------------------------------------------------- points already spent, policies


async def test_points_already_spent_are_taken_back_only_down_to_zero() -> None:
    wallet, payment = await a_points_payment()
    await ledger.post([Leg(450, "POINTS", wallet.id, ExternalAccount.PARTNER_REVENUE)], cause=LedgerCause.USAGE)
    assert await refunds.record_refund(payment.id, PRICE, reason="refunded") is True
    assert (await Wallet.get(id=wallet.id)).balance == 0
    assert await refund_entries(wallet.id) == [-50]
    [entry] = await LedgerEntry.filter(wallet_id=wallet.id, cause=LedgerCause.REFUND)
    posting = await entry.posting
    assert posting.note == "taken back: 50 of 500"


async def test_a_partner_that_keeps_units_on_refund_takes_no_points_back() -> None:
    partner = await a_partner()
    await refunds.set_policy(
        partner_viewer(partner),
        partner_id=partner.id,
        plan_policy=RefundPlanPolicy.KEEP_TO_PERIOD_END,
        take_back_units=False,
    )
    wallet, payment = await a_points_payment(partner)
    assert await refunds.record_refund(payment.id, PRICE, reason="refunded") is True
    assert (await Wallet.get(id=wallet.id)).balance == POINTS
    assert await refund_entries(wallet.id) == []
    assert (await Payment.get(id=payment.id)).reversed_amount == PRICE  # reversed: nothing more to take later


# ---------------------------------------------------------------- add-ons


async def an_add_on_bought(
    partner: Partner, workspace: Workspace, quantity: int, price: int = 1500
) -> tuple[Payment, int]:
    viewer = partner_viewer(partner)
    add_on = await plans.create_add_on(
        viewer, name=f"Chatbot {quantity}", limit_deltas={"chatbots": 1}, price=Money(price, "BRL")
    )
    return await a_payment_for_add_on(partner, workspace, add_on.id, quantity, price), add_on.id


async def a_payment_for_add_on(
    partner: Partner, workspace: Workspace, add_on_id: int, quantity: int, price: int = 1500
) -> Payment:
    made = await payments.create_payment(
        partner_id=partner.id,
        payer_key=f"WORKSPACE:{workspace.id}",
        gateway_config_id=None,
        provider="manual",
        method=PaymentMethodKind.MANUAL,
        amount=price * quantity,
        currency="BRL",
        purpose={"kind": "ADD_ON_PURCHASE", "workspace_id": workspace.id, "add_on_id": add_on_id, "quantity": quantity},
    )
    assert await payments.move(made.id, S.SUCCEEDED)
    return await Payment.get(id=made.id)


async def ending_now(partner: Partner) -> None:
    await refunds.set_policy(
        partner_viewer(partner), partner_id=partner.id, plan_policy=RefundPlanPolicy.END_NOW, take_back_units=True
    )


async def test_a_fully_refunded_add_on_is_removed_when_the_partner_ends_things_now() -> None:
    partner = await a_partner()
    await ending_now(partner)
    workspace = await a_workspace(partner)
    payment, add_on_id = await an_add_on_bought(partner, workspace, quantity=2)
    row = await WorkspaceAddOn.get(workspace_id=workspace.id, add_on_id=add_on_id)
    assert (row.quantity, row.active) == (2, True)
    assert await refunds.record_refund(payment.id, payment.amount, reason="refunded") is True
    await row.refresh_from_db()
    assert (row.quantity, row.active) == (0, False)


async def test_refunding_one_of_two_add_on_purchases_removes_only_what_it_bought() -> None:
    partner = await a_partner()
    await ending_now(partner)
    workspace = await a_workspace(partner)
    first, add_on_id = await an_add_on_bought(partner, workspace, quantity=2)
    await a_payment_for_add_on(partner, workspace, add_on_id, quantity=1)
    row = await WorkspaceAddOn.get(workspace_id=workspace.id, add_on_id=add_on_id)
    assert row.quantity == 3
    assert await refunds.record_refund(first.id, first.amount, reason="refunded") is True
    await row.refresh_from_db()
    assert (row.quantity, row.active) == (1, True)


async def test_a_partly_refunded_add_on_stays() -> None:
    partner = await a_partner()
    await ending_now(partner)
    workspace = await a_workspace(partner)
    payment, add_on_id = await an_add_on_bought(partner, workspace, quantity=2)
    assert await refunds.record_refund(payment.id, payment.amount - 1, reason="refunded") is True
    row = await WorkspaceAddOn.get(workspace_id=workspace.id, add_on_id=add_on_id)
    assert (row.quantity, row.active) == (2, True)
    assert (await Payment.get(id=payment.id)).status is S.PARTIALLY_REFUNDED


async def test_a_fully_refunded_add_on_stays_under_the_default_keep_to_period_end_policy() -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    payment, add_on_id = await an_add_on_bought(partner, workspace, quantity=2)
    assert await refunds.record_refund(payment.id, payment.amount, reason="refunded") is True
    row = await WorkspaceAddOn.get(workspace_id=workspace.id, add_on_id=add_on_id)
    assert (row.quantity, row.active) == (2, True)
    assert (await Payment.get(id=payment.id)).reversed_amount == payment.amount


async def test_a_lost_chargeback_of_an_add_on_removes_it_when_the_partner_ends_things_now() -> None:
    partner = await a_partner()
    await ending_now(partner)
    workspace = await a_workspace(partner)
    payment, add_on_id = await an_add_on_bought(partner, workspace, quantity=1)
    assert await refunds.record_chargeback(payment.id, reason="chargeback lost") is True
    row = await WorkspaceAddOn.get(workspace_id=workspace.id, add_on_id=add_on_id)
    assert (row.quantity, row.active) == (0, False)
    assert (await Payment.get(id=payment.id)).status is S.CHARGED_BACK


# ---------------------------------------------------------------- reports that race


async def test_the_same_refund_reported_twice_takes_back_once() -> None:
    wallet, payment = await a_points_payment()
    assert await refunds.record_refund(payment.id, 2000, reason="charge.refunded") is True
    assert await refunds.record_refund(payment.id, 2000, reason="charge.refunded") is False
    assert await refunds.record_refund(payment.id, 1000, reason="an older, smaller total") is False
    assert await refund_entries(wallet.id) == [-200]
    assert (await Payment.get(id=payment.id)).refunded_amount == 2000


async def test_concurrent_reports_of_growing_refund_totals_keep_the_largest_and_take_back_once() -> None:
    """The provider's refund events, the partner's refund and the reconciler may report cumulative
    totals at once and out of order: the payment ends with the largest, and exactly its share of the
    points is taken back (on PostgreSQL these are concurrent transactions)."""
    for _ in range(5):
        wallet, payment = await a_points_payment()
        totals = [1000, 2000, 3000, 4000, 1000, 3000, 2000]
        await asyncio.gather(*(refunds.record_refund(payment.id, t, reason=f"refund {t}") for t in totals))
        await payment.refresh_from_db()
        assert (payment.status, payment.refunded_amount, payment.reversed_amount) == (
            S.PARTIALLY_REFUNDED,
            4000,
            4000,
        )
        assert sum(await refund_entries(wallet.id)) == -(POINTS * 4000 // PRICE)
        assert (await Wallet.get(id=wallet.id)).balance == POINTS - POINTS * 4000 // PRICE


async def test_a_refund_and_a_lost_chargeback_reported_together_take_back_once() -> None:
    for _ in range(5):
        wallet, payment = await a_points_payment()
        await asyncio.gather(
            refunds.record_refund(payment.id, PRICE, reason="charge.refunded"),
            refunds.record_chargeback(payment.id, reason="charge.dispute.closed"),
            refunds.record_chargeback(payment.id, reason="charge.dispute.closed"),
            refunds.record_refund(payment.id, PRICE, reason="charge.refunded"),
        )
        await payment.refresh_from_db()
        assert payment.status in (S.REFUNDED, S.CHARGED_BACK)
        assert payment.reversed_amount == PRICE
        taken = await refund_entries(wallet.id) + await refund_entries(wallet.id, LedgerCause.CHARGEBACK)
        assert taken == [-POINTS]
        assert (await Wallet.get(id=wallet.id)).balance == 0


# ---------------------------------------------------------------- a provider that will not refund


@pytest.fixture
async def scripted_stripe(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, Any]]:
    """A scripted Stripe API (tests/test_gateway_stripe.py's) that the partner's Stripe configuration
    reaches through the real SDK: the intent is found, the refund answers ``script["refund"]``."""
    script: dict[str, Any] = {}

    def reply(request: web.Request, seen: dict[str, Any]) -> Reply:
        if request.method == "GET" and request.path.startswith("/v1/payment_intents/"):
            return 200, {"id": request.path.rsplit("/", 1)[1], "object": "payment_intent", "currency": "brl"}
        if request.path == "/v1/refunds" and request.method == "POST":
            return script["refund"](seen)
        if request.path == "/v1/refunds":  # the list the reconciler reads
            refunds = script.get("refunds", [])
            return 200, {"object": "list", "url": "/v1/refunds", "has_more": False, "data": refunds}
        if request.path == "/v1/disputes":
            disputes = script.get("disputes", [])
            return 200, {"object": "list", "url": "/v1/disputes", "has_more": False, "data": disputes}
        return 404, {"error": {"type": "invalid_request_error", "message": "no such route"}}

    async with a_fake_stripe(reply) as fake:
        monkeypatch.setenv("WHITEBILL_STRIPE_API_BASE", fake.url)
        configure_domain(load_settings())
        script["fake"] = fake
        yield script


async def a_stripe_payment(partner: Partner) -> tuple[Wallet, Payment]:
    config = await gateway_configs.configure(
        PLATFORM,
        partner_id=partner.id,
        provider="stripe",
        methods=[PaymentMethodKind.CARD],
        mode=GatewayMode.TEST,
        api_key="sk_test_refunds_0123456789",
        webhook_secret="whsec_refunds_0123456789",
    )
    return await a_points_payment(partner, gateway_config_id=config.id, provider="stripe", provider_ref="pi_paid")


def a_refund(status: str, **extra: Any) -> Any:
    def answer(seen: dict[str, Any]) -> Reply:
        body = {"id": "re_1", "object": "refund", "amount": int(seen["form"]["amount"]), "status": status, **extra}
        return 200, body

    return answer


async def test_a_refund_the_provider_declines_is_refused_and_records_nothing(scripted_stripe) -> None:
    partner = await a_partner()
    wallet, payment = await a_stripe_payment(partner)
    error_body = {"type": "invalid_request_error", "code": "charge_already_refunded", "message": "already refunded"}
    scripted_stripe["refund"] = lambda seen: (400, {"error": error_body})
    error = await refused(
        refunds.refund_payment,
        viewer=partner_viewer(partner),
        payment_id=payment.id,
        amount="10.00",
        reason="",
        idempotency_key="r-1",
    )
    assert error.code is ErrorCode.REFUND_REFUSED
    assert "charge_already_refunded" in error.message
    await payment.refresh_from_db()
    assert (payment.status, payment.refunded_amount) == (S.SUCCEEDED, 0)
    assert (await Wallet.get(id=wallet.id)).balance == POINTS


async def test_a_refund_that_fails_at_the_provider_is_refused_with_its_reason(scripted_stripe) -> None:
    partner = await a_partner()
    wallet, payment = await a_stripe_payment(partner)
    scripted_stripe["refund"] = a_refund("failed", failure_reason="expired_or_canceled_card")
    error = await refused(
        refunds.refund_payment,
        viewer=partner_viewer(partner),
        payment_id=payment.id,
        amount=None,
        reason="",
        idempotency_key="r-1",
    )
    assert error.code is ErrorCode.REFUND_REFUSED
    assert error.message == "the provider refused the refund: expired_or_canceled_card"
    assert (await Payment.get(id=payment.id)).refunded_amount == 0
    assert (await Wallet.get(id=wallet.id)).balance == POINTS


async def test_a_refund_the_provider_has_not_finished_is_requested_and_takes_nothing_back_yet(scripted_stripe) -> None:
    partner = await a_partner()
    wallet, payment = await a_stripe_payment(partner)
    scripted_stripe["refund"] = a_refund("pending")
    made, refund = await refunds.refund_payment(
        partner_viewer(partner), payment_id=payment.id, amount="24.95", reason="", idempotency_key="r-1"
    )
    assert (made.status, made.refunded_amount) == (S.SUCCEEDED, 0)
    assert (refund.status, refund.amount, refund.provider_ref) == (RefundStatus.REQUESTED, 2495, "re_1")
    assert refund.next_check_at is not None  # the reconciler asks again
    assert await refund_entries(wallet.id) == []
    [asked] = [r for r in scripted_stripe["fake"].requests if r["path"] == "/v1/refunds"]
    assert asked["form"]["amount"] == "2495" and asked["form"]["payment_intent"] == "pi_paid"
    # What is being refunded cannot be refunded twice.
    error = await refused(
        refunds.refund_payment,
        viewer=partner_viewer(partner),
        payment_id=payment.id,
        amount=f"{PRICE // 100}.{PRICE % 100:02d}",
        reason="",
        idempotency_key="r-2",
    )
    assert (error.code, error.field) == (ErrorCode.INVALID_AMOUNT, "amount")
    assert error.message == f"at most {PRICE - 2495} can still be refunded (2495 more is being refunded)"


def a_refund_state(outcome: Outcome, amount: int = 2495, **extra: Any) -> RefundState:
    return RefundState(amount=amount, outcome=outcome, provider_ref="re_1", **extra)


async def refund_events(partner: Partner) -> list[tuple[str, dict[str, Any]]]:
    rows = await OutboxEvent.filter(partner_id=partner.id, event_type__startswith="refund.").order_by("id")
    return [(row.event_type, row.payload) for row in rows]


async def test_a_requested_refund_taken_back_once_when_the_provider_says_it_is_done(scripted_stripe) -> None:
    partner = await a_partner()
    wallet, payment = await a_stripe_payment(partner)
    scripted_stripe["refund"] = a_refund("pending")
    _, refund = await refunds.refund_payment(
        partner_viewer(partner), payment_id=payment.id, amount=None, reason="", idempotency_key="r-1"
    )
    for _ in range(2):  # told twice (a webhook, then the reconciler): taken back once
        await refunds.apply_states(
            payment, [a_refund_state(Outcome.SUCCEEDED, PRICE)], reason="refund.updated", complete=False
        )
    await refund.refresh_from_db()
    await payment.refresh_from_db()
    assert refund.status is RefundStatus.DONE and refund.next_check_at is None
    assert (payment.status, payment.refunded_amount) == (S.REFUNDED, PRICE)
    assert await refund_entries(wallet.id) == [-POINTS]
    assert [event for event, _ in await refund_events(partner)] == ["refund.succeeded"]


async def test_a_requested_refund_denied_leaves_everything_as_it_was_and_tells_the_partner(scripted_stripe) -> None:
    partner = await a_partner()
    wallet, payment = await a_stripe_payment(partner)
    scripted_stripe["refund"] = a_refund("pending")
    viewer = partner_viewer(partner)
    _, refund = await refunds.refund_payment(
        viewer, payment_id=payment.id, amount=None, reason="", idempotency_key="r-1"
    )
    await refunds.apply_states(
        payment,
        [a_refund_state(Outcome.DECLINED, PRICE, reason="expired_or_canceled_card")],
        reason="refund.failed",
        complete=False,
    )
    await refund.refresh_from_db()
    await payment.refresh_from_db()
    assert (refund.status, refund.failure_reason) == (RefundStatus.FAILED, "expired_or_canceled_card")
    assert (payment.status, payment.refunded_amount, payment.reversed_amount) == (S.SUCCEEDED, 0, 0)
    assert await refund_entries(wallet.id) == []
    assert (await Wallet.get(id=wallet.id)).balance == POINTS
    [(event, payload)] = await refund_events(partner)
    assert (event, payload["refund_id"], payload["was_done"]) == ("refund.failed", refund.id, False)
    # A failed refund holds nothing back: the whole payment can be refunded again.
    scripted_stripe["refund"] = a_refund("succeeded")
    again, _ = await refunds.refund_payment(
        viewer, payment_id=payment.id, amount=None, reason="", idempotency_key="r-2"
    )
    assert (again.status, again.refunded_amount) == (S.REFUNDED, PRICE)


async def test_a_done_refund_that_fails_later_gives_back_what_it_took_once(scripted_stripe) -> None:
    """Stripe: a succeeded refund can still fail (refund.failed), and the money comes back."""
    partner = await a_partner()
    wallet, payment = await a_stripe_payment(partner)
    scripted_stripe["refund"] = a_refund("succeeded")
    made, refund = await refunds.refund_payment(
        partner_viewer(partner), payment_id=payment.id, amount="24.95", reason="", idempotency_key="r-1"
    )
    assert (made.status, made.refunded_amount, refund.status) == (S.PARTIALLY_REFUNDED, 2495, RefundStatus.DONE)
    assert await refund_entries(wallet.id) == [-250]
    for _ in range(2):
        await refunds.apply_states(
            payment,
            [a_refund_state(Outcome.DECLINED, reason="lost_or_stolen_card")],
            reason="refund.failed",
            complete=False,
        )
    await payment.refresh_from_db()
    await refund.refresh_from_db()
    assert refund.status is RefundStatus.FAILED
    assert (payment.status, payment.refunded_amount, payment.reversed_amount) == (S.SUCCEEDED, 0, 0)
    assert (await Wallet.get(id=wallet.id)).balance == POINTS
    entries = await LedgerEntry.filter(wallet_id=wallet.id, cause=LedgerCause.REFUND_FAILED).values_list(
        "amount", flat=True
    )
    assert list(entries) == [250]
    assert [(e, p["was_done"]) for e, p in await refund_events(partner)] == [
        ("refund.succeeded", False),
        ("refund.failed", True),
    ]


async def a_refund_left_unanswered(scripted_stripe: dict[str, Any]) -> tuple[Wallet, Payment]:
    """A partner's Stripe payment whose full refund (key r-1) got no answer: the partner is told to retry."""
    partner = await a_partner()
    wallet, payment = await a_stripe_payment(partner)
    scripted_stripe["refund"] = lambda seen: (500, {"error": {"type": "api_error", "message": "try later"}})
    error = await refused(
        refunds.refund_payment,
        viewer=partner_viewer(partner),
        payment_id=payment.id,
        amount=None,
        reason="",
        idempotency_key="r-1",
    )
    assert error.code is ErrorCode.GATEWAY_UNAVAILABLE
    return wallet, payment


async def test_a_refund_without_an_answer_asks_for_a_retry_and_the_retry_refunds_once(scripted_stripe) -> None:
    wallet, payment = await a_refund_left_unanswered(scripted_stripe)
    viewer = partner_viewer(await Partner.get(id=payment.partner_id))
    assert (await Payment.get(id=payment.id)).refunded_amount == 0
    assert (await Wallet.get(id=wallet.id)).balance == POINTS

    scripted_stripe["refund"] = a_refund("succeeded")
    made, _ = await refunds.refund_payment(viewer, payment_id=payment.id, amount=None, reason="", idempotency_key="r-1")
    assert (made.status, made.refunded_amount) == (S.REFUNDED, PRICE)
    assert await refund_entries(wallet.id) == [-POINTS]
    keys = {r["headers"]["Idempotency-Key"] for r in scripted_stripe["fake"].requests if r["path"] == "/v1/refunds"}
    assert len(keys) == 1  # the retry reached the provider under the same idempotency key


async def test_a_refund_recorded_before_refunds_were_rows_is_not_taken_twice_when_the_provider_lists_it() -> None:
    """A payment refunded before migration 0014 has one DONE refund without the provider's id. When the
    provider later lists that refund (unknown here) and a new one made in its dashboard, only the new
    amount is adopted."""
    wallet, payment = await a_points_payment()
    assert await refunds.record_refund(payment.id, 1000, reason="charge.refunded") is True
    await Refund.filter(payment_id=payment.id).update(key="before-0014")  # as the migration left it
    listed = [
        RefundState(amount=1000, outcome=Outcome.SUCCEEDED, provider_ref="re_old"),
        RefundState(amount=500, outcome=Outcome.SUCCEEDED, provider_ref="re_new"),
    ]
    for _ in range(2):
        await refunds.apply_states(payment, listed, reason="charge.refunded", complete=True)
    await payment.refresh_from_db()
    assert (payment.status, payment.refunded_amount) == (S.PARTIALLY_REFUNDED, 1500)
    assert sorted(await Refund.filter(payment_id=payment.id).values_list("amount", flat=True)) == [500, 1000]
    assert await refund_entries(wallet.id) == [
        -(POINTS * 1000 // PRICE),
        -(POINTS * 1500 // PRICE - POINTS * 1000 // PRICE),
    ]
    # One refund's own news never adopts anything: only a complete list does.
    await refunds.apply_states(
        payment,
        [RefundState(amount=700, outcome=Outcome.SUCCEEDED, provider_ref="re_other")],
        reason="refund.updated",
        complete=False,
    )
    assert (await Payment.get(id=payment.id)).refunded_amount == 1500


def a_listed_refund(refund: Refund, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "re_1",
        "object": "refund",
        "amount": refund.amount,
        "status": status,
        "payment_intent": "pi_paid",
        "metadata": {"whitebill_refund": refund.key},
        **extra,
    }


async def test_the_reconciler_finds_a_pending_refund_done_and_takes_back_once(scripted_stripe) -> None:
    partner = await a_partner()
    wallet, payment = await a_stripe_payment(partner)
    scripted_stripe["refund"] = a_refund("pending")
    _, refund = await refunds.refund_payment(
        partner_viewer(partner), payment_id=payment.id, amount=None, reason="", idempotency_key="r-1"
    )
    assert refund.next_check_at is not None
    assert await refunds.check_due() == 0  # not due yet: the first look is after 5 minutes
    await clock.advance(refunds.CHECKS[0])
    scripted_stripe["refunds"] = [a_listed_refund(refund, "pending")]
    assert await refunds.check_due() == 1
    await refund.refresh_from_db()
    assert refund.status is RefundStatus.REQUESTED
    assert timedelta(0) < refunds.CHECKS[1] - (refund.next_check_at - clock.now()) < timedelta(seconds=5)
    await clock.advance(refunds.CHECKS[1])
    scripted_stripe["refunds"] = [a_listed_refund(refund, "succeeded")]
    assert await refunds.check_due() == 1
    assert await refunds.check_due() == 0  # settled: never asked about again
    await refund.refresh_from_db()
    await payment.refresh_from_db()
    assert (refund.status, refund.next_check_at) == (RefundStatus.DONE, None)
    assert (payment.status, payment.refunded_amount) == (S.REFUNDED, PRICE)
    assert await refund_entries(wallet.id) == [-POINTS]


async def test_a_requested_refund_is_asked_about_on_the_schedule_the_readme_states(scripted_stripe) -> None:
    """5 minutes after the provider's answer, then 15 minutes, 1 and 4 hours after each look, then daily."""
    partner = await a_partner()
    _, payment = await a_stripe_payment(partner)
    scripted_stripe["refund"] = a_refund("pending")
    _, refund = await refunds.refund_payment(
        partner_viewer(partner), payment_id=payment.id, amount=None, reason="", idempotency_key="r-1"
    )
    scripted_stripe["refunds"] = [a_listed_refund(refund, "pending")]
    looked_at, gaps = clock.now(), []
    for _ in range(6):
        await refund.refresh_from_db()
        gaps.append(round((refund.next_check_at - looked_at).total_seconds() / 60))
        await clock.advance(refund.next_check_at - clock.now())
        looked_at = clock.now()
        assert await refunds.check_due() == 1
    assert gaps == [5, 15, 60, 4 * 60, 24 * 60, 24 * 60]


async def test_the_reconciler_asks_again_for_a_refund_left_unanswered_under_the_same_key(scripted_stripe) -> None:
    wallet, payment = await a_refund_left_unanswered(scripted_stripe)
    [refund] = await Refund.filter(payment_id=payment.id)
    assert (refund.status, refund.provider_ref) == (RefundStatus.REQUESTED, None)
    scripted_stripe["refund"] = a_refund("succeeded")
    await clock.advance(refunds.CHECKS[0])
    assert await refunds.check_due() == 1
    await refund.refresh_from_db()
    assert (refund.status, refund.provider_ref) == (RefundStatus.DONE, "re_1")
    assert await refund_entries(wallet.id) == [-POINTS]
    keys = {r["headers"]["Idempotency-Key"] for r in scripted_stripe["fake"].requests if r["path"] == "/v1/refunds"}
    assert keys == {refund.key}


async def test_a_dispute_lost_without_a_webhook_is_found_by_the_reconciler_and_takes_back_once(scripted_stripe) -> None:
    partner = await a_partner()
    wallet, payment = await a_stripe_payment(partner)
    notice = WebhookNotice(event_id="evt_1", event_type="charge.dispute.created", provider_ref="pi_paid", disputed=True)
    config = await GatewayConfig.get(id=payment.gateway_config_id)
    await provider_webhooks.process_notice(config, notice)
    await payment.refresh_from_db()
    assert payment.status is S.DISPUTED
    dispute = {"id": "dp_1", "object": "dispute", "payment_intent": "pi_paid", "created": 1, "status": "under_review"}
    scripted_stripe["disputes"] = [dispute]
    for _ in range(9):  # under review for days: asked once a day, nothing moves
        await clock.advance(refunds.DISPUTE_CHECK)
        assert await refunds.check_disputes_due() == 1
    assert (await Payment.get(id=payment.id)).status is S.DISPUTED
    scripted_stripe["disputes"] = [{**dispute, "status": "lost"}]
    await clock.advance(refunds.DISPUTE_CHECK)
    assert await refunds.check_disputes_due() == 1
    await clock.advance(refunds.DISPUTE_CHECK)
    assert await refunds.check_disputes_due() == 0  # settled: not asked again
    await payment.refresh_from_db()
    assert (payment.status, payment.reversed_amount, payment.next_check_at) == (S.CHARGED_BACK, PRICE, None)
    assert (await Wallet.get(id=wallet.id)).balance == 0
    entries = await LedgerEntry.filter(wallet_id=wallet.id, cause=LedgerCause.CHARGEBACK).values_list(
        "amount", flat=True
    )
    assert list(entries) == [-POINTS]


async def test_a_dispute_won_found_by_the_reconciler_leaves_the_purchase_as_it_was(scripted_stripe) -> None:
    partner = await a_partner()
    wallet, payment = await a_stripe_payment(partner)
    config = await GatewayConfig.get(id=payment.gateway_config_id)
    opened = WebhookNotice(event_id="evt_1", event_type="charge.dispute.created", provider_ref="pi_paid", disputed=True)
    await provider_webhooks.process_notice(config, opened)
    scripted_stripe["disputes"] = [{"id": "dp_1", "object": "dispute", "payment_intent": "pi_paid", "status": "won"}]
    await clock.advance(refunds.DISPUTE_CHECK)
    assert await refunds.check_disputes_due() == 1
    now = await Payment.get(id=payment.id)
    assert (now.status, now.fulfilled_at, now.reversed_amount) == (S.SUCCEEDED, payment.fulfilled_at, 0)
    assert (await Wallet.get(id=wallet.id)).balance == POINTS


async def a_pending_asaas_pix(
    asaas: Any, monkeypatch: pytest.MonkeyPatch, key: str
) -> tuple[Partner, GatewayConfig, ChargeResult]:
    """A partner with an Asaas configuration at the fake, and a PIX charge there that waits to be paid."""
    monkeypatch.setenv("WHITEBILL_ASAAS_API_BASE", asaas.url)
    configure_domain(load_settings())
    partner = await a_partner()
    config = await gateway_configs.configure(
        PLATFORM,
        partner_id=partner.id,
        provider="asaas",
        methods=[PaymentMethodKind.PIX],
        mode=GatewayMode.TEST,
        api_key=asaas.token,
        webhook_secret="asaas-hook-token-0123456789",
    )
    payer = Payer(key="WORKSPACE:1", name="Ana Souza", tax_id="24971563792")
    charged = await gateway_configs.gateway_for(config).charge(
        ChargeRequest(payment_id=1, idempotency_key=key, amount=PRICE, currency="BRL", method="PIX", payer=payer)
    )
    assert charged.outcome is Outcome.PENDING and charged.provider_ref
    return partner, config, charged


async def test_an_asaas_refund_left_unanswered_after_it_was_made_is_recorded_once_on_retry(
    asaas, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real Asaas SDK against the fake Asaas: the refund is made, then the answer is a 500. The
    partner is told to retry; the retry finds the refund made under its key and records it, once."""
    partner, config, charged = await a_pending_asaas_pix(asaas, monkeypatch, "pay_asaas_1")
    await anyio.to_thread.run_sync(lambda: asaas.pay(charged.provider_ref))
    wallet, payment = await a_points_payment(
        partner, gateway_config_id=config.id, provider="asaas", provider_ref=charged.provider_ref
    )
    viewer = partner_viewer(partner)

    await anyio.to_thread.run_sync(
        lambda: asaas.fault("error500", "POST", f"/v3/payments/{charged.provider_ref}/refund", act_first=True)
    )
    error = await refused(
        refunds.refund_payment, viewer=viewer, payment_id=payment.id, amount="10.00", reason="", idempotency_key="r-1"
    )
    assert error.code is ErrorCode.GATEWAY_UNAVAILABLE
    assert (await Payment.get(id=payment.id)).refunded_amount == 0

    made, _ = await refunds.refund_payment(
        viewer, payment_id=payment.id, amount="10.00", reason="", idempotency_key="r-1"
    )
    assert (made.status, made.refunded_amount) == (S.PARTIALLY_REFUNDED, 1000)
    assert await refund_entries(wallet.id) == [-(POINTS * 1000 // PRICE)]
    [at_asaas] = await anyio.to_thread.run_sync(lambda: asaas.payments(external_reference="pay_asaas_1"))
    assert [(r["value"], r["status"]) for r in at_asaas["refunds"]] == [(10.0, "DONE")]


async def test_an_asaas_refund_of_a_payment_asaas_still_waits_for_is_refused(asaas, monkeypatch) -> None:
    partner, config, charged = await a_pending_asaas_pix(asaas, monkeypatch, "pay_asaas_2")
    # whitebill believes it paid (say a forged success was once accepted); Asaas knows better.
    wallet, payment = await a_points_payment(
        partner, gateway_config_id=config.id, provider="asaas", provider_ref=charged.provider_ref
    )
    error = await refused(
        refunds.refund_payment,
        viewer=partner_viewer(partner),
        payment_id=payment.id,
        amount=None,
        reason="",
        idempotency_key="r-1",
    )
    assert error.code is ErrorCode.REFUND_REFUSED
    assert error.message == (
        "the provider refused the refund: Asaas refused the refund: "
        "Não é possível estornar uma cobrança com situação PENDING."
    )
    assert (await Payment.get(id=payment.id)).status is S.SUCCEEDED
    assert (await Wallet.get(id=wallet.id)).balance == POINTS


# ---------------------------------------------------------------- a done refund that fails gives back what it took


async def a_failed_after_done(payment: Payment) -> Refund:
    """The payment's done refund fails after all (Stripe's refund.failed, told for one refund)."""
    [refund] = await Refund.filter(payment_id=payment.id, status=RefundStatus.DONE)
    assert await refunds.settle(refund.id, Outcome.DECLINED, reason="lost_or_stolen_card") is True
    assert await refunds.settle(refund.id, Outcome.DECLINED, reason="told again") is False  # once
    return refund


async def test_a_balance_paid_plan_whose_refund_fails_is_charged_to_the_balance_again_and_renews_again() -> None:
    partner, balance, payment = await a_partner_on_a_balance_paid_plan()
    await refunds.refund_payment(PLATFORM, payment_id=payment.id, amount=None, reason="goodwill", idempotency_key="r-1")
    assert (await Wallet.get(id=balance.id)).balance == BALANCE
    subscription = await current.live_partner_subscription(partner.id)
    assert subscription is not None and subscription.cancel_at_period_end is True
    await a_failed_after_done(payment)
    await payment.refresh_from_db()
    assert (payment.status, payment.refunded_amount, payment.reversed_amount) == (S.SUCCEEDED, 0, 0)
    assert (await Wallet.get(id=balance.id)).balance == BALANCE - PARTNER_PLAN
    failed = await LedgerEntry.filter(wallet_id=balance.id, cause=LedgerCause.REFUND_FAILED).values_list(
        "amount", flat=True
    )
    assert list(failed) == [-PARTNER_PLAN]
    await subscription.refresh_from_db()
    assert subscription.cancel_at_period_end is False  # the plan renews again


async def test_an_add_on_taken_away_by_a_refund_that_fails_comes_back() -> None:
    partner = await a_partner()
    await ending_now(partner)
    workspace = await a_workspace(partner)
    payment, add_on_id = await an_add_on_bought(partner, workspace, quantity=2)
    assert await refunds.record_refund(payment.id, payment.amount, reason="refunded") is True
    row = await WorkspaceAddOn.get(workspace_id=workspace.id, add_on_id=add_on_id)
    assert (row.quantity, row.active) == (0, False)
    await a_failed_after_done(payment)
    await row.refresh_from_db()
    assert (row.quantity, row.active) == (2, True)
    assert (await Payment.get(id=payment.id)).status is S.SUCCEEDED


async def test_a_partial_refund_that_fails_leaves_the_other_refund_taken() -> None:
    wallet, payment = await a_points_payment()
    assert await refunds.record_refund(payment.id, 1000, reason="first") is True
    assert await refunds.record_refund(payment.id, 3000, reason="second") is True
    assert (await Wallet.get(id=wallet.id)).balance == POINTS - POINTS * 3000 // PRICE
    first = await Refund.get(payment_id=payment.id, key="reported-total-1000")
    assert await refunds.settle(first.id, Outcome.DECLINED, reason="failed") is True
    await payment.refresh_from_db()
    assert (payment.status, payment.refunded_amount, payment.reversed_amount) == (S.PARTIALLY_REFUNDED, 2000, 2000)
    assert (await Wallet.get(id=wallet.id)).balance == POINTS - POINTS * 2000 // PRICE


async def test_a_pending_answer_settles_nothing_and_a_dispute_check_of_an_undisputed_payment_stops_asking() -> None:
    _, payment = await a_points_payment()
    assert await refunds.record_refund(payment.id, 1000, reason="first") is True
    [refund] = await Refund.filter(payment_id=payment.id)
    assert await refunds.settle(refund.id, Outcome.PENDING) is False
    await Payment.filter(id=payment.id).update(next_check_at=clock.now())
    await refunds.check_dispute(await Payment.get(id=payment.id))
    assert (await Payment.get(id=payment.id)).next_check_at is None


async def test_a_refund_the_reconciler_asks_for_again_and_the_provider_refuses_fails_quietly(scripted_stripe) -> None:
    wallet, payment = await a_refund_left_unanswered(scripted_stripe)
    error_body = {"type": "invalid_request_error", "code": "charge_disputed", "message": "disputed"}
    scripted_stripe["refund"] = lambda seen: (400, {"error": error_body})
    await clock.advance(refunds.CHECKS[0])
    assert await refunds.check_due() == 1  # no error escapes to the worker
    [refund] = await Refund.filter(payment_id=payment.id)
    assert refund.status is RefundStatus.FAILED and "charge_disputed" in (refund.failure_reason or "")
    assert (await Wallet.get(id=wallet.id)).balance == POINTS
    await clock.advance(timedelta(days=1))
    assert await refunds.check_due() == 0


async def test_a_refund_done_at_the_provider_while_the_payment_is_disputed_is_recorded_and_moves_nothing(
    scripted_stripe,
) -> None:
    partner = await a_partner()
    wallet, payment = await a_stripe_payment(partner)
    scripted_stripe["refund"] = a_refund("pending")
    _, refund = await refunds.refund_payment(
        partner_viewer(partner), payment_id=payment.id, amount=None, reason="", idempotency_key="r-1"
    )
    assert await payments.move(payment.id, S.DISPUTED)
    await refunds.apply_states(
        payment, [a_refund_state(Outcome.SUCCEEDED, PRICE)], reason="refund.updated", complete=False
    )
    await refund.refresh_from_db()
    assert refund.status is RefundStatus.DONE
    assert (await Payment.get(id=payment.id)).status is S.DISPUTED
    assert (await Wallet.get(id=wallet.id)).balance == POINTS  # the dispute decides what is taken back


async def test_an_undone_cash_receipt_takes_back_what_is_left_once_and_only_of_a_paid_payment() -> None:
    wallet, payment = await a_points_payment()
    # A refund first: 99 points went back (500 * 990 // 4990, rounded down).
    await refunds.record_refund(payment.id, 990, reason="partly refunded first")
    assert await refunds.undo_receipt(payment.id, event_id="evt_1", reason="undone") is True
    assert await refunds.undo_receipt(payment.id, event_id="evt_1", reason="undone") is False  # once
    assert await refunds.undo_receipt(payment.id, event_id="evt_2", reason="undone") is False  # nothing left
    await payment.refresh_from_db()
    assert (payment.status, payment.refunded_amount) == (S.REFUNDED, PRICE)
    assert (await Wallet.get(id=wallet.id)).balance == 0
    assert await refunds.paid_after_undo(payment.id, reason="PAYMENT_RECEIVED") is True
    assert await refunds.paid_after_undo(payment.id, reason="PAYMENT_RECEIVED") is False
    await payment.refresh_from_db()
    # Paid after all: the undone receipt gives back its 401 points; the real refund before it stays.
    assert (payment.status, payment.refunded_amount) == (S.PARTIALLY_REFUNDED, 990)
    assert (await Wallet.get(id=wallet.id)).balance == POINTS - 99
    _, unpaid = await a_points_payment()
    await payments.move(unpaid.id, S.REFUNDED, refunded_amount=PRICE)
    assert await refunds.undo_receipt(unpaid.id, event_id="evt_3", reason="undone") is False
