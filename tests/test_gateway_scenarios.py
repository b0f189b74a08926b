"""The gateways issue's acceptance scenarios, end to end: GraphQL on a real server, the real Stripe SDK
against localstripe, the real Asaas SDK against the fake Asaas, webhooks sent by those servers.

- A workspace buys a plan with manual, Stripe card, Asaas card, Asaas boleto and Asaas pix.
- The partner switches from Asaas to Stripe while a boleto is open: the boleto's webhook still settles
  it, once; new charges go to Stripe.
- Every webhook replayed 10 times fulfils once; forged ones change nothing; a timeout then a retry
  charges once.
- A provider's webhook queue never stalls: unrelated events are answered 200 and listed to the partner as
  ignored; a partner that switched Asaas configurations settles the old boletos at either URL; the partner
  is told after 5 failed answers in a row.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from datetime import timedelta

import anyio
import httpx
import pytest
import stripe

from billing.accounts import opening, top_ups
from billing.core import clock
from billing.sales import refunds
from billing.tenants import api_keys
from models.enums import PaymentStatus
from models.operations import OutboxEvent
from models.payments import Payment, Refund
from models.subscriptions import Subscription, SubscriptionHistory, SubscriptionPeriod
from models.wallets import AutoTopUp
from schema.ids import from_global_id, to_global_id
from tests.factories import a_partner, a_workspace, partner_viewer
from tests.fake_asaas.control import APPROVED_CARD
from tests.graphql import GraphQLClient
from tests.shop import CONFIGURE, CREATE_PACKAGE, CREATE_PLAN, buy, workspace_view
from whitebill.settings import load_settings
from whitebill.worker import Worker

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
    # Lost: the chargeback is opened, disputed, lost (Asaas sends no event for the loss): the reconciler
    # finds it 10 days later, and the points of that payment go back.
    await anyio.to_thread.run_sync(lambda: fake.open_chargeback(refs[0]))
    await anyio.to_thread.run_sync(lambda: fake.dispute_chargeback(refs[0]))
    # Won: opened and reversed in the partner's favour: nothing is taken.
    await anyio.to_thread.run_sync(lambda: fake.open_chargeback(refs[1]))
    await anyio.to_thread.run_sync(lambda: fake.resolve_chargeback(refs[1], won=True))
    await anyio.to_thread.run_sync(lambda: fake.wait_deliveries(10))
    await until(lambda: _status_is(refs[0], PaymentStatus.DISPUTED))
    for day in range(1, 11):
        if day == 10:
            await anyio.to_thread.run_sync(lambda: fake.resolve_chargeback(refs[0], won=False))
        await clock.advance(timedelta(days=1))
        await refunds.check_disputes_due()
    assert await points_of(client) == "1000"
    await clock.advance(timedelta(days=1))
    assert await refunds.check_disputes_due() == 0  # settled: asked no more
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


async def _status_is(ref: str, status: PaymentStatus) -> bool:
    return (await Payment.get(provider_ref=ref)).status is status


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


# ------------------------------------------------------------------ a provider's webhook queue never stalls

CONFIGS = """query($p: ID!) { node(id: $p) { ... on Partner { gatewayConfigs { nodes { id provider isActive
  webhookFailures webhookFailing webhookFailingSince cardSavingAvailable cardSavingUnavailableSince
  ignoredProviderEvents(first: 50) { nodes { eventType providerEventId providerPaymentId receivedAt } } } } } } }"""
UNRELATED_KINDS = (
    "TRANSFER_CREATED",
    "TRANSFER_PENDING",
    "TRANSFER_DONE",
    "INVOICE_CREATED",
    "INVOICE_SYNCHRONIZED",
    "INVOICE_AUTHORIZED",
    "ACCOUNT_STATUS_DOCUMENT_APPROVED",
    "ACCOUNT_STATUS_GENERAL_APPROVAL_APPROVED",
    "ACCOUNT_STATUS_BANK_ACCOUNT_INFO_APPROVED",
)


async def configure_asaas(shop, token: str, methods: list[str]) -> tuple[dict, str]:
    """An Asaas configuration with its own webhook token, and the webhook Asaas is told about (its id)."""
    made = await shop["client"].data(
        CONFIGURE, {"provider": "asaas", "methods": methods, "key": shop["asaas"].token, "secret": token}
    )
    assert made["configureGateway"]["errors"] == [], made
    config = made["configureGateway"]["gatewayConfig"]
    webhook = shop["asaas"].add_webhook(shop["server"].url + webhook_path(config), token)
    return config, webhook["id"]


async def configs_seen(shop) -> dict[str, dict]:
    """The partner's gateway configurations as the partner sees them, by id."""
    data = await shop["client"].data(CONFIGS, {"p": to_global_id("Partner", shop["partner"].id)})
    return {c["id"]: c for c in data["node"]["gatewayConfigs"]["nodes"]}


async def in_the_fake(shop, call):
    result = await anyio.to_thread.run_sync(call)
    await anyio.to_thread.run_sync(lambda: shop["asaas"].wait_deliveries(10))
    return result


def deliveries_to(shop, webhook_id: str) -> list[int | None]:
    """The status of every delivery attempt to one webhook, in the order they were made."""
    attempts = [d for record in shop["asaas"].event_log() for d in record["deliveries"] if d["webhook"] == webhook_id]
    return [d["status"] for d in sorted(attempts, key=lambda d: d["at"])]


async def asaas_dashboard_payment(shop) -> str:
    """The partner bills something at Asaas itself, outside whitebill, and its client pays it."""
    fake = shop["asaas"]
    async with httpx.AsyncClient(base_url=fake.url, headers={"access_token": fake.token}) as api:
        customer = (await api.post("/v3/customers", json={"name": "Cliente avulso", "cpfCnpj": CPF})).json()
        due = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 3 * 86400))
        made = await api.post(
            "/v3/payments", json={"customer": customer["id"], "billingType": "PIX", "value": 10.0, "dueDate": due}
        )
        assert made.status_code == 200, made.text
    pay_id = made.json()["id"]
    await in_the_fake(shop, lambda: fake.pay(pay_id))
    return pay_id


async def test_twenty_unrelated_asaas_events_then_a_payment_all_answered_200_through_the_sequential_queue(
    shop,
) -> None:
    """The partner's Asaas account also bills outside whitebill and moves money: transfers, invoices,
    account status and its own payments reach whitebill's webhook first, in Asaas's sequential queue.
    Each is answered 200 and listed to the partner as ignored; the queue never stops, and the boleto paid
    after them delivers the plan, once."""
    config, webhook_id = await configure_asaas(shop, ASAAS_TOKEN, ["BOLETO"])
    client = await a_client(shop)
    boleto = await buy(client, {"planId": shop["plan"]}, method="BOLETO", taxId=CPF)
    assert boleto["payment"]["status"] == "PENDING"
    ref = await provider_ref(boleto["payment"])

    outside = await asaas_dashboard_payment(shop)  # PAYMENT_CREATED and PAYMENT_RECEIVED of no payment of ours
    unrelated = [UNRELATED_KINDS[i % len(UNRELATED_KINDS)] for i in range(18)]
    for kind in unrelated:
        await anyio.to_thread.run_sync(lambda kind=kind: shop["asaas"].emit_event(kind))
    await pay_at_asaas(shop, ref)
    await until(lambda: plan_is_active(client))

    statuses = deliveries_to(shop, webhook_id)
    assert len(statuses) == 1 + 20 + 1 and set(statuses) == {200}, statuses  # our boleto's 2 events, 20 others
    assert all(not record["pending_webhooks"] for record in shop["asaas"].event_log())
    [webhook] = [w for w in shop["asaas"].webhooks() if w["id"] == webhook_id]
    assert webhook["interrupted"] is False and webhook["penalizedRequestsCount"] == 0
    await assert_bought_once(client)

    seen = (await configs_seen(shop))[config["id"]]
    assert seen["webhookFailures"] == 0 and seen["webhookFailing"] is False
    ignored = seen["ignoredProviderEvents"]["nodes"]
    assert sorted(e["eventType"] for e in ignored) == sorted(["PAYMENT_CREATED", "PAYMENT_RECEIVED", *unrelated])
    assert {e["providerPaymentId"] for e in ignored} == {outside, None}
    sent = {e["id"] for e in shop["asaas"].events() if (e.get("payment") or {}).get("id") != ref}
    assert {e["providerEventId"] for e in ignored} == sent
    assert all(e["receivedAt"] for e in ignored)


async def test_a_partner_that_switched_asaas_configurations_settles_the_old_boletos_once_at_either_url(shop) -> None:
    """Two boletos open on the partner's first Asaas configuration; the partner makes a second one (a new
    webhook token and URL). The first boleto's events reach both URLs; the old webhook is then removed at
    Asaas, and the second boleto's events reach only the new URL. Each settles once, every answer is 200,
    and replays at either URL change nothing."""
    old_token, new_token = ASAAS_TOKEN, "asaas-hook-new-" + secrets.token_hex(12)
    old, old_webhook = await configure_asaas(shop, old_token, ["BOLETO"])
    first, second = await a_client(shop), await a_client(shop, "Mercado Azul")
    refs = []
    for client in (first, second):
        boleto = await buy(client, {"planId": shop["plan"]}, method="BOLETO", taxId=CPF)
        assert boleto["payment"]["status"] == "PENDING", boleto
        refs.append(await provider_ref(boleto["payment"]))
    new, new_webhook = await configure_asaas(shop, new_token, ["BOLETO", "PIX"])
    assert (await configs_seen(shop))[new["id"]]["isActive"]

    await pay_at_asaas(shop, refs[0])  # to both URLs
    await until(lambda: plan_is_active(first))
    await anyio.to_thread.run_sync(lambda: shop["asaas"].delete_webhook(old_webhook))
    await pay_at_asaas(shop, refs[1])  # to the new URL only
    await until(lambda: plan_is_active(second))

    assert set(deliveries_to(shop, new_webhook)) == {200} and set(deliveries_to(shop, old_webhook)) == {200}
    assert len(deliveries_to(shop, new_webhook)) == 2  # PAYMENT_RECEIVED of each boleto
    for ref in refs:
        events = shop["asaas"].events(payment_id=ref)
        for config, token in ((old, old_token), (new, new_token)):
            headers = {"asaas-access-token": token}
            for event in events:
                body = json.dumps(event).encode()
                answers = await asyncio.gather(
                    *(post_webhook(shop["server"], webhook_path(config), body, headers) for _ in range(5))
                )
                assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
    await assert_bought_once(first)
    await assert_bought_once(second)
    for ref in refs:
        payment = await Payment.get(provider_ref=ref)
        assert payment.status is PaymentStatus.SUCCEEDED and payment.gateway_config_id == from_global_id(old["id"])[1]
    seen = await configs_seen(shop)
    assert seen[old["id"]]["ignoredProviderEvents"]["nodes"] == []
    assert seen[new["id"]]["ignoredProviderEvents"]["nodes"] == []


async def test_the_partner_is_told_after_five_webhook_failures_in_a_row_and_not_before(shop) -> None:
    """The partner pastes another token at Asaas than the one given to whitebill: every event is refused
    (401, unverified). The fourth failure in a row tells no one; the fifth sends gateway.webhook_failing and
    the configuration shows it; the sixth sends nothing more. Once the token is fixed, the held event is
    answered 200 and the state clears; five new failures tell the partner again."""
    config, webhook_id = await configure_asaas(shop, ASAAS_TOKEN, ["BOLETO"])
    fake = shop["asaas"]
    wrong = "asaas-hook-wrong-" + secrets.token_hex(12)
    await in_the_fake(shop, lambda: fake.update_webhook(webhook_id, authToken=wrong))
    await in_the_fake(shop, lambda: fake.emit_event("TRANSFER_DONE"))

    async def told() -> int:
        return await OutboxEvent.filter(partner_id=shop["partner"].id, event_type="gateway.webhook_failing").count()

    for _ in range(3):
        await in_the_fake(shop, fake.retry_webhooks)
    assert deliveries_to(shop, webhook_id) == [401] * 4
    seen = (await configs_seen(shop))[config["id"]]
    assert (seen["webhookFailures"], seen["webhookFailing"], seen["webhookFailingSince"]) == (4, False, None)
    assert await told() == 0

    await in_the_fake(shop, fake.retry_webhooks)
    seen = (await configs_seen(shop))[config["id"]]
    assert seen["webhookFailures"] == 5 and seen["webhookFailing"] is True and seen["webhookFailingSince"]
    [event] = await OutboxEvent.filter(partner_id=shop["partner"].id, event_type="gateway.webhook_failing")
    assert event.payload["gateway_config_id"] == config["id"] and event.payload["consecutive_failures"] == 5
    assert event.payload["provider"] == "asaas" and event.payload["last_status"] == 401
    await in_the_fake(shop, fake.retry_webhooks)
    assert await told() == 1 and (await configs_seen(shop))[config["id"]]["webhookFailures"] == 6

    await in_the_fake(shop, lambda: fake.update_webhook(webhook_id, authToken=ASAAS_TOKEN))
    assert deliveries_to(shop, webhook_id) == [401] * 6 + [200]
    seen = (await configs_seen(shop))[config["id"]]
    assert (seen["webhookFailures"], seen["webhookFailing"], seen["webhookFailingSince"]) == (0, False, None)
    assert [e["eventType"] for e in seen["ignoredProviderEvents"]["nodes"]] == ["TRANSFER_DONE"]

    await in_the_fake(shop, lambda: fake.update_webhook(webhook_id, authToken=wrong))
    await in_the_fake(shop, lambda: fake.emit_event("INVOICE_CREATED"))
    for _ in range(4):
        await in_the_fake(shop, fake.retry_webhooks)
    assert deliveries_to(shop, webhook_id)[-5:] == [401] * 5
    assert await told() == 2


# ------------------------------------------------------------------ refunds that take time, kept cards in production

REFUND_WITH_STATE = """mutation($payment: ID!, $key: String!) {
  refundPayment(input: {paymentId: $payment, idempotencyKey: $key, reason: "asked"}) {
    payment { status refunded { amount } } refund { status amount { amount } failureReason } errors { code } } }"""


async def told(shop, event_type: str) -> list[dict]:
    rows = await OutboxEvent.filter(partner_id=shop["partner"].id, event_type=event_type).order_by("id")
    return [row.payload for row in rows]


async def test_an_asaas_refund_denied_changes_nothing_and_one_done_takes_back_once(shop) -> None:
    config = await configure(shop, "asaas", ["PIX"])
    client = await a_client(shop)
    bought = await buy(client, {"creditPackageId": shop["package"]}, method="PIX", taxId=CPF)
    ref = await provider_ref(bought["payment"])
    await pay_at_asaas(shop, ref)
    await until(lambda: _points_are(client, "500"))
    fake = shop["asaas"]
    await anyio.to_thread.run_sync(fake.refunds_wait)  # Asaas takes its time with this account's refunds

    asked = await shop["client"].data(REFUND_WITH_STATE, {"payment": bought["payment"]["id"], "key": "r-1"})
    assert asked["refundPayment"]["refund"]["status"] == "REQUESTED", asked
    assert asked["refundPayment"]["payment"]["status"] == "SUCCEEDED"
    await anyio.to_thread.run_sync(lambda: fake.wait_deliveries(10))
    assert await points_of(client) == "500"  # requested: nothing taken yet
    await anyio.to_thread.run_sync(lambda: fake.finish_refund(ref, done=False))  # Asaas denies it
    await anyio.to_thread.run_sync(lambda: fake.wait_deliveries(10))
    await until(lambda: _refunds_are(ref, ["FAILED"]))
    assert await points_of(client) == "500"
    assert [payload["was_done"] for payload in await told(shop, "refund.failed")] == [False]

    again = await shop["client"].data(REFUND_WITH_STATE, {"payment": bought["payment"]["id"], "key": "r-2"})
    assert again["refundPayment"]["refund"]["status"] == "REQUESTED", again
    await anyio.to_thread.run_sync(lambda: fake.finish_refund(ref, done=True))
    await anyio.to_thread.run_sync(lambda: fake.wait_deliveries(10))
    await until(lambda: _points_are(client, "0"))
    await replay_asaas_events(shop, config, ref)  # every event again, ten times: nothing more moves
    assert await points_of(client) == "0"
    assert await _refunds_are(ref, ["FAILED", "DONE"])
    assert len(await told(shop, "refund.succeeded")) == 1
    payment = await Payment.get(provider_ref=ref)
    assert (payment.status, payment.refunded_amount) == (PaymentStatus.REFUNDED, payment.amount)


async def _refunds_are(ref: str, statuses: list[str]) -> bool:
    payment = await Payment.get(provider_ref=ref)
    found = await Refund.filter(payment_id=payment.id).order_by("id").values_list("status", flat=True)
    return [str(status) for status in found] == statuses


async def test_an_asaas_account_without_card_tokenization_sells_keeps_no_card_and_renews_by_link(shop) -> None:
    config = await configure(shop, "asaas", ["CARD"])
    await anyio.to_thread.run_sync(lambda: shop["asaas"].card_tokenization(False))  # production, not approved
    client = await a_client(shop)
    bought = await buy(client, {"planId": shop["plan"]}, method="CARD", taxId=CPF, save=True)
    assert bought["payment"]["status"] == "PENDING" and bought["payment"]["payerAction"]["kind"] == "URL", bought
    await pay_at_asaas(shop, await provider_ref(bought["payment"]), APPROVED_CARD)
    await until(lambda: plan_is_active(client))
    assert (await workspace_view(client))["savedPaymentMethods"] == []  # the checkout went through, no card kept
    seen = (await configs_seen(shop))[config["id"]]
    assert seen["cardSavingAvailable"] is False and seen["cardSavingUnavailableSince"]
    assert len(await told(shop, "gateway.card_saving_unavailable")) == 1
    [not_kept] = await told(shop, "payment.card_not_saved")
    assert not_kept["payer_key"] == f"WORKSPACE:{client['workspace'].id}"

    subscription = await Subscription.get(workspace_id=client["workspace"].id)
    await clock.advance(subscription.current_period_end - clock.now())
    worker = Worker(load_settings())
    for _ in range(5):
        await worker.tick()
    second = await SubscriptionPeriod.get(subscription_id=subscription.id, number=2)
    renewal = await Payment.get(id=second.payment_id)
    assert (renewal.provider, renewal.method.value, renewal.status) == ("asaas", "CARD", PaymentStatus.PENDING)
    link = renewal.payer_action["url"]
    [at_asaas] = shop["asaas"].payments(external_reference=renewal.reference)
    assert link == at_asaas["invoiceUrl"]  # the pay-now link: Asaas's own card page
    pending = await told(shop, "payment.pending")
    assert [p["payer_action"]["url"] for p in pending if p["payment_id"] == renewal.id] == [link]
    await pay_at_asaas(shop, renewal.provider_ref, APPROVED_CARD)
    await until(lambda: _period_paid(second.id))
    assert await Payment.filter(payer_key=f"WORKSPACE:{client['workspace'].id}").count() == 2


async def _period_paid(period_id: int) -> bool:
    return (await SubscriptionPeriod.get(id=period_id)).status.value == "PAID"


async def test_an_auto_top_up_without_a_kept_card_sends_a_link_to_asaas_card_page_and_waits(shop) -> None:
    await configure(shop, "asaas", ["CARD"])
    client = await a_client(shop)
    client["workspace"].tax_id = CPF  # Asaas needs the payer's CPF, as given at an earlier checkout
    await client["workspace"].save(update_fields=["tax_id"])
    wallet = await opening.workspace_wallet(client["workspace"], "POINTS")
    package_id = from_global_id(shop["package"])[1]
    await top_ups.configure(
        partner_viewer(shop["partner"]), wallet_id=wallet.id, package_id=package_id, threshold=100, enabled=True
    )
    worker = Worker(load_settings())
    for _ in range(3):
        await worker.tick()  # below the threshold from the start: one top-up, asked by link
    [top_up] = await Payment.filter(payer_key=f"WORKSPACE:{client['workspace'].id}")
    assert (top_up.provider, top_up.method.value, top_up.status) == ("asaas", "CARD", PaymentStatus.PENDING)
    [at_asaas] = shop["asaas"].payments(external_reference=top_up.reference)
    assert top_up.payer_action["url"] == at_asaas["invoiceUrl"]
    assert [p["payment_id"] for p in await told(shop, "payment.pending")] == [top_up.id]
    assert (await AutoTopUp.get(wallet_id=wallet.id)).in_flight_payment_id == top_up.id  # it waits
    await pay_at_asaas(shop, top_up.provider_ref, APPROVED_CARD)
    await until(lambda: _points_are(client, "500"))
    rule = await AutoTopUp.get(wallet_id=wallet.id)
    assert rule.in_flight_payment_id is None and rule.failures == 0


async def at_asaas(shop, method: str, path: str, **body: object) -> dict:
    """What the partner does in its Asaas account (dashboard or API), outside whitebill."""
    fake = shop["asaas"]
    async with httpx.AsyncClient(base_url=fake.url, headers={"access_token": fake.token}) as asaas_api:
        answer = await asaas_api.request(method, path, json=body or None)
    assert answer.status_code == 200, answer.text
    await anyio.to_thread.run_sync(lambda: fake.wait_deliveries(10))
    return answer.json()


async def test_a_cash_receipt_undone_takes_back_once_and_paying_after_all_gives_back_once(shop) -> None:
    config = await configure(shop, "asaas", ["BOLETO"])
    client = await a_client(shop)
    bought = await buy(client, {"creditPackageId": shop["package"]}, method="BOLETO", taxId=CPF)
    ref = await provider_ref(bought["payment"])
    # The payer paid the partner in cash; the partner records it at Asaas, then finds it was a mistake.
    await at_asaas(shop, "POST", f"/v3/payments/{ref}/receiveInCash", paymentDate="2026-12-01", value=50.0)
    await until(lambda: _points_are(client, "500"))
    undone = await at_asaas(shop, "POST", f"/v3/payments/{ref}/undoReceivedInCash")
    assert undone["status"] == "PENDING"
    await until(lambda: _points_are(client, "0"))
    payment = await Payment.get(provider_ref=ref)
    assert (payment.status, payment.refunded_amount) == (PaymentStatus.REFUNDED, payment.amount)
    assert [p["reason"] for p in await told(shop, "refund.succeeded")] == [
        "cash receipt undone at the provider (PAYMENT_RECEIVED_IN_CASH_UNDONE)"
    ]
    # The boleto is open again and the payer pays it at the bank after all.
    await pay_at_asaas(shop, ref)
    await until(lambda: _points_are(client, "500"))
    payment = await Payment.get(provider_ref=ref)
    assert (payment.status, payment.refunded_amount) == (PaymentStatus.SUCCEEDED, 0)
    assert [p["was_done"] for p in await told(shop, "refund.failed")] == [True]
    await replay_asaas_events(shop, config, ref)  # every event again, ten times: nothing more moves
    assert await points_of(client) == "500"
    assert await _refunds_are(ref, ["FAILED"])


async def test_a_boleto_removed_then_restored_at_asaas_and_paid_delivers_once(shop) -> None:
    config = await configure(shop, "asaas", ["BOLETO"])
    client = await a_client(shop)
    bought = await buy(client, {"creditPackageId": shop["package"]}, method="BOLETO", taxId=CPF)
    ref = await provider_ref(bought["payment"])
    await at_asaas(shop, "DELETE", f"/v3/payments/{ref}")
    await until(lambda: _status_is(ref, PaymentStatus.DECLINED))
    restored = await at_asaas(shop, "POST", f"/v3/payments/{ref}/restore")
    assert restored["deleted"] is False
    await pay_at_asaas(shop, ref)
    await until(lambda: _points_are(client, "500"))
    # A paid charge cannot be removed at Asaas; an event saying so changes nothing here either.
    removed = await post_webhook(
        shop["server"],
        webhook_path(config),
        json.dumps(
            {"id": "evt_removed", "event": "PAYMENT_DELETED", "payment": restored | {"status": "RECEIVED"}}
        ).encode(),
        {"asaas-access-token": ASAAS_TOKEN},
    )
    assert removed.status_code == 200
    await replay_asaas_events(shop, config, ref)
    assert await points_of(client) == "500"
    assert await _status_is(ref, PaymentStatus.SUCCEEDED)
