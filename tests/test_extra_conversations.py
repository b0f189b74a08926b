"""Extra conversations (flow E, LiveChat360) and credit expiry, through GraphQL: the partner buys
extras in bulk from the platform and hands them out; a client's plan allowance is spent first and
expires with its period, while unused extras roll over; each expiry has its own ledger entry."""

from __future__ import annotations

from datetime import timedelta

import pytest

from billing.core import clock
from billing.tenants import api_keys
from models.subscriptions import Subscription
from models.wallets import LedgerEntry, Wallet
from schema.ids import to_global_id
from tests.factories import a_partner, a_workspace
from tests.graphql import GraphQLClient
from whitebill.settings import load_settings
from whitebill.worker import Worker

pytestmark = pytest.mark.usefixtures("database")

PACKAGE = """mutation { createCreditPackage(input: {name: "1000 conversations", unit: "CONVERSATIONS", quantity: 1000,
  priceAmount: "100.00", priceCurrency: "BRL"}) { creditPackage { id } errors { code } } }"""
BUY_BULK = """mutation($p: ID!) { buyPlatformPackage(input: {packageId: $p, method: MANUAL, quantity: 2,
  idempotencyKey: "bulk-1"}) { payment { id status amount { amount } } errors { code message } } }"""
RECORD = """mutation($p: ID!) { recordPayment(input: {paymentId: $p, note: "wire", idempotencyKey: "r1"}) {
  errors { code } } }"""
PLAN = """mutation { createPlan(input: {name: "Chat", interval: MONTHLY, priceAmount: "0", priceCurrency: "BRL",
  limits: [{name: "agents", value: 3}], includedUnits: [{name: "CONVERSATIONS", value: 100}],
  includedUnitsExpire: true}) { plan { id } errors { code } } }"""
ASSIGN = """mutation($ws: ID!, $plan: ID!) { assignPlan(input: {workspaceId: $ws, planId: $plan, idempotencyKey: "a"}) {
  errors { code } } }"""
TRANSFER = """mutation($ws: ID!, $amount: String!, $key: String!) {
  transferUnits(input: {workspaceId: $ws, unit: "CONVERSATIONS", amount: $amount, toWorkspace: true,
                        idempotencyKey: $key, note: "extras"}) {
    pool { balance { amount } } workspaceWallet { balance { amount } } errors { code } } }"""
CONSUME = """mutation($ws: ID!, $amount: String!, $event: String!) {
  consumeUnits(input: {workspaceId: $ws, unit: "CONVERSATIONS", amount: $amount, eventId: $event}) {
    balance { amount } errors { code } } }"""
WALLET = """query($ws: ID!) { node(id: $ws) { ... on Workspace { wallets { unit balance { amount }
  expiringCredits { nodes { amount { amount } remaining { amount } expiresAt } } } } } }"""


async def conversations(client: GraphQLClient, ws: str) -> dict:
    wallets = (await client.data(WALLET, {"ws": ws}))["node"]["wallets"]
    wallet = next(w for w in wallets if w["unit"] == "CONVERSATIONS")
    return {
        "balance": int(wallet["balance"]["amount"]),
        "expiring": [int(c["remaining"]["amount"]) for c in wallet["expiringCredits"]["nodes"]],
    }


async def test_the_allowance_is_spent_first_and_expires_while_extras_roll_over(server) -> None:
    platform = GraphQLClient(server.url, (await api_keys.create_key(partner_id=None, name="ops")).secret)
    product = GraphQLClient(server.url, (await api_keys.create_key(partner_id=None, name="product")).secret)
    partner = await a_partner()
    workspace = await a_workspace(partner, name="Clínica Sorriso")
    client = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    ws = to_global_id("Workspace", workspace.id)

    package = (await platform.data(PACKAGE))["createCreditPackage"]["creditPackage"]["id"]
    bought = (await client.data(BUY_BULK, {"p": package}))["buyPlatformPackage"]
    assert bought["errors"] == [] and bought["payment"]["status"] == "PENDING"
    assert bought["payment"]["amount"]["amount"] == "200.00"
    assert (await platform.data(RECORD, {"p": bought["payment"]["id"]}))["recordPayment"]["errors"] == []

    plan = (await client.data(PLAN))["createPlan"]["plan"]["id"]
    assert (await client.data(ASSIGN, {"ws": ws, "plan": plan}))["assignPlan"]["errors"] == []
    moved = (await client.data(TRANSFER, {"ws": ws, "amount": "300", "key": "t1"}))["transferUnits"]
    assert moved["pool"]["balance"]["amount"] == "1700"
    assert moved["workspaceWallet"]["balance"]["amount"] == "400"
    assert await conversations(client, ws) == {"balance": 400, "expiring": [100]}

    used = await product.data(CONSUME, {"ws": ws, "amount": "60", "event": "conv-1"})
    assert used["consumeUnits"]["balance"]["amount"] == "340"
    await product.data(CONSUME, {"ws": ws, "amount": "60", "event": "conv-1"})  # reported twice: once
    assert await conversations(client, ws) == {"balance": 340, "expiring": [40]}  # the allowance went first

    subscription = await Subscription.get(workspace_id=workspace.id)
    await clock.advance(subscription.current_period_end - clock.now())
    worker = Worker(load_settings())
    while await worker.tick():
        pass
    # 40 of the old allowance expired; the new period brought 100; the 300 extras rolled over.
    assert await conversations(client, ws) == {"balance": 400, "expiring": [100]}

    used = await product.data(CONSUME, {"ws": ws, "amount": "150", "event": "conv-2"})
    assert used["consumeUnits"]["balance"]["amount"] == "250"
    assert await conversations(client, ws) == {"balance": 250, "expiring": []}
    too_many = await product.data(CONSUME, {"ws": ws, "amount": "251", "event": "conv-3"})
    assert too_many["consumeUnits"]["errors"][0]["code"] == "INSUFFICIENT_BALANCE"

    wallet = await Wallet.get(workspace_id=workspace.id, unit="CONVERSATIONS")
    entries = await LedgerEntry.filter(wallet_id=wallet.id).order_by("id")
    assert sum(e.amount for e in entries) == wallet.balance == 250
    assert [e.amount for e in entries if e.cause.value == "EXPIRY"] == [-40]


async def test_granted_and_bought_credits_with_an_expiry_leave_on_time(server) -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    client = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    ws = to_global_id("Workspace", workspace.id)
    # Units are consumed only by a workspace with a plan (without one: PLAN_REQUIRED).
    free = await client.data(
        'mutation { createPlan(input: {name: "Free", interval: MONTHLY, priceAmount: "0", priceCurrency: "BRL",'
        " limits: []}) { plan { id } errors { code } } }"
    )
    plan_id = free["createPlan"]["plan"]["id"]
    assert (await client.data(ASSIGN, {"ws": ws, "plan": plan_id}))["assignPlan"]["errors"] == []
    grant = """mutation($ws: ID!, $amount: String!, $key: String!, $expires: DateTime) {
      grantUnits(input: {workspaceId: $ws, unit: "CONVERSATIONS", amount: $amount, idempotencyKey: $key,
                         expiresAt: $expires}) { errors { code field } } }"""
    soon = (clock.now().replace(microsecond=0)).isoformat()
    refused = await client.data(grant, {"ws": ws, "amount": "10", "key": "g0", "expires": soon})
    assert refused["grantUnits"]["errors"][0]["field"] == "expiresAt"  # not in the past
    in_a_week = (clock.now() + timedelta(days=7)).replace(microsecond=0).isoformat()
    in_a_month = (clock.now() + timedelta(days=30)).replace(microsecond=0).isoformat()
    await client.data(grant, {"ws": ws, "amount": "50", "key": "g1", "expires": in_a_month})
    await client.data(grant, {"ws": ws, "amount": "20", "key": "g2", "expires": in_a_week})
    await client.data(grant, {"ws": ws, "amount": "30", "key": "g3", "expires": None})
    assert await conversations(client, ws) == {"balance": 100, "expiring": [20, 50]}  # earliest first
    product = GraphQLClient(server.url, (await api_keys.create_key(partner_id=None, name="product")).secret)
    await product.data(CONSUME, {"ws": ws, "amount": "25", "event": "e1"})
    assert await conversations(client, ws) == {"balance": 75, "expiring": [45]}  # 20 then 5 of the 50
    await clock.advance(timedelta(days=31))
    worker = Worker(load_settings())
    while await worker.tick():
        pass
    assert await conversations(client, ws) == {"balance": 30, "expiring": []}  # what never expires stays


EXPIRING_PAGE = """query($ws: ID!, $after: String) { node(id: $ws) { ... on Workspace { wallets { unit
  expiringCredits(first: 2, after: $after) { nodes { remaining { amount } } pageInfo { hasNextPage endCursor } }
} } } }"""


async def test_expiring_credits_page_in_spending_order_while_credits_are_spent(server) -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    client = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    ws = to_global_id("Workspace", workspace.id)
    # Units are consumed only by a workspace with a plan (without one: PLAN_REQUIRED).
    free = await client.data(
        'mutation { createPlan(input: {name: "Free", interval: MONTHLY, priceAmount: "0", priceCurrency: "BRL",'
        " limits: []}) { plan { id } errors { code } } }"
    )
    plan_id = free["createPlan"]["plan"]["id"]
    assert (await client.data(ASSIGN, {"ws": ws, "plan": plan_id}))["assignPlan"]["errors"] == []
    grant = """mutation($ws: ID!, $amount: String!, $key: String!, $expires: DateTime) {
      grantUnits(input: {workspaceId: $ws, unit: "CONVERSATIONS", amount: $amount, idempotencyKey: $key,
                         expiresAt: $expires}) { errors { code field } } }"""
    week, fortnight, month = ((clock.now() + timedelta(days=d)).replace(microsecond=0).isoformat() for d in (7, 14, 30))
    for amount, expires in (("10", month), ("20", week), ("30", week), ("40", fortnight)):
        made = await client.data(grant, {"ws": ws, "amount": amount, "key": f"g{amount}", "expires": expires})
        assert made["grantUnits"]["errors"] == []

    async def page(after: str | None) -> dict:
        wallets = (await client.data(EXPIRING_PAGE, {"ws": ws, "after": after}))["node"]["wallets"]
        wallet = next(w for w in wallets if w["unit"] == "CONVERSATIONS")
        credits = wallet["expiringCredits"]
        return {"remaining": [int(c["remaining"]["amount"]) for c in credits["nodes"]], **credits["pageInfo"]}

    first = await page(None)
    assert first["remaining"] == [20, 30] and first["hasNextPage"]  # earliest first; the same expiry, oldest first
    product = GraphQLClient(server.url, (await api_keys.create_key(partner_id=None, name="product")).secret)
    await product.data(CONSUME, {"ws": ws, "amount": "25", "event": "e1"})  # the 20 is gone, 5 of the 30 too
    rest = await page(first["endCursor"])
    assert rest["remaining"] == [40, 10] and not rest["hasNextPage"]  # nothing skipped, nothing repeated
    assert (await page(None))["remaining"] == [25, 40]
