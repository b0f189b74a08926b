"""Flow B (UChat, credit billing on) end to end through GraphQL, with the manual gateway and with Stripe:
buy 500 points, activate an add-on costing 200 a month (300 left); the first renewal leaves 100; the
second is short: auto top-up buys the configured package and the add-on renews. With auto top-up off
instead, the add-on lapses and the workspace pauses, its members above the reduced limit."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import anyio
import pytest

from billing.core import clock
from billing.subscriptions import credit_billing, workspace_status
from billing.tenants import api_keys
from models.operations import OutboxEvent
from models.payments import Payment
from models.subscriptions import WorkspaceAddOn
from models.wallets import LedgerEntry, Wallet
from schema.ids import to_global_id
from tests.factories import a_partner, a_workspace
from tests.graphql import GraphQLClient
from tests.shop import CHECKOUT, CONFIGURE
from whitebill.settings import load_settings
from whitebill.worker import Worker

pytestmark = pytest.mark.usefixtures("database")

SETUP = """mutation {
  setCreditBilling(input: {enabled: true}) { partner { creditBillingEnabled } errors { code } }
  free: createPlan(input: {name: "Free", interval: MONTHLY, priceAmount: "0", priceCurrency: "BRL",
                           limits: [{name: "members", value: 5}]}) { plan { id } errors { code } }
  addOn: createAddOn(input: {name: "5 more members", limitDeltas: [{name: "members", value: 5}],
                             priceAmount: "0", priceCurrency: "BRL", pointsCost: 200}) { addOn { id } errors { code } }
  points: createCreditPackage(input: {name: "500 points", unit: "POINTS", quantity: 500, priceAmount: "50.00",
                                      priceCurrency: "BRL"}) { creditPackage { id } errors { code } }
  topUp: createCreditPackage(input: {name: "300 points", unit: "POINTS", quantity: 300, priceAmount: "30.00",
                                     priceCurrency: "BRL"}) { creditPackage { id } errors { code } }
}"""
ASSIGN = """mutation($ws: ID!, $plan: ID!) {
  assignPlan(input: {workspaceId: $ws, planId: $plan, idempotencyKey: "a1"}) {
  errors { code } } }"""
BUY_ADD_ON = """mutation($ws: ID!, $addOn: ID!, $key: String!) {
  buyAddOnWithPoints(input: {workspaceId: $ws, addOnId: $addOn, idempotencyKey: $key}) {
    workspace { limits { name value } } errors { code message } } }"""
USAGE = """mutation($ws: ID!) { reportUsage(input: {workspaceId: $ws, metric: "members", value: 8}) {
  workspace { status } errors { code } } }"""
WALLET = """query($ws: ID!) { node(id: $ws) { ... on Workspace { status limits { name value }
  wallets { id unit balance { amount } autoTopUp { threshold { amount } enabled inFlight failures } } } } }"""
AUTO_TOP_UP = """mutation($wallet: ID!, $package: ID!, $enabled: Boolean!) {
  setAutoTopUp(input: {walletId: $wallet, packageId: $package, threshold: "50", enabled: $enabled}) {
    wallet { autoTopUp { enabled } } errors { code message } } }"""
ADD_ONS = """query($ws: ID!) { node(id: $ws) { ... on Workspace {
  addOns { nodes { addOn { name } quantity active pointsPerPeriod { amount unit } paidThrough nextChargeAt } } } } }"""
ADD_ON_STATES = """query($ws: ID!) { node(id: $ws) { ... on Workspace {
  addOns { nodes { quantity state lapsedAt paidThrough nextChargeAt } } } } }"""
GRANT_POINTS = """mutation($ws: ID!) { grantUnits(input: {workspaceId: $ws, unit: "POINTS", amount: "500",
  idempotencyKey: "g1"}) { errors { code } } }"""
SET_ADD_ON = """mutation($ws: ID!, $addOn: ID!, $quantity: Int!) {
  setWorkspaceAddOn(input: {workspaceId: $ws, addOnId: $addOn, quantity: $quantity, force: true}) {
  errors { code } } }"""
RECORD = """mutation($p: ID!) { recordPayment(input: {paymentId: $p, note: "pix", idempotencyKey: "r1"}) {
  errors { code } } }"""
VISA = "4242424242424242"


async def view(flow) -> dict:
    return (await flow["client"].data(WALLET, {"ws": flow["ws"]}))["node"]


async def points(flow) -> int:
    wallets = (await view(flow))["wallets"]
    return int(next((w["balance"]["amount"] for w in wallets if w["unit"] == "POINTS"), "0"))


async def members_limit(flow) -> int:
    return next(limit["value"] for limit in (await view(flow))["limits"] if limit["name"] == "members")


async def next_renewal(flow) -> None:
    """Move the clock to the add-on's paid-through time and let a worker do what is due."""
    row = await WorkspaceAddOn.get(workspace_id=flow["workspace"].id)
    await clock.advance(row.paid_through - clock.now())
    worker = Worker(load_settings())
    while await worker.tick():
        pass


async def start_flow(server, localstripe, gateway: str, *, auto_top_up: bool) -> dict:
    partner = await a_partner()
    workspace = await a_workspace(partner, name="Loja da Ana")
    client = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    product = GraphQLClient(server.url, (await api_keys.create_key(partner_id=None, name="product")).secret)
    made = await client.data(SETUP)
    assert made["setCreditBilling"]["partner"]["creditBillingEnabled"] is True
    flow = {
        "client": client,
        "workspace": workspace,
        "ws": to_global_id("Workspace", workspace.id),
        "add_on": made["addOn"]["addOn"]["id"],
        "points": made["points"]["creditPackage"]["id"],
        "top_up": made["topUp"]["creditPackage"]["id"],
    }
    assert (await client.data(ASSIGN, {"ws": flow["ws"], "plan": made["free"]["plan"]["id"]}))["assignPlan"][
        "errors"
    ] == []
    # Buy 500 points: recorded by hand, or a Stripe card saved for later.
    if gateway == "manual":
        bought = await client.data(
            CHECKOUT,
            {"ws": flow["ws"], "item": {"creditPackageId": flow["points"]}, "method": "MANUAL", "key": "p1"},
        )
        assert await points(flow) == 0  # nothing before the payment is recorded
        await client.data(RECORD, {"p": bought["checkout"]["payment"]["id"]})
    else:
        await client.data(
            CONFIGURE, {"provider": "stripe", "methods": ["CARD"], "key": "sk_test_flowb", "secret": "whsec_flowb"}
        )
        card = await anyio.to_thread.run_sync(lambda: localstripe.create_card(VISA))
        bought = await client.data(
            CHECKOUT,
            {
                "ws": flow["ws"],
                "item": {"creditPackageId": flow["points"]},
                "method": "CARD",
                "key": "p1",
                "card": card,
                "save": True,
            },
        )
        assert bought["checkout"]["payment"]["status"] == "SUCCEEDED", bought
    assert await points(flow) == 500

    activated = await client.data(BUY_ADD_ON, {"ws": flow["ws"], "addOn": flow["add_on"], "key": "a1"})
    assert activated["buyAddOnWithPoints"]["errors"] == []
    assert await points(flow) == 300 and await members_limit(flow) == 10
    held = (await client.data(ADD_ONS, {"ws": flow["ws"]}))["node"]["addOns"]["nodes"]
    paid_through = (await WorkspaceAddOn.get(workspace_id=workspace.id)).paid_through
    assert held == [
        {
            "addOn": {"name": "5 more members"},
            "quantity": 1,
            "active": True,
            "pointsPerPeriod": {"amount": "200", "unit": "POINTS"},
            "paidThrough": paid_through.isoformat(),
            "nextChargeAt": paid_through.isoformat(),
        }
    ]
    assert (await product.data(USAGE, {"ws": flow["ws"]}))["reportUsage"]["workspace"]["status"] == "ACTIVE"
    wallet = next(w for w in (await view(flow))["wallets"] if w["unit"] == "POINTS")
    set_up = await client.data(AUTO_TOP_UP, {"wallet": wallet["id"], "package": flow["top_up"], "enabled": auto_top_up})
    assert set_up["setAutoTopUp"]["errors"] == [], set_up

    await next_renewal(flow)
    assert await points(flow) == 100  # the first renewal
    return flow


@pytest.mark.parametrize("gateway", ["manual", "stripe"])
async def test_a_short_renewal_is_topped_up_automatically_and_renews(server, localstripe, gateway: str) -> None:
    flow = await start_flow(server, localstripe, gateway, auto_top_up=True)
    await next_renewal(flow)  # 100 < 200: buys 300 first, then spends 200
    assert await points(flow) == 200
    assert await members_limit(flow) == 10 and (await view(flow))["status"] == "ACTIVE"
    top_ups = await Payment.filter(payer_key=f"WORKSPACE:{flow['workspace'].id}", note__startswith="auto top-up")
    assert len(top_ups) == 1 and top_ups[0].status.value == "SUCCEEDED"
    assert top_ups[0].provider == gateway and top_ups[0].amount == 3000
    wallet = await Wallet.get(workspace_id=flow["workspace"].id, unit="POINTS")
    entries = await LedgerEntry.filter(wallet_id=wallet.id).order_by("id")
    assert [(e.cause.value, e.amount) for e in entries] == [
        ("PURCHASE", 500),
        ("ADD_ON", -200),
        ("ADD_ON", -200),
        ("PURCHASE", 300),
        ("ADD_ON", -200),
    ]
    assert sum(e.amount for e in entries) == wallet.balance
    slot = (await view(flow))["wallets"][0]["autoTopUp"]
    assert slot["inFlight"] is False and slot["failures"] == 0


@pytest.mark.parametrize("gateway", ["manual", "stripe"])
async def test_without_auto_top_up_the_add_on_lapses_and_the_workspace_pauses(server, localstripe, gateway) -> None:
    flow = await start_flow(server, localstripe, gateway, auto_top_up=False)
    await next_renewal(flow)
    assert await points(flow) == 100  # nothing spent, nothing bought
    assert await members_limit(flow) == 5
    assert (await view(flow))["status"] == "PAUSED"  # 8 members on a limit of 5
    lapsed = (await flow["client"].data(ADD_ONS, {"ws": flow["ws"]}))["node"]["addOns"]["nodes"]
    assert [(a["addOn"]["name"], a["quantity"], a["active"]) for a in lapsed] == [("5 more members", 0, False)]
    assert not await Payment.filter(note__startswith="auto top-up").exists()
    # Lapsed, not removed: the state says so, and when; it was paid up to the renewal, and nothing more
    # will be charged.
    (lapse,) = (await flow["client"].data(ADD_ON_STATES, {"ws": flow["ws"]}))["node"]["addOns"]["nodes"]
    due = datetime.fromisoformat(lapse["paidThrough"])
    assert lapse["state"] == "LAPSED" and due <= datetime.fromisoformat(lapse["lapsedAt"]) <= clock.now()
    assert lapse["nextChargeAt"] is None
    # Held again (set by the partner), then removed: ACTIVE, then REMOVED, neither with a lapse date.
    # Set by hand it is not paid in points: no points period, no charge to come.
    for quantity, state in ((1, "ACTIVE"), (0, "REMOVED")):
        made = await flow["client"].data(SET_ADD_ON, {"ws": flow["ws"], "addOn": flow["add_on"], "quantity": quantity})
        assert made["setWorkspaceAddOn"]["errors"] == [], made
        (held,) = (await flow["client"].data(ADD_ON_STATES, {"ws": flow["ws"]}))["node"]["addOns"]["nodes"]
        assert held == {
            "quantity": quantity,
            "state": state,
            "lapsedAt": None,
            "paidThrough": None,
            "nextChargeAt": None,
        }


async def test_a_lapsed_add_on_bought_again_with_points_is_active_and_renews(server, localstripe) -> None:
    """Lapsed at the second renewal (100 points for 200); 500 points granted, bought again: ACTIVE, no
    lapse date, its next charge a month on; that renewal spends its 200."""
    flow = await start_flow(server, localstripe, "manual", auto_top_up=False)
    await next_renewal(flow)
    (lapse,) = (await flow["client"].data(ADD_ON_STATES, {"ws": flow["ws"]}))["node"]["addOns"]["nodes"]
    assert lapse["state"] == "LAPSED"
    assert (await flow["client"].data(GRANT_POINTS, {"ws": flow["ws"]}))["grantUnits"]["errors"] == []
    again = await flow["client"].data(BUY_ADD_ON, {"ws": flow["ws"], "addOn": flow["add_on"], "key": "a2"})
    assert again["buyAddOnWithPoints"]["errors"] == []
    assert await points(flow) == 400 and await members_limit(flow) == 10
    (held,) = (await flow["client"].data(ADD_ON_STATES, {"ws": flow["ws"]}))["node"]["addOns"]["nodes"]
    next_charge = datetime.fromisoformat(held["nextChargeAt"])
    assert (held["state"], held["lapsedAt"], held["quantity"]) == ("ACTIVE", None, 1)
    assert held["paidThrough"] == held["nextChargeAt"] and next_charge > clock.now() + timedelta(days=27)
    await next_renewal(flow)
    assert await points(flow) == 200
    (renewed,) = (await flow["client"].data(ADD_ON_STATES, {"ws": flow["ws"]}))["node"]["addOns"]["nodes"]
    assert (renewed["state"], renewed["lapsedAt"]) == ("ACTIVE", None)
    assert datetime.fromisoformat(renewed["nextChargeAt"]) > next_charge


async def test_an_add_on_set_by_hand_after_its_lapse_has_no_points_charge_to_come(server, localstripe) -> None:
    """The partner gives a lapsed add-on back by hand: it is held, not paid in points (no paid period,
    no next charge), and the worker, a month and more later, neither charges nor lapses it."""
    flow = await start_flow(server, localstripe, "manual", auto_top_up=False)
    await next_renewal(flow)
    assert (await points(flow)) == 100
    made = await flow["client"].data(SET_ADD_ON, {"ws": flow["ws"], "addOn": flow["add_on"], "quantity": 1})
    assert made["setWorkspaceAddOn"]["errors"] == []
    await clock.advance(timedelta(days=40))
    worker = Worker(load_settings())
    while await worker.tick():
        pass
    assert await points(flow) == 100 and await members_limit(flow) == 10
    (held,) = (await flow["client"].data(ADD_ON_STATES, {"ws": flow["ws"]}))["node"]["addOns"]["nodes"]
    assert held == {"quantity": 1, "state": "ACTIVE", "lapsedAt": None, "paidThrough": None, "nextChargeAt": None}


async def test_an_add_on_needs_credit_billing_and_enough_points(server) -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    client = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    made = await client.data(
        SETUP.replace("setCreditBilling(input: {enabled: true})", "setCreditBilling(input: {enabled: false})")
    )
    ws = to_global_id("Workspace", workspace.id)
    await client.data(ASSIGN, {"ws": ws, "plan": made["free"]["plan"]["id"]})
    off = await client.data(BUY_ADD_ON, {"ws": ws, "addOn": made["addOn"]["addOn"]["id"], "key": str(uuid.uuid4())})
    assert off["buyAddOnWithPoints"]["errors"][0]["code"] == "CREDIT_BILLING_OFF"
    await client.data("mutation { setCreditBilling(input: {enabled: true}) { errors { code } } }")
    short = await client.data(BUY_ADD_ON, {"ws": ws, "addOn": made["addOn"]["addOn"]["id"], "key": str(uuid.uuid4())})
    assert short["buyAddOnWithPoints"]["errors"][0]["code"] == "INSUFFICIENT_BALANCE"


async def test_an_add_on_lapse_commits_with_its_event_and_the_status_it_leaves(
    server, localstripe, monkeypatch
) -> None:
    """A worker that stops between the lapse and the status it leaves (here: the status update fails)
    commits nothing; the retried job lapses the add-on, tells the partner and pauses the workspace."""
    flow = await start_flow(server, localstripe, "manual", auto_top_up=False)
    row = await WorkspaceAddOn.get(workspace_id=flow["workspace"].id)
    await clock.advance(row.paid_through - clock.now())

    async def stopped(workspace_id: int) -> None:
        raise RuntimeError("worker stopped")

    monkeypatch.setattr(workspace_status, "recompute", stopped)
    with pytest.raises(RuntimeError):
        await credit_billing.renew(row)
    still = await WorkspaceAddOn.get(id=row.id)
    assert still.active and still.quantity == 1  # nothing of the lapse was kept
    assert not await OutboxEvent.filter(event_type="add_on.lapsed").exists()
    monkeypatch.undo()

    assert (await credit_billing.renew_job({"workspace_add_on_id": row.id, "due": row.paid_through.isoformat()})) == {
        "renewed": False
    }
    assert await OutboxEvent.filter(event_type="add_on.lapsed").count() == 1
    assert (await view(flow))["status"] == "PAUSED"
