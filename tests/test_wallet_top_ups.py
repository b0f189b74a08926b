"""Balances under load and top-ups: concurrent renewals and spends never pass the credit limit and
the ledger always sums to the balance; a top-up retried with its key credits once; auto top-up keeps
one in flight per wallet, charges once per crossing, backs off after a decline and tells the partner;
low-balance notices fire once per crossing."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from billing.accounts import opening, top_ups, wallets
from billing.accounts.ledger import CausedBy
from billing.charges import charging, gateway_configs
from billing.core import clock
from billing.core.errors import BillingError
from billing.subscriptions import credit_billing
from billing.tenants import api_keys
from gateways.base import SavedMethod
from models.catalog import AddOn, CreditPackage
from models.enums import GatewayMode, LedgerCause, PaymentMethodKind, PaymentStatus
from models.operations import OutboxEvent
from models.payments import Payment
from models.subscriptions import WorkspaceAddOn
from models.wallets import AutoTopUp, LedgerEntry, Wallet
from schema.ids import to_global_id
from tests.factories import a_partner, a_workspace, partner_viewer
from tests.graphql import GraphQLClient
from whitebill.settings import load_settings
from whitebill.worker import Worker

pytestmark = pytest.mark.usefixtures("database")


async def ledger_sums_to_balance(wallet_id: int) -> Wallet:
    wallet = await Wallet.get(id=wallet_id)
    entries = await LedgerEntry.filter(wallet_id=wallet_id).values_list("amount", flat=True)
    assert sum(entries) == wallet.balance
    assert wallet.balance >= -wallet.credit_limit
    return wallet


async def points_shop(card: str | None = "tok_ok", *, threshold: int = 100):
    """A partner selling 300 points for 30.00 through LedgerPay; a workspace with a card on file."""
    partner = await a_partner()
    viewer = partner_viewer(partner)
    workspace = await a_workspace(partner)
    config = await gateway_configs.configure(
        viewer,
        partner_id=partner.id,
        provider="ledgerpay",
        methods=[PaymentMethodKind.CARD],
        mode=GatewayMode.TEST,
        api_key="lp_key_0000000000",
        webhook_secret="lp_secret_000000",
    )
    if card:
        await charging.keep_saved_method(
            config_id=config.id,
            partner_id=partner.id,
            payer_key=f"WORKSPACE:{workspace.id}",
            saved=SavedMethod(card, "CARD", "ledgercard", "0000"),
        )
    package = await CreditPackage.create(
        partner_id=partner.id, name="300 points", unit="POINTS", quantity=300, price_amount=3000, currency="BRL"
    )
    wallet = await opening.workspace_wallet(workspace, "POINTS")
    return partner, workspace, wallet, package


async def test_100_concurrent_renewals_and_spends_never_pass_the_credit_limit(backend) -> None:
    partner = await a_partner()
    partner.credit_billing_enabled = True
    await partner.save()
    workspace = await a_workspace(partner)
    wallet = await opening.workspace_wallet(workspace, "POINTS")
    await wallets.adjust_workspace_balance(
        partner_viewer(partner), workspace_id=workspace.id, unit="POINTS", amount=1000, note="", idempotency_key="g"
    )
    await wallets.set_credit_limit(partner_viewer(partner), wallet_id=wallet.id, credit_limit=150)
    due = clock.now()
    rows = []
    for i in range(50):
        add_on = await AddOn.create(
            partner_id=partner.id, name=f"Add-on {i}", limit_deltas={"bots": 1}, currency="BRL", points_cost=30
        )
        rows.append(
            await WorkspaceAddOn.create(
                partner_id=partner.id, workspace_id=workspace.id, add_on_id=add_on.id, quantity=1, paid_through=due
            )
        )

    async def spend() -> bool:
        try:
            await wallets.spend(wallet.id, 25, cause=LedgerCause.USAGE, caused_by=CausedBy("Test", "spend"))
        except BillingError:
            return False
        return True

    outcomes = await asyncio.gather(*(credit_billing.renew(r) for r in rows), *(spend() for _ in range(50)))
    renewed, spent = sum(outcomes[:50]), sum(outcomes[50:])
    final = await ledger_sums_to_balance(wallet.id)
    assert final.balance == 1000 - 30 * renewed - 25 * spent
    assert final.balance >= -150 and final.balance < -150 + 30  # what fitted was taken, nothing more
    lapsed = await WorkspaceAddOn.filter(workspace_id=workspace.id, active=False).count()
    assert lapsed == 50 - renewed
    # Renewing the same period again (a second worker, a retried job) spends nothing more.
    stale = [await WorkspaceAddOn.get(id=r.id) for r in rows[:5]]
    for row in stale:
        row.paid_through = due  # as a second worker that read the row before it was renewed
    await asyncio.gather(*(credit_billing.renew(row) for row in stale))
    assert (await ledger_sums_to_balance(wallet.id)).balance == final.balance


async def test_a_top_up_retried_with_its_key_credits_once(server) -> None:
    partner, workspace, wallet, package = await points_shop()
    client = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    query = """mutation($w: ID!, $p: ID!) { topUpWallet(input: {walletId: $w, packageId: $p, idempotencyKey: "t1"}) {
      payment { id status } errors { code } } }"""
    variables = {"w": to_global_id("Wallet", wallet.id), "p": to_global_id("CreditPackage", package.id)}
    answers = await asyncio.gather(*(client.execute(query, variables) for _ in range(5)))
    answers.append(await client.execute(query, variables))
    paid = {a["data"]["topUpWallet"]["payment"]["id"] for a in answers if a["data"]["topUpWallet"]["payment"]}
    assert len(paid) == 1
    assert (await ledger_sums_to_balance(wallet.id)).balance == 300
    assert await Payment.filter(payer_key=f"WORKSPACE:{workspace.id}").count() == 1


async def test_auto_top_up_keeps_one_in_flight_and_charges_once_per_crossing(ledgerpay) -> None:
    import whitebill_ledgerpay

    partner, workspace, wallet, package = await points_shop("tok_pending")
    await top_ups.configure(
        partner_viewer(partner), wallet_id=wallet.id, package_id=package.id, threshold=100, enabled=True
    )
    worker = Worker(load_settings())
    for _ in range(3):  # three spends below the threshold: one top-up
        await wallets.adjust_workspace_balance(
            partner_viewer(partner),
            workspace_id=workspace.id,
            unit="POINTS",
            amount=10,
            note="",
            idempotency_key=str(uuid.uuid4()),
        )
        await worker.tick()
    top_up = await Payment.get(payer_key=f"WORKSPACE:{workspace.id}")
    assert top_up.status is PaymentStatus.PENDING  # the card needs the payer: it stays in flight
    assert (await AutoTopUp.get(wallet_id=wallet.id)).in_flight_payment_id == top_up.id
    await wallets.spend(wallet.id, 5, cause=LedgerCause.USAGE)
    assert await Payment.filter(payer_key=f"WORKSPACE:{workspace.id}").count() == 1

    whitebill_ledgerpay.settle(top_up.provider_ref)  # paid at the provider; the reconciler finds out
    await clock.advance(top_up.next_check_at - clock.now())
    await worker.tick()
    assert (await ledger_sums_to_balance(wallet.id)).balance == 325
    rule = await AutoTopUp.get(wallet_id=wallet.id)
    assert rule.in_flight_payment_id is None and rule.failures == 0
    assert await OutboxEvent.filter(event_type="wallet.topped_up").count() == 1


async def test_a_declined_auto_top_up_backs_off_and_tells_the_partner(ledgerpay) -> None:
    partner, workspace, wallet, package = await points_shop("tok_decline")
    await top_ups.configure(
        partner_viewer(partner), wallet_id=wallet.id, package_id=package.id, threshold=100, enabled=True
    )
    worker = Worker(load_settings())
    await worker.tick()  # configuring below the threshold starts one at once
    assert await Payment.filter(status=PaymentStatus.DECLINED).count() == 1
    rule = await AutoTopUp.get(wallet_id=wallet.id)
    assert rule.failures == 1 and rule.retry_after is not None and rule.in_flight_payment_id is None
    assert await OutboxEvent.filter(event_type="wallet.top_up_failed", partner_id=partner.id).count() == 1
    await wallets.spend(wallet.id, 1, cause=LedgerCause.USAGE) if (await Wallet.get(id=wallet.id)).balance else None
    await top_ups.watch(wallet.id)
    await worker.tick()
    assert await Payment.filter(payer_key=f"WORKSPACE:{workspace.id}").count() == 1  # backing off
    await clock.advance(rule.retry_after - clock.now())
    await top_ups.watch(wallet.id)
    await worker.tick()
    assert await Payment.filter(payer_key=f"WORKSPACE:{workspace.id}").count() == 2
    assert (await AutoTopUp.get(wallet_id=wallet.id)).failures == 2


async def test_a_low_balance_notice_fires_once_per_crossing() -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    viewer = partner_viewer(partner)
    wallet = await opening.workspace_wallet(workspace, "POINTS")
    await wallets.adjust_workspace_balance(
        viewer, workspace_id=workspace.id, unit="POINTS", amount=500, note="", idempotency_key="g1"
    )
    await top_ups.set_low_balance_threshold(viewer, wallet_id=wallet.id, threshold=100)
    for _ in range(3):
        await wallets.spend(wallet.id, 150, cause=LedgerCause.USAGE)  # 350, 200, 50: crosses once
    await wallets.spend(wallet.id, 10, cause=LedgerCause.USAGE)
    assert await OutboxEvent.filter(event_type="wallet.low_balance").count() == 1
    await wallets.adjust_workspace_balance(
        viewer, workspace_id=workspace.id, unit="POINTS", amount=500, note="", idempotency_key="g2"
    )
    await wallets.spend(wallet.id, 500, cause=LedgerCause.USAGE)  # back below: a second crossing
    assert await OutboxEvent.filter(event_type="wallet.low_balance").count() == 2


LOW_BALANCE = """mutation($w: ID!, $threshold: String) {
  setLowBalanceThreshold(input: {walletId: $w, threshold: $threshold}) {
    wallet { lowBalanceThreshold { amount unit } } errors { code field } } }"""
THRESHOLD = "query($w: ID!) { node(id: $w) { ... on Wallet { lowBalanceThreshold { amount } } } }"


async def test_the_low_balance_threshold_reads_back_and_null_clears_it(server) -> None:
    partner = await a_partner()
    wallet = await opening.workspace_wallet(await a_workspace(partner), "POINTS")
    client = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    w = to_global_id("Wallet", wallet.id)
    made = (await client.data(LOW_BALANCE, {"w": w, "threshold": "100"}))["setLowBalanceThreshold"]
    assert made == {"wallet": {"lowBalanceThreshold": {"amount": "100", "unit": "POINTS"}}, "errors": []}
    assert (await client.data(THRESHOLD, {"w": w}))["node"]["lowBalanceThreshold"] == {"amount": "100"}
    refused = (await client.data(LOW_BALANCE, {"w": w, "threshold": "1.5"}))["setLowBalanceThreshold"]
    assert refused == {"wallet": None, "errors": [{"code": "INVALID_AMOUNT", "field": "threshold"}]}  # whole points
    cleared = (await client.data(LOW_BALANCE, {"w": w, "threshold": None}))["setLowBalanceThreshold"]
    assert cleared == {"wallet": {"lowBalanceThreshold": None}, "errors": []}
    assert (await client.data(THRESHOLD, {"w": w}))["node"]["lowBalanceThreshold"] is None


async def test_a_new_workspaces_wallet_settings_name_the_wallet_by_unit(server) -> None:
    """A workspace has no wallets until something names one: every wallet setting takes the workspace and
    the unit and opens that wallet, so a frontend can set them up before anything is granted or bought."""
    partner = await a_partner()
    workspace, foreign = await a_workspace(partner), await a_workspace(await a_partner("Other"))
    package = await CreditPackage.create(
        partner_id=partner.id, name="300 points", unit="POINTS", quantity=300, price_amount=3000, currency="BRL"
    )
    client = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    ws = to_global_id("Workspace", workspace.id)
    settings = """mutation($ws: ID!, $p: ID!) {
      low: setLowBalanceThreshold(input: {workspaceId: $ws, unit: "POINTS", threshold: "50"}) {
        wallet { unit lowBalanceThreshold { amount } } errors { code field } }
      auto: setAutoTopUp(input: {workspaceId: $ws, unit: "POINTS", packageId: $p, threshold: "20"}) {
        wallet { unit autoTopUp { threshold { amount } enabled } } errors { code field } }
      credit: setWalletCreditLimit(input: {workspaceId: $ws, unit: "MESSAGE_CREDITS", creditLimit: "100"}) {
        wallet { unit creditLimit { amount } } errors { code field } } }"""
    done = await client.data(settings, {"ws": ws, "p": to_global_id("CreditPackage", package.id)})
    assert done["low"] == {"wallet": {"unit": "POINTS", "lowBalanceThreshold": {"amount": "50"}}, "errors": []}
    assert done["auto"]["wallet"]["autoTopUp"] == {"threshold": {"amount": "20"}, "enabled": True}
    assert done["credit"] == {"wallet": {"unit": "MESSAGE_CREDITS", "creditLimit": {"amount": "100"}}, "errors": []}
    units = await Wallet.filter(workspace_id=workspace.id).order_by("unit").values_list("unit", flat=True)
    assert units == ["MESSAGE_CREDITS", "POINTS"]  # one each, however often named

    threshold = """mutation($input: SetLowBalanceThresholdInput!) { setLowBalanceThreshold(input: $input) {
      wallet { id } errors { code field } } }"""
    wallet_id = to_global_id("Wallet", (await Wallet.get(workspace_id=workspace.id, unit="POINTS")).id)
    for sent, error in (
        ({"workspaceId": ws}, ("INVALID_INPUT", "unit")),
        ({"workspaceId": ws, "walletId": wallet_id, "unit": "POINTS"}, ("INVALID_INPUT", "walletId")),
        ({}, ("INVALID_INPUT", "walletId")),
        ({"workspaceId": to_global_id("Workspace", foreign.id), "unit": "POINTS"}, ("NOT_FOUND", "workspaceId")),
        ({"workspaceId": ws, "unit": "points!"}, ("INVALID_INPUT", "unit")),
    ):
        refused = (await client.data(threshold, {"input": {**sent, "threshold": "5"}}))["setLowBalanceThreshold"]
        assert [(e["code"], e["field"]) for e in refused["errors"]] == [error], sent
    assert not await Wallet.filter(workspace_id=foreign.id).exists()  # another partner's: nothing opened
