"""Gateways as plugins, through GraphQL and a real server: LedgerPay, a provider packaged by a third
party under tests/plugins and installed by the suite, sells plans and points without any core change.
Configuration with write-only credentials, checkout, saved cards, switching provider, webhooks,
refunds and chargebacks, the reconciler."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid

import httpx
import pytest

from billing.charges import reconciler
from billing.core import clock
from billing.sales import refunds
from billing.tenants import api_keys
from gateways import registry
from models.enums import PaymentStatus
from models.payments import GatewayConfig, Payment
from models.subscriptions import Subscription
from models.wallets import LedgerEntry, Wallet
from schema.ids import from_global_id, to_global_id
from tests.factories import a_partner, a_workspace
from tests.graphql import GraphQLClient
from tests.shop import CHECKOUT, CONFIGURE, CREATE_PACKAGE, CREATE_PLAN, POLICY, REFUND, buy, points, workspace_view

pytestmark = pytest.mark.usefixtures("database")

API_KEY = "lp_live_" + "k3y" * 8 + "f00d"
WEBHOOK_SECRET = "whsec_" + secrets.token_hex(16)


def ledgerpay_module():
    import whitebill_ledgerpay  # installed by the ledgerpay fixture, not part of whitebill

    return whitebill_ledgerpay


@pytest.fixture
async def shop(server):
    partner = await a_partner()
    workspace = await a_workspace(partner, name="Padaria Central")
    client = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    made = await client.data(
        CONFIGURE, {"provider": "ledgerpay", "methods": ["CARD"], "key": API_KEY, "secret": WEBHOOK_SECRET}
    )
    assert made["configureGateway"]["errors"] == [], made
    config = made["configureGateway"]["gatewayConfig"]
    plan = await client.data(CREATE_PLAN, {"name": "Pro", "amount": "99.90"})
    package = await client.data(CREATE_PACKAGE)
    return {
        "partner": partner,
        "workspace": workspace,
        "ws": to_global_id("Workspace", workspace.id),
        "client": client,
        "config": config,
        "plan": plan["createPlan"]["plan"]["id"],
        "package": package["createCreditPackage"]["creditPackage"]["id"],
    }


async def webhook(server, config: dict, body: dict, *, secret: str = WEBHOOK_SECRET) -> httpx.Response:
    raw = json.dumps(body).encode()
    config_id = from_global_id(config["id"])[1]
    headers = {"ledgerpay-signature": ledgerpay_module().sign(raw, secret), "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        return await http.post(f"/webhooks/ledgerpay/{config_id}", content=raw, headers=headers)


async def test_a_gateway_from_a_separate_package_sells_a_plan_and_points_without_core_changes(shop) -> None:
    assert "ledgerpay" in registry.available()  # discovered through its entry point only
    config = shop["config"]
    assert config["provider"] == "ledgerpay" and config["methods"] == ["CARD"] and config["isActive"]
    assert config["credentialsHint"] == "…f00d"
    assert config["webhookUrl"].endswith(f"/webhooks/ledgerpay/{from_global_id(config['id'])[1]}")

    bought = await buy(shop, {"planId": shop["plan"]}, card="tok_ok", save=True)
    assert bought["errors"] == []
    assert bought["payment"]["status"] == "SUCCEEDED" and bought["payment"]["provider"] == "ledgerpay"
    assert bought["payment"]["amount"] == {"amount": "99.90", "currency": "BRL"}
    assert bought["subscription"] == {"status": "ACTIVE", "plan": {"name": "Pro"}}

    view = await workspace_view(shop)
    assert [(m["provider"], m["last4"]) for m in view["savedPaymentMethods"]] == [("ledgerpay", "0000")]
    saved = view["savedPaymentMethods"][0]["id"]
    points_bought = await buy(shop, {"creditPackageId": shop["package"]}, saved=saved)
    assert points_bought["payment"]["status"] == "SUCCEEDED", points_bought
    view = await workspace_view(shop)
    assert points(view) == "500"
    assert [p["purpose"] for p in view["payments"]["nodes"]] == ["WALLET_CREDIT", "PLAN_PURCHASE"]  # newest first
    assert len(ledgerpay_module().payments_made()) >= 2


async def test_credentials_are_stored_encrypted_and_only_a_hint_is_ever_shown(shop, server) -> None:
    row = await GatewayConfig.get(id=from_global_id(shop["config"]["id"])[1])
    assert API_KEY.encode() not in bytes(row.credentials_encrypted)
    assert WEBHOOK_SECRET.encode() not in bytes(row.credentials_encrypted)
    listed = await shop["client"].data(
        "query($p: ID!) { node(id: $p) { ... on Partner { gatewayConfigs { nodes { provider credentialsHint } } } } }",
        {"p": to_global_id("Partner", shop["partner"].id)},
    )
    text = json.dumps(listed)
    assert "ledgerpay" in text and API_KEY not in text and WEBHOOK_SECRET not in text
    assert API_KEY not in server.log() and WEBHOOK_SECRET not in server.log()


async def test_a_method_the_partner_does_not_offer_is_refused_and_a_declined_card_delivers_nothing(shop) -> None:
    refused = await buy(shop, {"planId": shop["plan"]}, method="PIX")
    assert refused["errors"][0]["code"] == "METHOD_NOT_ALLOWED" and refused["payment"] is None
    declined = await buy(shop, {"planId": shop["plan"]}, card="tok_decline")
    assert declined["payment"]["status"] == "DECLINED"
    assert declined["payment"]["declineReason"] == "card_declined"
    assert declined["subscription"] is None
    assert (await workspace_view(shop))["subscription"] is None


async def test_a_pending_payment_shows_how_to_pay_and_its_webhook_replayed_ten_times_fulfils_once(shop, server) -> None:
    pending = await buy(shop, {"creditPackageId": shop["package"]}, card="tok_pending")
    payment = pending["payment"]
    assert payment["status"] == "PENDING"
    assert payment["payerAction"]["url"].startswith("https://ledgerpay.example/pay/")
    ref = (await Payment.get(id=from_global_id(payment["id"])[1])).provider_ref
    ledgerpay_module().settle(ref)

    forged = await webhook(
        server, shop["config"], {"id": "evt_x", "type": "payment.paid", "payment": ref}, secret="whsec_guess"
    )
    assert forged.status_code == 401
    assert (await Payment.get(id=from_global_id(payment["id"])[1])).status is PaymentStatus.PENDING

    event = {"id": "evt_paid_1", "type": "payment.paid", "payment": ref}
    answers = await asyncio.gather(*(webhook(server, shop["config"], event) for _ in range(10)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert sum(not a.json()["duplicate"] for a in answers) == 1
    assert points(await workspace_view(shop)) == "500"
    # A new event saying the same thing does not deliver again either.
    again = await webhook(server, shop["config"], {"id": "evt_paid_2", "type": "payment.paid", "payment": ref})
    assert again.status_code == 200
    wallet = await Wallet.get(unit="POINTS", workspace_id=shop["workspace"].id)
    assert wallet.balance == 500
    assert await LedgerEntry.filter(wallet_id=wallet.id).count() == 1


async def test_after_switching_provider_new_checkouts_go_to_the_new_one_and_saved_cards_keep_the_old(shop) -> None:
    first = await buy(shop, {"creditPackageId": shop["package"]}, card="tok_ok", save=True)
    assert first["payment"]["status"] == "SUCCEEDED"
    switched = await shop["client"].data(CONFIGURE, {"provider": "manual", "methods": ["MANUAL"]})
    assert switched["configureGateway"]["gatewayConfig"]["isActive"]
    new = await buy(shop, {"creditPackageId": shop["package"]}, method="MANUAL")
    assert new["payment"]["provider"] == "manual" and new["payment"]["status"] == "PENDING"
    assert new["payment"]["payerAction"]["kind"] == "MANUAL"
    card = await buy(shop, {"creditPackageId": shop["package"]}, card="tok_ok")
    assert card["errors"][0]["code"] == "METHOD_NOT_ALLOWED"  # new cards go nowhere now
    saved = (await workspace_view(shop))["savedPaymentMethods"][0]["id"]
    renewal = await buy(shop, {"creditPackageId": shop["package"]}, saved=saved)
    assert renewal["payment"]["provider"] == "ledgerpay" and renewal["payment"]["status"] == "SUCCEEDED"
    assert points(await workspace_view(shop)) == "1000"


PAYMENTS_PAGE = """query($ws: ID!, $after: String) { node(id: $ws) { ... on Workspace {
  payments(first: 2, after: $after) { nodes { purpose provider } pageInfo { hasNextPage endCursor } } } } }"""
CONFIGS_PAGE = """query($p: ID!, $after: String) { node(id: $p) { ... on Partner {
  gatewayConfigs(first: 1, after: $after) { nodes { provider isActive } pageInfo { hasNextPage endCursor } } } } }"""


async def test_payments_and_gateway_configurations_page_newest_first(shop) -> None:
    await buy(shop, {"planId": shop["plan"]}, card="tok_ok")
    await shop["client"].data(CONFIGURE, {"provider": "manual", "methods": ["MANUAL"]})
    await buy(shop, {"creditPackageId": shop["package"]}, method="MANUAL")
    await buy(shop, {"creditPackageId": shop["package"]}, method="MANUAL")

    newest = (await shop["client"].data(PAYMENTS_PAGE, {"ws": shop["ws"]}))["node"]["payments"]
    assert newest["nodes"] == [{"purpose": "WALLET_CREDIT", "provider": "manual"}] * 2
    assert newest["pageInfo"]["hasNextPage"] is True
    after = newest["pageInfo"]["endCursor"]
    oldest = (await shop["client"].data(PAYMENTS_PAGE, {"ws": shop["ws"], "after": after}))["node"]["payments"]
    assert oldest["nodes"] == [{"purpose": "PLAN_PURCHASE", "provider": "ledgerpay"}]
    assert oldest["pageInfo"]["hasNextPage"] is False

    partner = to_global_id("Partner", shop["partner"].id)
    current = (await shop["client"].data(CONFIGS_PAGE, {"p": partner}))["node"]["gatewayConfigs"]
    assert current["nodes"] == [{"provider": "manual", "isActive": True}] and current["pageInfo"]["hasNextPage"]
    after = current["pageInfo"]["endCursor"]
    earlier = (await shop["client"].data(CONFIGS_PAGE, {"p": partner, "after": after}))["node"]["gatewayConfigs"]
    assert earlier == {
        "nodes": [{"provider": "ledgerpay", "isActive": False}],
        "pageInfo": {"hasNextPage": False, "endCursor": earlier["pageInfo"]["endCursor"]},
    }


async def test_refunds_take_back_points_in_proportion_once_per_key(shop) -> None:
    bought = await buy(shop, {"creditPackageId": shop["package"]}, card="tok_ok")
    payment = bought["payment"]["id"]
    key = str(uuid.uuid4())
    for _ in range(2):  # the same request retried refunds once
        made = await shop["client"].data(REFUND, {"payment": payment, "amount": "10.00", "key": key})
        assert made["refundPayment"]["errors"] == []
        assert made["refundPayment"]["payment"] == {"status": "PARTIALLY_REFUNDED", "refunded": {"amount": "10.00"}}
    assert points(await workspace_view(shop)) == "400"  # 10.00 of 50.00 took back 100 of 500
    rest = await shop["client"].data(REFUND, {"payment": payment, "amount": None, "key": str(uuid.uuid4())})
    assert rest["refundPayment"]["payment"] == {"status": "REFUNDED", "refunded": {"amount": "50.00"}}
    assert points(await workspace_view(shop)) == "0"
    too_much = await shop["client"].data(REFUND, {"payment": payment, "amount": "1.00", "key": str(uuid.uuid4())})
    assert too_much["refundPayment"]["errors"][0]["code"] == "INVALID_PAYMENT_TRANSITION"


async def test_a_refunded_plan_ends_now_or_at_period_end_by_the_partners_policy(shop) -> None:
    bought = await buy(shop, {"planId": shop["plan"]}, card="tok_ok")
    refunded = await shop["client"].data(REFUND, {"payment": bought["payment"]["id"], "key": "r1"})
    assert refunded["refundPayment"]["payment"]["status"] == "REFUNDED"
    view = await workspace_view(shop)
    assert view["subscription"] == {"status": "ACTIVE", "cancelAtPeriodEnd": True, "plan": {"name": "Pro"}}

    other = await a_workspace(shop["partner"], name="Other")
    policy = await shop["client"].data(POLICY, {"policy": "END_NOW"})
    assert policy["setRefundPolicy"]["partner"]["refundPlanPolicy"] == "END_NOW"
    shop = {**shop, "ws": to_global_id("Workspace", other.id)}
    bought = await buy(shop, {"planId": shop["plan"]}, card="tok_ok")
    assert bought["subscription"]["status"] == "ACTIVE"
    await shop["client"].data(REFUND, {"payment": bought["payment"]["id"], "key": "r2"})
    view = await workspace_view(shop)
    assert view["subscription"] is None and view["status"] == "RESTRICTED"


async def test_a_lost_chargeback_takes_back_what_was_bought_with_its_own_ledger_entry(shop, server) -> None:
    bought = await buy(shop, {"creditPackageId": shop["package"]}, card="tok_ok")
    payment = await Payment.get(id=from_global_id(bought["payment"]["id"])[1])
    assert await refunds.record_chargeback(payment.id, reason="chargeback lost")
    assert not await refunds.record_chargeback(payment.id, reason="reported again")
    await payment.refresh_from_db()
    assert payment.status is PaymentStatus.CHARGED_BACK
    wallet = await Wallet.get(unit="POINTS", workspace_id=shop["workspace"].id)
    assert wallet.balance == 0
    causes = [e.cause.value for e in await LedgerEntry.filter(wallet_id=wallet.id).order_by("id")]
    assert causes == ["PURCHASE", "CHARGEBACK"]


async def test_a_charge_cut_off_mid_call_is_found_at_the_provider_not_charged_again(shop) -> None:
    key = str(uuid.uuid4())
    bought = await buy(shop, {"creditPackageId": shop["package"]}, card="tok_ok", key=key)
    payment = await Payment.get(id=from_global_id(bought["payment"]["id"])[1])
    # As if the process died after the provider took the charge and before its answer was stored:
    await Payment.filter(id=payment.id).update(status=PaymentStatus.UNKNOWN, fulfilled_at=None)
    await Wallet.filter(unit="POINTS", workspace_id=shop["workspace"].id).update(balance=0)
    await LedgerEntry.filter(wallet__workspace_id=shop["workspace"].id).delete()
    made_before = len(ledgerpay_module().payments_made())
    # The payer retries with the same key: the provider is asked first, nothing is charged again.
    retried = await buy(shop, {"creditPackageId": shop["package"]}, card="tok_ok", key=key)
    assert retried["payment"]["id"] == bought["payment"]["id"]
    assert len(ledgerpay_module().payments_made()) == made_before


async def test_the_reconciler_settles_a_payment_whose_answer_was_lost(shop) -> None:
    pending = await buy(shop, {"creditPackageId": shop["package"]}, card="tok_pending")
    payment = await Payment.get(id=from_global_id(pending["payment"]["id"])[1])
    assert payment.next_check_at is not None
    ledgerpay_module().settle(payment.provider_ref)
    assert await reconciler.run_due() == 0  # not due yet
    await clock.advance(payment.next_check_at - clock.now())
    assert await reconciler.run_due() == 1
    await payment.refresh_from_db()
    assert payment.status is PaymentStatus.SUCCEEDED and payment.next_check_at is None
    assert points(await workspace_view(shop)) == "500"
    assert await reconciler.run_due() == 0


async def test_the_reconciler_first_looks_five_minutes_after_the_answer_then_backs_off_to_daily(shop) -> None:
    """The schedule the README states: 5 minutes after the charge's answer, then 15 minutes, 1, 4 and 12
    hours after each look, then daily (1 minute is only for a charge whose answer never came)."""
    pending = await buy(shop, {"creditPackageId": shop["package"]}, card="tok_pending")
    payment = await Payment.get(id=from_global_id(pending["payment"]["id"])[1])
    looked_at = payment.updated_at  # when the answer was stored
    gaps = []
    for _ in range(7):
        await payment.refresh_from_db()
        assert payment.status is PaymentStatus.PENDING and payment.next_check_at is not None
        gaps.append(round((payment.next_check_at - looked_at).total_seconds() / 60))  # minutes
        await clock.advance(payment.next_check_at - clock.now())
        looked_at = clock.now()
        assert await reconciler.run_due() == 1
    assert gaps == [5, 15, 60, 4 * 60, 12 * 60, 24 * 60, 24 * 60]


async def test_a_partner_without_a_gateway_sells_by_hand(server) -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    client = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    plan = (await client.data(CREATE_PLAN, {"name": "Basic", "amount": "49.90"}))["createPlan"]["plan"]["id"]
    shop = {"client": client, "ws": to_global_id("Workspace", workspace.id)}
    card = await buy(shop, {"planId": plan}, card="tok_ok")
    assert card["errors"][0]["code"] == "METHOD_NOT_ALLOWED"
    manual = await buy(shop, {"planId": plan}, method="MANUAL")
    assert manual["payment"]["status"] == "PENDING" and manual["payment"]["provider"] == "manual"
    recorded = await client.data(
        'mutation($p: ID!) { recordPayment(input: {paymentId: $p, note: "pix to our account", idempotencyKey: "r1"})'
        " { errors { code } } }",
        {"p": manual["payment"]["id"]},
    )
    assert recorded["recordPayment"]["errors"] == []
    assert await Subscription.filter(workspace_id=workspace.id, status="ACTIVE").count() == 1


async def test_another_partners_saved_card_cannot_be_used(shop, server) -> None:
    await buy(shop, {"creditPackageId": shop["package"]}, card="tok_ok", save=True)
    saved = (await workspace_view(shop))["savedPaymentMethods"][0]["id"]
    other = await a_partner()
    other_ws = await a_workspace(other)
    client = GraphQLClient(server.url, (await api_keys.create_key(partner_id=other.id)).secret)
    made = await client.data(
        CHECKOUT,
        {
            "ws": to_global_id("Workspace", other_ws.id),
            "item": {"creditPackageId": shop["package"]},
            "method": "CARD",
            "key": "k",
            "saved": saved,
        },
    )
    assert made["checkout"]["errors"][0]["code"] == "NOT_FOUND"


async def test_only_the_platform_configures_the_gateway_that_charges_partners(shop, server) -> None:
    refused = await shop["client"].data(
        CONFIGURE,
        {"provider": "ledgerpay", "methods": ["CARD"], "key": API_KEY, "secret": WEBHOOK_SECRET, "partner": None},
    )
    # A partner naming no partner configures its own; the platform's needs the platform.
    assert refused["configureGateway"]["errors"] == []
    platform = GraphQLClient(server.url, (await api_keys.create_key(partner_id=None, name="ops")).secret)
    made = await platform.data(
        CONFIGURE, {"provider": "ledgerpay", "methods": ["CARD"], "key": API_KEY, "secret": WEBHOOK_SECRET}
    )
    assert made["configureGateway"]["errors"] == []
    assert await GatewayConfig.filter(partner_id=None, is_active=True).count() == 1
    wrong = await platform.data(
        CONFIGURE, {"provider": "ledgerpay", "methods": ["PIX"], "key": API_KEY, "secret": WEBHOOK_SECRET}
    )
    assert wrong["configureGateway"]["errors"][0]["code"] == "METHOD_NOT_ALLOWED"
    unknown = await platform.data(
        CONFIGURE, {"provider": "nopay", "methods": ["CARD"], "key": API_KEY, "secret": WEBHOOK_SECRET}
    )
    assert unknown["configureGateway"]["errors"][0]["field"] == "provider"


async def test_renewals_charge_the_saved_card_through_the_configuration_that_saved_it(shop) -> None:
    from models.payments import SavedPaymentMethod
    from models.subscriptions import SubscriptionPeriod
    from whitebill.settings import load_settings
    from whitebill.worker import Worker

    worker = Worker(load_settings())
    bought = await buy(shop, {"planId": shop["plan"]}, card="tok_ok", save=True)
    assert bought["subscription"]["status"] == "ACTIVE"
    # The partner moves to manual collection; the card saved with LedgerPay keeps paying renewals.
    await shop["client"].data(CONFIGURE, {"provider": "manual", "methods": ["MANUAL"]})
    subscription = await Subscription.get(workspace_id=shop["workspace"].id)

    await clock.advance(subscription.current_period_end - clock.now())
    await worker.tick()
    periods = await SubscriptionPeriod.filter(subscription_id=subscription.id).order_by("number")
    assert [p.status.value for p in periods] == ["PAID", "PAID"]
    renewal = await Payment.get(id=periods[1].payment_id)
    assert renewal.provider == "ledgerpay" and renewal.status is PaymentStatus.SUCCEEDED

    # The card starts declining: the renewal fails, is retried on the dunning days, and a new card
    # saved in between pays it.
    await SavedPaymentMethod.filter(payer_key=f"WORKSPACE:{shop['workspace'].id}").update(
        provider_method_ref="tok_decline"
    )
    await subscription.refresh_from_db()
    await clock.advance(subscription.current_period_end - clock.now())
    await worker.tick()
    third = await SubscriptionPeriod.get(subscription_id=subscription.id, number=3)
    assert third.status.value == "DUE"
    assert (await Payment.get(id=third.payment_id)).status is PaymentStatus.DECLINED
    await subscription.refresh_from_db()
    await clock.advance(subscription.next_action_at - clock.now())  # the first retry day
    await worker.tick()
    await subscription.refresh_from_db()
    assert subscription.status.value == "PAST_DUE" and subscription.failed_renewals == 1
    await SavedPaymentMethod.filter(payer_key=f"WORKSPACE:{shop['workspace'].id}").update(provider_method_ref="tok_ok")
    await clock.advance(subscription.next_action_at - clock.now())
    await worker.tick()
    await subscription.refresh_from_db()
    third = await SubscriptionPeriod.get(subscription_id=subscription.id, number=3)
    assert third.status.value == "PAID" and subscription.status.value == "ACTIVE"
    paid = await Payment.filter(purpose_kind="SUBSCRIPTION_PERIOD", status=PaymentStatus.SUCCEEDED).count()
    assert paid == 2  # periods 2 and 3, each once


async def test_an_add_on_bought_at_checkout_raises_the_limits_once_paid(shop) -> None:
    made = await shop["client"].data(
        """mutation { createAddOn(input: {name: "Extra seats", limitDeltas: [{name: "members", value: 3}],
           priceAmount: "15.00", priceCurrency: "BRL"}) { addOn { id } errors { code } } }"""
    )
    add_on = made["createAddOn"]["addOn"]["id"]
    await buy(shop, {"planId": shop["plan"]}, card="tok_ok")
    bought = await buy(shop, {"addOnId": add_on, "quantity": 2}, card="tok_ok")
    assert bought["payment"]["status"] == "SUCCEEDED"
    assert bought["payment"]["amount"]["amount"] == "30.00"
    limits = await shop["client"].data(
        "query($ws: ID!) { node(id: $ws) { ... on Workspace { limits { name value } } } }", {"ws": shop["ws"]}
    )
    assert {"name": "members", "value": 16} in limits["node"]["limits"]  # 10 + 2 x 3


async def test_a_new_card_saved_replaces_the_old_one_for_later_charges(shop) -> None:
    before = len([p for p in ledgerpay_module().payments_made() if p["card"] == "tok_new_card"])
    await buy(shop, {"creditPackageId": shop["package"]}, card="tok_ok", save=True)
    first = (await workspace_view(shop))["savedPaymentMethods"]
    await buy(shop, {"creditPackageId": shop["package"]}, card="tok_new_card", save=True)
    second = (await workspace_view(shop))["savedPaymentMethods"]
    assert len(first) == len(second) == 1 and first[0]["id"] != second[0]["id"]
    stale = await buy(shop, {"creditPackageId": shop["package"]}, saved=first[0]["id"])
    assert stale["errors"][0]["code"] == "NOT_FOUND"
    again = await buy(shop, {"creditPackageId": shop["package"]}, saved=second[0]["id"])
    assert again["payment"]["status"] == "SUCCEEDED"
    charged = [p for p in ledgerpay_module().payments_made() if p["card"] == "tok_new_card"]
    assert len(charged) == before + 2
