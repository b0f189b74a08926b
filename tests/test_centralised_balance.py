"""Flow D's centralised balance: the partner tops it up through the platform's gateway (Stripe here),
and each client plan it sells costs it the platform price, not its own: at sign-up (PLAN) and at
every renewal (RENEWAL). A balance too low holds nothing back: the deduction waits, the partner is
told, and it goes through once the balance allows. The monthly CSVs agree with the ledger."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import anyio
import httpx
import pytest

from billing.accounts import wallets
from billing.catalog import plans
from billing.core import clock
from billing.core.money import Money
from billing.sales import purchases
from billing.subscriptions import lifecycle
from billing.tenants import api_keys
from models.enums import BillingInterval, MarginKind, OwnerKind, PeriodStatus
from models.operations import OutboxEvent
from models.subscriptions import SubscriptionPeriod
from models.tenancy import Partner
from models.wallets import LedgerEntry, PlatformDeduction, Wallet
from schema.ids import to_global_id
from tests.factories import PLATFORM, a_partner, a_workspace, partner_viewer
from tests.graphql import GraphQLClient
from tests.shop import CONFIGURE
from whitebill.settings import load_settings
from whitebill.worker import Worker

pytestmark = pytest.mark.usefixtures("database")

TOP_UP = """mutation($amount: String!, $card: String, $key: String!) {
  topUpPartnerBalance(input: {amount: $amount, method: CARD, cardToken: $card, idempotencyKey: $key}) {
    payment { status amount { amount currency } } errors { code message } } }"""
VISA = "4242424242424242"


async def run_worker() -> None:
    worker = Worker(load_settings())
    while await worker.tick():
        pass


async def central(partner: Partner) -> Wallet:
    return await Wallet.get(owner_key=f"PARTNER:{partner.id}", unit="BRL")


async def an_aisensy_partner() -> Partner:
    partner = await a_partner("AiSensy")
    partner.default_currency = "BRL"
    await partner.save(update_fields=["default_currency"])
    return partner


async def a_family_plan(partner: Partner):
    """Basic Monthly at R$ 100.00 from the platform; the partner sells it with 20 % on top."""
    family = await plans.create_plan_family(PLATFORM, name=f"Basic {partner.id}")
    plan = await plans.create_plan(
        PLATFORM,
        name=f"Basic Monthly {partner.id}",
        interval=BillingInterval.MONTHLY,
        price=Money(100_00, "BRL"),
        limits={"members": 5},
        family_id=family.id,
    )
    await plans.set_margin(partner_viewer(partner), kind=MarginKind.PERCENTAGE, value=Decimal(20), family_id=family.id)
    return plan


async def test_top_up_through_the_platform_gateway_then_sign_up_and_renewal_cost_the_platform_price(
    server, localstripe
) -> None:
    partner = await an_aisensy_partner()
    platform = GraphQLClient(server.url, (await api_keys.create_key(partner_id=None, name="ops")).secret)
    agency = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    configured = await platform.data(
        CONFIGURE, {"provider": "stripe", "methods": ["CARD"], "key": "sk_test_platform", "secret": "whsec_platform"}
    )
    assert configured["configureGateway"]["errors"] == []
    card = await anyio.to_thread.run_sync(lambda: localstripe.create_card(VISA))
    paid = (await agency.data(TOP_UP, {"amount": "500.00", "card": card, "key": "t1"}))["topUpPartnerBalance"]
    assert paid == {"payment": {"status": "SUCCEEDED", "amount": {"amount": "500.00", "currency": "BRL"}}, "errors": []}
    again = (await agency.data(TOP_UP, {"amount": "500.00", "card": card, "key": "t1"}))["topUpPartnerBalance"]
    assert again["payment"]["status"] == "SUCCEEDED"
    assert (await central(partner)).balance == 500_00, "a retried top-up credits once"

    plan = await a_family_plan(partner)
    workspace = await a_workspace(partner, "Loja")
    viewer = partner_viewer(partner)
    subscription = await lifecycle.assign_plan(
        viewer, workspace_id=workspace.id, plan_id=plan.id, note="paid by pix", idempotency_key="a1"
    )
    assert subscription.price_amount == 120_00  # what the client pays
    assert (await central(partner)).balance == 400_00  # what the partner pays: the platform price

    # The renewal: the client pays R$ 120.00 again; the partner's balance gives R$ 100.00 again.
    await clock.advance(subscription.current_period_end - clock.now() + timedelta(minutes=1))
    await run_worker()
    due = await SubscriptionPeriod.get(subscription_id=subscription.id, status=PeriodStatus.DUE)
    await purchases.record_payment(viewer, payment_id=due.payment_id, note="pix", idempotency_key="r1")
    assert (await central(partner)).balance == 300_00

    deductions = await PlatformDeduction.filter(partner_id=partner.id).order_by("id")
    assert [(d.kind, d.amount, d.debited_at is not None) for d in deductions] == [
        ("PLAN", 100_00, True),
        ("RENEWAL", 100_00, True),
    ]
    entries = {e.posting_id: e.amount for e in await LedgerEntry.filter(wallet_id=(await central(partner)).id)}
    for deduction in deductions:
        assert entries[deduction.posting_id] == -deduction.amount

    # The monthly CSVs agree with the ledger to the cent.
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for report, kind in (("plan-deductions", "PLAN"), ("renewal-deductions", "RENEWAL")):
            month = next(d for d in deductions if d.kind == kind).created_at.strftime("%Y-%m")
            answer = await http.get(
                f"/reports/{report}.csv", params={"month": month}, headers={"Authorization": f"Bearer {agency.token}"}
            )
            assert answer.status_code == 200, answer.text
            rows = list(csv.DictReader(io.StringIO(answer.text)))
            assert [(r["amount"], r["status"]) for r in rows] == [("100.00", "DEBITED")]
            posting = int(rows[0]["posting_id"])
            assert Decimal(rows[0]["amount"]) * 100 == -entries[posting]
        other = await http.get(
            "/reports/plan-deductions.csv",
            params={"month": "2026-01", "partnerId": to_global_id("Partner", partner.id + 1000)},
            headers={"Authorization": f"Bearer {agency.token}"},
        )
        assert other.status_code == 404


async def test_a_short_balance_holds_nothing_back_and_the_deduction_waits() -> None:
    partner = await an_aisensy_partner()
    plan = await a_family_plan(partner)
    workspace = await a_workspace(partner, "Loja")
    viewer = partner_viewer(partner)
    await lifecycle.assign_plan(viewer, workspace_id=workspace.id, plan_id=plan.id, note="", idempotency_key="a")
    # The client has its plan; the partner owes the platform R$ 100.00 and is told.
    pending = await PlatformDeduction.get(partner_id=partner.id)
    assert pending.debited_at is None and pending.amount == 100_00
    assert await OutboxEvent.filter(partner_id=partner.id, event_type="partner.balance_insufficient").count() == 1
    await wallets.grant_partner_balance(
        PLATFORM, partner_id=partner.id, currency="BRL", amount=150_00, note="", idempotency_key="fund"
    )
    await run_worker()
    assert (await PlatformDeduction.get(id=pending.id)).debited_at is None, "retried hourly, not at once"
    await clock.advance(timedelta(hours=1, minutes=1))
    await run_worker()
    done = await PlatformDeduction.get(id=pending.id)
    assert done.debited_at is not None and done.posting_id is not None
    wallet = await Wallet.get(owner_key=f"PARTNER:{partner.id}", owner_kind=OwnerKind.PARTNER)
    assert wallet.balance == 50_00
    await run_worker()
    assert (await Wallet.get(id=wallet.id)).balance == 50_00, "debited once"
