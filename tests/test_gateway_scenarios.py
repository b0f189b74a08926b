"""The gateways issue's acceptance scenarios, end to end: GraphQL on a real server, the real Stripe SDK
against localstripe, the real Asaas SDK against the fake Asaas, webhooks sent by those servers.

- A workspace buys a plan with manual, Stripe card, Asaas card, Asaas boleto and Asaas pix.
- The partner switches from Asaas to Stripe while a boleto is open: the boleto's webhook still settles
  it, once; new charges go to Stripe.
- Every webhook replayed 10 times fulfils once; forged ones change nothing; a timeout then a retry
  charges once.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid

import anyio
import httpx
import pytest
import stripe

from billing.tenants import api_keys
from models.enums import PaymentStatus
from models.payments import Payment
from models.subscriptions import Subscription, SubscriptionHistory, SubscriptionPeriod
from schema.ids import from_global_id, to_global_id
from tests.factories import a_partner, a_workspace
from tests.fake_asaas.control import APPROVED_CARD
from tests.graphql import GraphQLClient
from tests.shop import CONFIGURE, CREATE_PACKAGE, CREATE_PLAN, buy, workspace_view

pytestmark = pytest.mark.usefixtures("database")

CPF = "52998224725"
VISA = "4242424242424242"
STRIPE_KEY = "sk_test_" + secrets.token_hex(12)
STRIPE_SECRET = "whsec_" + secrets.token_hex(16)
ASAAS_TOKEN = "asaas-hook-" + secrets.token_hex(12)  # what Asaas sends in asaas-access-token


async def configure(shop, provider: str, methods: list[str]) -> dict:
    credentials = {
        "stripe": {"key": STRIPE_KEY, "secret": STRIPE_SECRET},
        "asaas": {"key": shop["asaas"].token, "secret": ASAAS_TOKEN},
    }.get(provider, {})
    made = await shop["client"].data(CONFIGURE, {"provider": provider, "methods": methods, **credentials})
    assert made["configureGateway"]["errors"] == [], made
    config = made["configureGateway"]["gatewayConfig"]
    if provider == "asaas":  # Asaas is told where to send its events, and with which token
        shop["asaas"].add_webhook(shop["server"].url + webhook_path(config), ASAAS_TOKEN)
    return config


def webhook_path(config: dict) -> str:
    return f"/webhooks/{config['provider']}/{from_global_id(config['id'])[1]}"


@pytest.fixture
async def shop(server, asaas, localstripe):
    partner = await a_partner()
    client = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    plan = await client.data(CREATE_PLAN, {"name": "Pro", "amount": "99.90"})
    package = await client.data(CREATE_PACKAGE)
    return {
        "partner": partner,
        "client": client,
        "server": server,
        "asaas": asaas,
        "stripe": localstripe,
        "plan": plan["createPlan"]["plan"]["id"],
        "package": package["createCreditPackage"]["creditPackage"]["id"],
    }


async def a_client(shop, name: str = "Padaria Central") -> dict:
    workspace = await a_workspace(shop["partner"], name=name)
    return {**shop, "workspace": workspace, "ws": to_global_id("Workspace", workspace.id)}


async def provider_ref(payment: dict) -> str:
    return (await Payment.get(id=from_global_id(payment["id"])[1])).provider_ref


async def until(condition) -> None:
    """Webhooks arrive on the server's own time: poll what a client would see, for up to 10 s."""
    with anyio.fail_after(10):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.05)


async def plan_is_active(client: dict) -> bool:
    view = await workspace_view(client)
    return bool(view["subscription"]) and view["subscription"]["status"] == "ACTIVE"


async def pay_at_asaas(shop, ref: str, card: str | None = None) -> None:
    """The payer pays at Asaas (hosted page, bank, pix app); Asaas then sends its webhooks."""
    await anyio.to_thread.run_sync(lambda: shop["asaas"].pay(ref, card))
    await anyio.to_thread.run_sync(lambda: shop["asaas"].wait_deliveries(10))


async def post_webhook(server, path: str, body: bytes, headers: dict) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        return await http.post(path, content=body, headers={"content-type": "application/json", **headers})


async def replay_asaas_events(shop, config: dict, ref: str, times: int = 10) -> list[httpx.Response]:
    answers = []
    for event in shop["asaas"].events(payment_id=ref):
        body = json.dumps(event).encode()
        answers += await asyncio.gather(
            *(
                post_webhook(shop["server"], webhook_path(config), body, {"asaas-access-token": ASAAS_TOKEN})
                for _ in range(times)
            )
        )
    return answers


async def assert_bought_once(client: dict) -> None:
    subscription = await Subscription.get(workspace_id=client["workspace"].id)
    assert await SubscriptionPeriod.filter(subscription_id=subscription.id).count() == 1
    assert await SubscriptionHistory.filter(subscription_id=subscription.id).count() == 1
    paid = await Payment.filter(payer_key=f"WORKSPACE:{client['workspace'].id}", fulfilled_at__not_isnull=True)
    assert len(paid) == 1


# ------------------------------------------------------------------ one scenario, five ways to pay


async def test_a_workspace_buys_a_plan_by_hand(shop) -> None:
    await configure(shop, "manual", ["MANUAL"])
    client = await a_client(shop)
    bought = await buy(client, {"planId": shop["plan"]}, method="MANUAL")
    assert bought["payment"]["status"] == "PENDING" and bought["payment"]["payerAction"]["kind"] == "MANUAL"
    recorded = await shop["client"].data(
        'mutation($p: ID!) { recordPayment(input: {paymentId: $p, note: "pix received", idempotencyKey: "r1"})'
        " { errors { code } } }",
        {"p": bought["payment"]["id"]},
    )
    assert recorded["recordPayment"]["errors"] == []
    assert await plan_is_active(client)
    await assert_bought_once(client)


async def test_a_workspace_buys_a_plan_with_a_stripe_card(shop) -> None:
    await configure(shop, "stripe", ["CARD"])
    client = await a_client(shop)
    card = await anyio.to_thread.run_sync(lambda: shop["stripe"].create_card(VISA))  # as Stripe.js would
    bought = await buy(client, {"planId": shop["plan"]}, card=card, save=True)
    assert bought["errors"] == [], bought
    assert bought["payment"]["status"] == "SUCCEEDED" and bought["payment"]["provider"] == "stripe"
    assert bought["subscription"]["status"] == "ACTIVE"
    view = await workspace_view(client)
    assert [(m["provider"], m["last4"]) for m in view["savedPaymentMethods"]] == [("stripe", "4242")]
    await assert_bought_once(client)


@pytest.mark.parametrize("method", ["CARD", "BOLETO", "PIX"])
async def test_a_workspace_buys_a_plan_through_asaas(shop, method: str) -> None:
    config = await configure(shop, "asaas", ["CARD", "BOLETO", "PIX"])
    client = await a_client(shop)
    bought = await buy(client, {"planId": shop["plan"]}, method=method, taxId=CPF, save=True)
    assert bought["errors"] == [], bought
    payment = bought["payment"]
    assert payment["status"] == "PENDING" and payment["provider"] == "asaas"
    action = payment["payerAction"]
    if method == "CARD":  # the payer types the card on Asaas's page, never here
        assert action["kind"] == "URL" and action["url"].startswith(shop["asaas"].url)
    elif method == "BOLETO":
        assert action["kind"] == "BOLETO" and action["boleto_line"] and action["url"]
    else:
        assert action["kind"] == "PIX" and action["pix_payload"] and action["pix_qr_png_base64"]
    assert not await plan_is_active(client)

    ref = await provider_ref(payment)
    await pay_at_asaas(shop, ref, APPROVED_CARD if method == "CARD" else None)
    await until(lambda: plan_is_active(client))
    if method == "CARD":  # the card token Asaas returned is kept for renewals
        view = await workspace_view(client)
        assert [m["provider"] for m in view["savedPaymentMethods"]] == ["asaas"]

    answers = await replay_asaas_events(shop, config, ref)
    assert answers and all(a.status_code == 200 for a in answers), [a.text for a in answers]
    await assert_bought_once(client)


# ------------------------------------------------------------------ switching provider


async def test_after_switching_from_asaas_to_stripe_an_open_boleto_still_settles_once(shop) -> None:
    asaas_config = await configure(shop, "asaas", ["BOLETO", "PIX", "CARD"])
    client = await a_client(shop)
    boleto = await buy(client, {"planId": shop["plan"]}, method="BOLETO", taxId=CPF)
    assert boleto["payment"]["status"] == "PENDING"

    stripe_config = await configure(shop, "stripe", ["CARD"])
    assert stripe_config["isActive"]
    refused = await buy(client, {"creditPackageId": shop["package"]}, method="BOLETO")
    assert refused["errors"][0]["code"] == "METHOD_NOT_ALLOWED"  # new checkouts follow the new provider
    card = await anyio.to_thread.run_sync(lambda: shop["stripe"].create_card(VISA))
    other = await a_client(shop, "Mercado Azul")
    by_card = await buy(other, {"planId": shop["plan"]}, card=card)
    assert by_card["payment"]["provider"] == "stripe" and by_card["payment"]["status"] == "SUCCEEDED"

    ref = await provider_ref(boleto["payment"])
    await pay_at_asaas(shop, ref)  # Asaas reports it to the old configuration's URL
    await until(lambda: plan_is_active(client))
    answers = await replay_asaas_events(shop, asaas_config, ref)
    assert all(a.status_code == 200 for a in answers)
    await assert_bought_once(client)
    payment = await Payment.get(id=from_global_id(boleto["payment"]["id"])[1])
    assert payment.provider == "asaas" and payment.status is PaymentStatus.SUCCEEDED


# ------------------------------------------------------------------ webhooks and faults


async def test_forged_webhooks_change_nothing(shop) -> None:
    asaas_config = await configure(shop, "asaas", ["BOLETO"])
    client = await a_client(shop)
    boleto = await buy(client, {"planId": shop["plan"]}, method="BOLETO", taxId=CPF)
    ref = await provider_ref(boleto["payment"])
    await pay_at_asaas(shop, ref)
    await until(lambda: plan_is_active(client))
    # A forger copies a real event onto another payment and guesses the token or the signature.
    pending = await buy(await a_client(shop, "Other"), {"planId": shop["plan"]}, method="BOLETO", taxId=CPF)
    other_ref = await provider_ref(pending["payment"])
    event = dict(shop["asaas"].events(event="PAYMENT_RECEIVED", payment_id=ref)[0])
    event["id"], event["payment"] = "evt_forged", {**event["payment"], "id": other_ref}
    body = json.dumps(event).encode()
    path = webhook_path(asaas_config)
    for headers in ({"asaas-access-token": "guess"}, {}, {"asaas-access-token": ASAAS_TOKEN + "x"}):
        assert (await post_webhook(shop["server"], path, body, headers)).status_code == 401
    stripe_config = await configure(shop, "stripe", ["CARD"])
    forged = stripe.WebhookSignature.generate_signature_header(body.decode(), "whsec_guess")
    answer = await post_webhook(shop["server"], webhook_path(stripe_config), body, {"stripe-signature": forged})
    assert answer.status_code == 401
    payment = await Payment.get(id=from_global_id(pending["payment"]["id"])[1])
    assert payment.status is PaymentStatus.PENDING and payment.fulfilled_at is None


async def test_a_stripe_event_replayed_ten_times_fulfils_once(shop) -> None:
    config = await configure(shop, "stripe", ["CARD"])
    client = await a_client(shop)
    card = await anyio.to_thread.run_sync(lambda: shop["stripe"].create_card("4000002500003155"))  # needs 3DS
    pending = await buy(client, {"planId": shop["plan"]}, card=card)
    assert pending["payment"]["status"] == "PENDING", pending
    payment = await Payment.get(id=from_global_id(pending["payment"]["id"])[1])
    event = {
        "id": "evt_" + uuid.uuid4().hex,
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": payment.provider_ref,
                "object": "payment_intent",
                "status": "succeeded",
                "amount": payment.amount,
                "currency": "brl",
                "metadata": {"whitebill_reference": payment.reference},
            }
        },
    }
    body = json.dumps(event).encode()
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), STRIPE_SECRET)
    answers = await asyncio.gather(
        *(post_webhook(shop["server"], webhook_path(config), body, {"stripe-signature": header}) for _ in range(10))
    )
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert sum(not a.json()["duplicate"] for a in answers) == 1
    assert await plan_is_active(client)
    await assert_bought_once(client)


@pytest.mark.parametrize(("fault", "seconds"), [("slow", 4.5), ("error500", 0), ("drop", 0), ("malformed", 0)], ids=str)
async def test_a_fault_after_the_provider_acted_then_a_retry_charges_once(shop, fault: str, seconds: float) -> None:
    """Asaas creates the boleto, then answers too late (whitebill gives up after 3 s), with a 500, not
    at all, or with nonsense: the outcome is UNKNOWN. The payer's retry with the same key finds the
    boleto by our reference instead of creating another."""
    await configure(shop, "asaas", ["BOLETO"])
    client = await a_client(shop)
    shop["asaas"].fault(fault, "POST", "/v3/payments", count=1, seconds=seconds, act_first=True)
    key = str(uuid.uuid4())
    first = await buy(client, {"planId": shop["plan"]}, method="BOLETO", taxId=CPF, key=key)
    assert first["payment"]["status"] == "UNKNOWN", first
    assert not await plan_is_active(client)
    retried = await buy(client, {"planId": shop["plan"]}, method="BOLETO", taxId=CPF, key=key)
    assert retried["payment"]["id"] == first["payment"]["id"]
    assert retried["payment"]["status"] == "PENDING" and retried["payment"]["payerAction"]["boleto_line"]
    reference = (await Payment.get(id=from_global_id(first["payment"]["id"])[1])).reference
    assert len(shop["asaas"].payments(external_reference=reference)) == 1
    assert len(shop["asaas"].payments()) == 1
    ref = await provider_ref(retried["payment"])
    await pay_at_asaas(shop, ref)
    await until(lambda: plan_is_active(client))
    await assert_bought_once(client)


# ------------------------------------------------------------------ refunds and chargebacks at the provider


async def points_of(client: dict) -> str:
    view = await workspace_view(client)
    return next((w["balance"]["amount"] for w in view["wallets"] if w["unit"] == "POINTS"), "0")


async def test_asaas_chargebacks_lost_and_won_and_a_refund_take_back_what_was_bought_once(shop) -> None:
    await configure(shop, "asaas", ["CARD", "PIX"])
    client = await a_client(shop)
    refs = []
    for _ in range(3):
        bought = await buy(client, {"creditPackageId": shop["package"]}, method="CARD", taxId=CPF)
        refs.append(await provider_ref(bought["payment"]))
        await pay_at_asaas(shop, refs[-1], APPROVED_CARD)
    await until(lambda: _points_are(client, "1500"))

    fake = shop["asaas"]
    # Lost: the chargeback is opened, disputed, lost: the points of that payment go back.
    await anyio.to_thread.run_sync(lambda: fake.open_chargeback(refs[0]))
    await anyio.to_thread.run_sync(lambda: fake.dispute_chargeback(refs[0]))
    await anyio.to_thread.run_sync(lambda: fake.resolve_chargeback(refs[0], won=False))
    # Won: opened and reversed in the partner's favour: nothing is taken.
    await anyio.to_thread.run_sync(lambda: fake.open_chargeback(refs[1]))
    await anyio.to_thread.run_sync(lambda: fake.resolve_chargeback(refs[1], won=True))
    await anyio.to_thread.run_sync(lambda: fake.wait_deliveries(10))
    await until(lambda: _points_are(client, "1000"))
    statuses = {p.provider_ref: p.status for p in await Payment.filter(provider_ref__in=refs)}
    assert statuses[refs[0]] is PaymentStatus.CHARGED_BACK
    assert statuses[refs[1]] is PaymentStatus.SUCCEEDED

    # A partial refund made at Asaas's dashboard reaches whitebill by webhook.
    async with httpx.AsyncClient(base_url=fake.url, headers={"access_token": fake.token}) as asaas_api:
        refunded = await asaas_api.post(f"/v3/payments/{refs[2]}/refund", json={"value": 10.0})
        assert refunded.status_code == 200, refunded.text
    await anyio.to_thread.run_sync(lambda: fake.wait_deliveries(10))
    await until(lambda: _points_are(client, "900"))
    for ref in refs:  # every event again, ten times: nothing more moves
        config = {
            "provider": "asaas",
            "id": to_global_id("GatewayConfig", (await Payment.get(provider_ref=ref)).gateway_config_id),
        }
        await replay_asaas_events(shop, config, ref)
    assert await points_of(client) == "900"


async def _points_are(client: dict, expected: str) -> bool:
    return await points_of(client) == expected


async def test_a_payer_without_a_tax_id_is_not_charged_and_the_same_key_with_one_goes_through(shop) -> None:
    await configure(shop, "asaas", ["PIX"])
    client = await a_client(shop)
    key = str(uuid.uuid4())
    first = await buy(client, {"planId": shop["plan"]}, method="PIX", key=key)
    assert first["payment"]["status"] == "NOT_ATTEMPTED" and "CPF" in first["payment"]["declineReason"], first
    assert shop["asaas"].payments() == []
    retried = await buy(client, {"planId": shop["plan"]}, method="PIX", key=key, taxId=CPF)
    assert retried["payment"]["id"] == first["payment"]["id"]
    assert retried["payment"]["status"] == "PENDING" and retried["payment"]["payerAction"]["pix_payload"]
    assert len(shop["asaas"].payments()) == 1
