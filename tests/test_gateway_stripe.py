"""The Stripe adapter against localstripe (a fake, stateful Stripe API on 127.0.0.1), plus a few tiny
local servers for what localstripe cannot show: real Stripe's error shapes, 5xx, garbage, silence.

Cards are made the way Stripe.js makes them in a browser: ``POST /v1/payment_methods`` with a test
card number (see ``LocalStripe.create_card``); the adapter only ever sees the ``pm_...`` id.
localstripe declines 4000000000000002 when a card is attached (saved) and 4000000000000341 when it
is charged, and asks 4000002500003155 for 3-D Secure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import pytest
import stripe
from aiohttp import web

from gateways import registry
from gateways.base import (
    ChargeRequest,
    Gateway,
    GatewayConfig,
    Outcome,
    Payer,
    SavedMethod,
    WebhookRejected,
)
from gateways.stripe import StripeGateway, StripeGatewayError
from tests.localstripe_server import LocalStripe, localstripe  # noqa: F401  (the session fixture)

# stripe 16's HTTPXClient hands httpx its form body as ``data=<str>``, which httpx 0.28 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")

API_KEY = f"sk_test_wb{uuid.uuid4().hex}"
WEBHOOK_SECRET = f"whsec_{uuid.uuid4().hex}"
VISA = "4242424242424242"
DECLINED_ON_ATTACH = "4000000000000002"
DECLINED_ON_CHARGE = "4000000000000341"
NEEDS_3DS = "4000002500003155"


def config(api_base: str, **settings: Any) -> GatewayConfig:
    return GatewayConfig(
        credentials={"api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET},
        settings={"api_base": api_base, "timeout_seconds": 5, **settings},
    )


@contextlib.asynccontextmanager
async def a_gateway(api_base: str, **settings: Any) -> AsyncIterator[StripeGateway]:
    gateway = StripeGateway(config(api_base, **settings))
    try:
        yield gateway
    finally:
        await gateway.aclose()


@pytest.fixture
def ls(localstripe: LocalStripe) -> LocalStripe:  # noqa: F811
    localstripe.flush()
    return localstripe


@pytest.fixture
async def gateway(ls: LocalStripe) -> AsyncIterator[StripeGateway]:
    async with a_gateway(ls.url) as gw:
        yield gw


@pytest.fixture
async def payer(gateway: StripeGateway) -> Payer:
    bare = Payer(key=f"WORKSPACE:{uuid.uuid4().int % 10**6}", name="Acme Ltd", email="billing@acme.test")
    ref = await gateway.ensure_customer(bare)
    return Payer(bare.key, bare.name, bare.email, provider_customer_ref=ref)


def a_request(payer: Payer, **kwargs: Any) -> ChargeRequest:
    fields: dict[str, Any] = {
        "payment_id": 7,
        "idempotency_key": f"pay_{uuid.uuid4().hex}",
        "amount": 1250,
        "currency": "EUR",
        "method": "CARD",
        "payer": payer,
        "description": "Plan Pro, March",
    }
    fields.update(kwargs)
    return ChargeRequest(**fields)


# --- the plugin ----------------------------------------------------------------------------------


def test_registered_and_implements_the_protocol() -> None:
    gateway = registry.create("stripe", config("http://127.0.0.1:9"))
    assert isinstance(gateway, StripeGateway) and isinstance(gateway, Gateway)
    caps = gateway.capabilities()
    assert caps.methods == frozenset({"CARD"}) and caps.currencies is None
    assert caps.supports_refunds and caps.supports_saved_methods
    assert API_KEY not in repr(gateway) and WEBHOOK_SECRET not in repr(gateway)


# --- customers and charges against localstripe ---------------------------------------------------


async def test_ensure_customer_creates_then_reuses(gateway: StripeGateway, ls: LocalStripe) -> None:
    payer = Payer(key="WORKSPACE:12", name="Acme Ltd", email="billing@acme.test")
    ref = await gateway.ensure_customer(payer)
    assert ref and ref.startswith("cus_")
    customer = ls.api("GET", f"/v1/customers/{ref}")
    assert (customer["name"], customer["email"]) == ("Acme Ltd", "billing@acme.test")
    assert customer["metadata"] == {"whitebill_payer": "WORKSPACE:12"}
    known = Payer(payer.key, payer.name, payer.email, provider_customer_ref=ref)
    assert await gateway.ensure_customer(known) == ref


async def test_new_card_is_charged_and_saved_then_charged_off_session(
    gateway: StripeGateway, ls: LocalStripe, payer: Payer
) -> None:
    card = ls.create_card(VISA)
    request = a_request(payer, method_token=card, save_method=True)
    result = await gateway.charge(request)

    assert result.outcome is Outcome.SUCCEEDED, result
    assert result.provider_ref and result.provider_ref.startswith("pi_")
    assert result.saved_method == SavedMethod(card, "CARD", "visa", "4242", payer.provider_customer_ref)
    intent = ls.api("GET", f"/v1/payment_intents/{result.provider_ref}")
    assert (intent["amount"], intent["currency"], intent["customer"]) == (1250, "eur", payer.provider_customer_ref)
    assert intent["metadata"] == {"whitebill_reference": request.idempotency_key, "whitebill_payment_id": "7"}
    assert ls.api("GET", f"/v1/payment_methods/{card}")["customer"] == payer.provider_customer_ref  # reusable

    later = await gateway.charge(a_request(payer, saved_method_ref=card, off_session=True, amount=990))
    assert later.outcome is Outcome.SUCCEEDED, later
    assert later.provider_ref not in (None, result.provider_ref)
    assert later.saved_method is None  # nothing new to keep


async def test_a_card_declined_at_charge_is_declined_and_findable(
    gateway: StripeGateway, ls: LocalStripe, payer: Payer
) -> None:
    request = a_request(payer, method_token=ls.create_card(DECLINED_ON_CHARGE))
    result = await gateway.charge(request)
    assert result.outcome is Outcome.DECLINED
    assert result.decline_reason and "card_declined" in result.decline_reason
    assert DECLINED_ON_CHARGE not in result.decline_reason and "0341" not in result.decline_reason

    found = await gateway.find_payment(request.idempotency_key, payer)  # localstripe's error names no intent
    assert found is not None and found.outcome is Outcome.DECLINED
    assert found.provider_ref and found.provider_ref.startswith("pi_")
    assert found.decline_reason and "card_declined" in found.decline_reason


async def test_a_card_declined_when_saved_is_declined(gateway: StripeGateway, ls: LocalStripe, payer: Payer) -> None:
    request = a_request(payer, method_token=ls.create_card(DECLINED_ON_ATTACH), save_method=True)
    result = await gateway.charge(request)
    assert result.outcome is Outcome.DECLINED
    assert result.decline_reason == "card_declined: Your card was declined."
    assert result.saved_method is None
    assert await gateway.find_payment(request.idempotency_key, payer) is None  # refused before any charge


async def test_a_card_that_needs_3ds_is_pending_with_what_the_payer_needs(
    gateway: StripeGateway, ls: LocalStripe, payer: Payer
) -> None:
    result = await gateway.charge(a_request(payer, method_token=ls.create_card(NEEDS_3DS)))
    assert result.outcome is Outcome.PENDING
    assert result.payer_action is not None and result.payer_action["kind"] == "URL"
    assert str(result.payer_action["client_secret"]).startswith(f"{result.provider_ref}_secret_")
    assert (await gateway.get_payment(str(result.provider_ref))).outcome is Outcome.PENDING


async def test_unknown_card_or_method_is_not_attempted(gateway: StripeGateway, payer: Payer) -> None:
    missing = await gateway.charge(a_request(payer, method_token="pm_doesnotexist"))
    assert missing.outcome is Outcome.NOT_ATTEMPTED and missing.decline_reason
    assert "404" in missing.decline_reason
    no_card = await gateway.charge(a_request(payer))
    assert no_card.outcome is Outcome.NOT_ATTEMPTED
    boleto = await gateway.charge(a_request(payer, method="BOLETO", method_token="pm_card_visa"))
    assert boleto.outcome is Outcome.NOT_ATTEMPTED


async def test_a_retry_after_an_unknown_outcome_finds_the_first_payment(
    gateway: StripeGateway, ls: LocalStripe, payer: Payer
) -> None:
    """On Stripe the same idempotency key returns the first PaymentIntent again (the header is sent:
    see test_idempotency_key_and_metadata_reach_stripe). localstripe ignores Idempotency-Key, so a
    second create makes a second PaymentIntent there; the caller's guard is find_payment, which
    finds the first one, so the retry is never sent."""
    request = a_request(payer, method_token=ls.create_card(VISA))
    first = await gateway.charge(request)
    assert first.outcome is Outcome.SUCCEEDED

    found = await gateway.find_payment(request.idempotency_key, payer)
    assert found is not None
    assert (found.outcome, found.provider_ref) == (Outcome.SUCCEEDED, first.provider_ref)

    # What the guard prevents, shown on localstripe: a blind retry makes a second PaymentIntent.
    again = await gateway.charge(request)
    assert again.provider_ref != first.provider_ref
    same = [
        pi
        for pi in ls.api("GET", "/v1/payment_intents", params={"limit": 100})["data"]
        if pi["metadata"].get("whitebill_reference") == request.idempotency_key
    ]
    assert len(same) == 2


async def test_find_payment_by_reference(gateway: StripeGateway, ls: LocalStripe, payer: Payer) -> None:
    requests = [a_request(payer, method_token=ls.create_card(VISA), amount=100 + i) for i in range(3)]
    results = [await gateway.charge(r) for r in requests]
    for request, result in zip(requests, results, strict=True):
        found = await gateway.find_payment(request.idempotency_key, payer)
        assert found is not None and found.provider_ref == result.provider_ref
    assert await gateway.find_payment("pay_never_sent", payer) is None
    # a payer whose customer is not known: found all the same (search on Stripe, a full list here)
    anonymous = Payer(key=payer.key, name=payer.name)
    found = await gateway.find_payment(requests[1].idempotency_key, anonymous)
    assert found is not None and found.provider_ref == results[1].provider_ref


async def test_get_payment(gateway: StripeGateway, ls: LocalStripe, payer: Payer) -> None:
    result = await gateway.charge(a_request(payer, method_token=ls.create_card(VISA)))
    got = await gateway.get_payment(str(result.provider_ref))
    assert (got.outcome, got.provider_ref) == (Outcome.SUCCEEDED, result.provider_ref)
    missing = await gateway.get_payment("pi_doesnotexist")
    assert missing.outcome is Outcome.UNKNOWN and missing.provider_ref == "pi_doesnotexist"


async def test_refund_partially_then_fully(gateway: StripeGateway, ls: LocalStripe, payer: Payer) -> None:
    paid = await gateway.charge(a_request(payer, method_token=ls.create_card(VISA), amount=1000))
    ref = str(paid.provider_ref)

    partial = await gateway.refund(ref, 300, "EUR", "refund-1")
    assert partial.outcome is Outcome.SUCCEEDED and partial.provider_ref and partial.provider_ref.startswith("re_")
    rest = await gateway.refund(ref, 700, "eur", "refund-2")
    assert rest.outcome is Outcome.SUCCEEDED and rest.provider_ref != partial.provider_ref

    charge_id = ls.api("GET", f"/v1/payment_intents/{ref}")["latest_charge"]["id"]
    charge = ls.api("GET", f"/v1/charges/{charge_id}")
    assert (charge["amount_refunded"], charge["refunded"]) == (1000, True)
    refunds = ls.api("GET", "/v1/refunds", params={"charge": charge_id})["data"]
    assert sorted(r["metadata"]["whitebill_refund"] for r in refunds) == ["refund-1", "refund-2"]

    assert (await gateway.refund(ref, 100, "USD", "refund-3")).outcome is Outcome.NOT_ATTEMPTED
    assert (await gateway.refund("pi_doesnotexist", 100, "EUR", "refund-4")).outcome is Outcome.DECLINED


# --- webhooks ------------------------------------------------------------------------------------


def an_event(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "api_version": "2026-10-28.endive",
        "livemode": False,
        "data": {"object": obj},
    }


def signed(payload: dict[str, Any], secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> tuple[bytes, dict]:
    body = json.dumps(payload).encode()
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp)
    return body, {"Stripe-Signature": header, "Content-Type": "application/json"}


def an_intent(status: str, reference: str = "pay_abc") -> dict[str, Any]:
    return {
        "id": "pi_123",
        "object": "payment_intent",
        "status": status,
        "amount": 1250,
        "currency": "eur",
        "customer": "cus_1",
        "payment_method": "pm_1",
        "metadata": {"whitebill_reference": reference, "whitebill_payment_id": "7"},
    }


@pytest.mark.parametrize(
    ("event_type", "status", "outcome"),
    [
        ("payment_intent.succeeded", "succeeded", Outcome.SUCCEEDED),
        ("payment_intent.payment_failed", "requires_payment_method", Outcome.DECLINED),
        ("payment_intent.processing", "processing", Outcome.PENDING),
        ("payment_intent.requires_action", "requires_action", Outcome.PENDING),
        ("payment_intent.canceled", "canceled", Outcome.DECLINED),
        ("payment_intent.amount_capturable_updated", "requires_capture", None),
    ],
)
async def test_payment_intent_events(gateway: StripeGateway, event_type: str, status: str, outcome: Outcome) -> None:
    event = an_event(event_type, an_intent(status))
    notice = await gateway.parse_webhook(*signed(event))
    assert (notice.event_id, notice.event_type) == (event["id"], event_type)
    assert (notice.provider_ref, notice.reference, notice.outcome) == ("pi_123", "pay_abc", outcome)
    assert not notice.disputed and not notice.charged_back and notice.refunded_amount is None
    assert notice.raw == event


async def test_a_succeeded_intent_that_saved_its_card_reports_it(gateway: StripeGateway) -> None:
    intent = {**an_intent("succeeded"), "setup_future_usage": "off_session"}
    notice = await gateway.parse_webhook(*signed(an_event("payment_intent.succeeded", intent)))
    assert notice.saved_method == SavedMethod("pm_1", "CARD", None, None, "cus_1")


async def test_charge_refunded_reports_the_cumulative_amount(gateway: StripeGateway) -> None:
    charge = {"id": "ch_1", "object": "charge", "amount": 1250, "amount_refunded": 800, "payment_intent": "pi_123"}
    notice = await gateway.parse_webhook(*signed(an_event("charge.refunded", charge)))
    assert (notice.provider_ref, notice.refunded_amount, notice.outcome) == ("pi_123", 800, None)


def a_dispute(status: str, **extra: Any) -> dict[str, Any]:
    return {"id": "dp_1", "object": "dispute", "amount": 1250, "charge": "ch_1", "status": status, **extra}


async def test_dispute_events(gateway: StripeGateway) -> None:
    opened = await gateway.parse_webhook(
        *signed(an_event("charge.dispute.created", a_dispute("needs_response", payment_intent="pi_123")))
    )
    assert (opened.provider_ref, opened.disputed, opened.charged_back, opened.outcome) == ("pi_123", True, False, None)

    won = await gateway.parse_webhook(
        *signed(an_event("charge.dispute.closed", a_dispute("won", payment_intent="pi_123")))
    )
    assert (won.provider_ref, won.outcome, won.charged_back) == ("pi_123", Outcome.SUCCEEDED, False)

    lost = await gateway.parse_webhook(
        *signed(an_event("charge.dispute.closed", a_dispute("lost", payment_intent="pi_123")))
    )
    assert (lost.provider_ref, lost.charged_back, lost.outcome) == ("pi_123", True, None)

    update = await gateway.parse_webhook(
        *signed(an_event("charge.dispute.updated", a_dispute("under_review", payment_intent="pi_123")))
    )
    assert (update.provider_ref, update.outcome, update.disputed, update.charged_back) == ("pi_123", None, False, False)


async def test_a_dispute_without_its_intent_is_traced_through_the_charge(
    gateway: StripeGateway, ls: LocalStripe, payer: Payer
) -> None:
    paid = await gateway.charge(a_request(payer, method_token=ls.create_card(VISA)))
    charge_id = ls.api("GET", f"/v1/payment_intents/{paid.provider_ref}")["latest_charge"]["id"]
    dispute = {"id": "dp_2", "object": "dispute", "charge": charge_id, "status": "needs_response"}
    notice = await gateway.parse_webhook(*signed(an_event("charge.dispute.created", dispute)))
    assert (notice.provider_ref, notice.disputed) == (paid.provider_ref, True)


async def test_other_events_carry_no_outcome(gateway: StripeGateway) -> None:
    notice = await gateway.parse_webhook(*signed(an_event("customer.created", {"id": "cus_1", "object": "customer"})))
    assert (notice.event_type, notice.provider_ref, notice.outcome) == ("customer.created", None, None)


async def test_webhooks_that_do_not_verify_are_rejected(gateway: StripeGateway) -> None:
    event = an_event("payment_intent.succeeded", an_intent("succeeded"))
    body, headers = signed(event)
    assert (await gateway.parse_webhook(body, {"stripe-signature": headers["Stripe-Signature"]})).outcome  # any case

    forged = {"Stripe-Signature": f"t={int(time.time())},v1={'0' * 64}"}
    tampered = body.replace(b"1250", b"9999")
    attempts: list[tuple[bytes, dict[str, str]]] = [
        (body, forged),
        signed(event, secret="whsec_someone_else"),
        (tampered, headers),
        (body, {}),
        (body, {"Stripe-Signature": "garbage"}),
        signed(event, timestamp=int(time.time()) - 3600),  # replayed an hour later
        (
            b"not json",
            {"Stripe-Signature": stripe.WebhookSignature.generate_signature_header("not json", WEBHOOK_SECRET)},
        ),
        signed({"id": 5, "object": "event"}),  # signed, but not an event
    ]
    for attempt_body, attempt_headers in attempts:
        with pytest.raises(WebhookRejected) as rejected:
            await gateway.parse_webhook(attempt_body, attempt_headers)
        assert WEBHOOK_SECRET not in str(rejected.value) and rejected.value.__cause__ is None

    async with a_gateway("http://127.0.0.1:9") as no_secret:
        no_secret._webhook_secret = ""
        with pytest.raises(WebhookRejected):
            await no_secret.parse_webhook(body, headers)


@dataclass
class Receiver:
    url: str
    received: asyncio.Queue[tuple[bytes, dict[str, str]]]


@contextlib.asynccontextmanager
async def a_receiver() -> AsyncIterator[Receiver]:
    queue: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()

    async def handle(request: web.Request) -> web.Response:
        queue.put_nowait((await request.read(), dict(request.headers)))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/stripe", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Receiver(f"http://127.0.0.1:{port}/stripe", queue)
    finally:
        await runner.cleanup()


async def test_a_webhook_signed_and_delivered_by_localstripe(
    gateway: StripeGateway, ls: LocalStripe, payer: Payer
) -> None:
    hook_id = f"whitebill-{uuid.uuid4().hex[:8]}"
    async with a_receiver() as receiver:
        ls.register_webhook(hook_id, receiver.url, WEBHOOK_SECRET, events=["payment_intent.succeeded"])
        try:
            request = a_request(payer, method_token=ls.create_card(VISA))
            paid = await gateway.charge(request)
            # localstripe sends every event about a second later, to every endpoint registered by
            # then: skip those of earlier tests.
            deadline = time.monotonic() + 10
            while True:
                body, headers = await asyncio.wait_for(receiver.received.get(), deadline - time.monotonic())
                if json.loads(body)["data"]["object"]["id"] == paid.provider_ref:
                    break
        finally:
            ls.register_webhook(hook_id, receiver.url, WEBHOOK_SECRET, events=["whitebill.test.muted"])
    notice = await gateway.parse_webhook(body, headers)
    assert notice.event_type == "payment_intent.succeeded" and notice.event_id.startswith("evt_")
    assert (notice.provider_ref, notice.reference, notice.outcome) == (
        paid.provider_ref,
        request.idempotency_key,
        Outcome.SUCCEEDED,
    )
    with pytest.raises(WebhookRejected):
        await gateway.parse_webhook(body.replace(b"succeeded", b"SUCCEEDED"), headers)


# --- no answer, a wrong answer -------------------------------------------------------------------


def a_closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_refused_connection_is_unknown(payer: Payer) -> None:
    async with a_gateway(f"http://127.0.0.1:{a_closed_port()}") as gateway:
        result = await gateway.charge(a_request(payer, method_token="pm_card_visa"))
        assert result.outcome is Outcome.UNKNOWN
        assert result.decline_reason == "stripe: APIConnectionError (ConnectError)"
        assert (await gateway.get_payment("pi_1")).outcome is Outcome.UNKNOWN
        with pytest.raises(StripeGatewayError):
            await gateway.find_payment("pay_x", payer)
        with pytest.raises(StripeGatewayError):
            await gateway.ensure_customer(Payer(key="WORKSPACE:1", name="A"))
        # a refund first reads the payment: nothing was asked when that fails
        assert (await gateway.refund("pi_1", 100, "EUR", "r-1")).outcome is Outcome.NOT_ATTEMPTED
        # saving a card for a payer without a customer stops before the charge
        no_customer = Payer(key="WORKSPACE:2", name="B")
        saving = await gateway.charge(a_request(no_customer, method_token="pm_card_visa", save_method=True))
        assert saving.outcome is Outcome.NOT_ATTEMPTED


@contextlib.asynccontextmanager
async def a_silent_server() -> AsyncIterator[int]:
    """Accepts connections, reads, never answers."""
    done = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await done.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        done.set()
        server.close()
        await server.wait_closed()


async def test_a_server_that_hangs_past_the_timeout_is_unknown(payer: Payer) -> None:
    async with a_silent_server() as port, a_gateway(f"http://127.0.0.1:{port}", timeout_seconds=0.5) as gateway:
        started = time.monotonic()
        result = await gateway.charge(a_request(payer, method_token="pm_card_visa"))
        elapsed = time.monotonic() - started
        assert result.outcome is Outcome.UNKNOWN
        assert result.decline_reason == "stripe: APIConnectionError (ReadTimeout)"
        assert elapsed < 3  # one attempt, no retries
        refund = await gateway.refund("pi_1", 100, "EUR", "r-1")
        assert refund.outcome is Outcome.NOT_ATTEMPTED


@dataclass
class FakeStripe:
    """A scripted Stripe: answers each request with the next reply and records what it got."""

    url: str
    requests: list[dict[str, Any]]


Reply = tuple[int, Any]  # (status, JSON body, or bytes sent as they are)


@contextlib.asynccontextmanager
async def a_fake_stripe(reply: Callable[[web.Request, dict[str, Any]], Reply]) -> AsyncIterator[FakeStripe]:
    requests: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        form = {k: v[0] if len(v) == 1 else v for k, v in parse_qs((await request.read()).decode()).items()}
        seen = {"method": request.method, "path": request.path, "query": dict(request.query), "form": form}
        seen["headers"] = dict(request.headers)
        requests.append(seen)
        status, body = reply(request, seen)
        if isinstance(body, bytes):
            return web.Response(status=status, body=body, content_type="text/html")
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield FakeStripe(f"http://127.0.0.1:{runner.addresses[0][1]}", requests)
    finally:
        await runner.cleanup()


def a_stripe_intent(seen: dict[str, Any], status: str = "succeeded") -> dict[str, Any]:
    form = seen["form"]
    return {
        "id": "pi_fake",
        "object": "payment_intent",
        "status": status,
        "amount": int(form.get("amount", 1)),
        "currency": form.get("currency", "eur"),
        "customer": form.get("customer"),
        "client_secret": "pi_fake_secret_x",
        "metadata": {"whitebill_reference": form.get("metadata[whitebill_reference]", "pay_x")},
        "setup_future_usage": form.get("setup_future_usage"),
        "payment_method": {
            "id": form.get("payment_method", "pm_fake"),
            "object": "payment_method",
            "type": "card",
            "customer": form.get("customer"),
            "card": {"brand": "mastercard", "last4": "4444"},
        },
    }


async def test_idempotency_key_and_metadata_reach_stripe(payer: Payer) -> None:
    async with a_fake_stripe(lambda request, seen: (200, a_stripe_intent(seen))) as fake:
        async with a_gateway(fake.url) as gateway:
            request = a_request(payer, method_token="pm_new", save_method=True)
            result = await gateway.charge(request)
    assert result.outcome is Outcome.SUCCEEDED
    assert result.saved_method == SavedMethod("pm_new", "CARD", "mastercard", "4444", payer.provider_customer_ref)
    (seen,) = fake.requests
    assert (seen["method"], seen["path"]) == ("POST", "/v1/payment_intents")
    assert seen["headers"]["Idempotency-Key"] == request.idempotency_key
    assert seen["form"] == {
        "amount": "1250",
        "currency": "eur",
        "payment_method": "pm_new",
        "confirm": "true",
        "metadata[whitebill_reference]": request.idempotency_key,
        "metadata[whitebill_payment_id]": "7",
        "expand[0]": "payment_method",
        "allowed_payment_method_types[0]": "card",
        "customer": payer.provider_customer_ref,
        "setup_future_usage": "off_session",
        "description": "Plan Pro, March",
    }


async def test_a_parameter_the_server_does_not_know_is_dropped_once(payer: Payer) -> None:
    """Stripe's own "unknown parameter" answer: nothing is created, so the adapter asks again without it
    (a card to save is then attached explicitly), and does not send it any more."""

    def reply(request: web.Request, seen: dict[str, Any]) -> Reply:
        if request.path.endswith("/attach"):
            return 200, {"id": "pm_new", "object": "payment_method", "customer": seen["form"]["customer"]}
        if "setup_future_usage" in seen["form"]:
            error = {
                "type": "invalid_request_error",
                "code": "parameter_unknown",
                "param": "setup_future_usage",
                "message": "Received unknown parameter: setup_future_usage",
            }
            return 400, {"error": error}
        return 200, a_stripe_intent(seen)

    async with a_fake_stripe(reply) as fake, a_gateway(fake.url) as gateway:
        first = await gateway.charge(a_request(payer, method_token="pm_new", save_method=True))
        second = await gateway.charge(a_request(payer, method_token="pm_new", save_method=True))
    assert first.outcome is second.outcome is Outcome.SUCCEEDED
    assert first.saved_method is not None
    paths = [seen["path"] for seen in fake.requests]
    assert paths == [
        "/v1/payment_intents",  # refused
        "/v1/payment_methods/pm_new/attach",
        "/v1/payment_intents",
        "/v1/payment_methods/pm_new/attach",
        "/v1/payment_intents",
    ]
    assert fake.requests[1]["form"] == {"customer": payer.provider_customer_ref}
    assert all("setup_future_usage" not in seen["form"] for seen in fake.requests[1:])


async def test_stripe_declines_with_the_intent_in_the_error(payer: Payer) -> None:
    def reply(request: web.Request, seen: dict[str, Any]) -> Reply:
        error = {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
            "payment_intent": a_stripe_intent(seen, status="requires_payment_method"),
        }
        return 402, {"error": error}

    async with a_fake_stripe(reply) as fake, a_gateway(fake.url) as gateway:
        result = await gateway.charge(a_request(payer, saved_method_ref="pm_saved"))
    assert (result.outcome, result.provider_ref) == (Outcome.DECLINED, "pi_fake")
    assert result.decline_reason == "card_declined/insufficient_funds: Your card has insufficient funds."
    assert fake.requests[0]["form"]["off_session"] == "true"


async def test_an_off_session_charge_needing_authentication_waits_for_the_payer_in_both_shapes(
    gateway: StripeGateway, ls: LocalStripe, payer: Payer
) -> None:
    """localstripe answers ``requires_action``; real Stripe answers 402 ``authentication_required`` (below)."""
    card = ls.create_card(NEEDS_3DS)
    ls.api("POST", f"/v1/payment_methods/{card}/attach", data={"customer": payer.provider_customer_ref})
    result = await gateway.charge(a_request(payer, saved_method_ref=card, off_session=True))
    assert result.outcome is Outcome.REQUIRES_ACTION and result.provider_ref
    assert result.payer_action is not None
    assert (result.payer_action["kind"], result.payer_action["payment_method"]) == ("AUTHENTICATE", card)
    intent = ls.api("GET", f"/v1/payment_intents/{result.provider_ref}")
    assert result.payer_action["client_secret"] == intent["client_secret"]
    ls.api(
        "POST",
        f"/v1/payment_intents/{result.provider_ref}/_authenticate",
        data={"client_secret": intent["client_secret"], "success": "true"},
    )
    assert (await gateway.get_payment(result.provider_ref)).outcome is Outcome.SUCCEEDED


async def test_stripes_402_authentication_required_waits_for_the_payer_and_is_continued_on_session(
    payer: Payer,
) -> None:
    def intent(seen: dict[str, Any], status: str, **extra: Any) -> dict[str, Any]:
        return {**a_stripe_intent(seen, status=status), "payment_method": None, **extra}

    waiting_error = {
        "code": "authentication_required",
        "payment_method": {"id": "pm_saved", "object": "payment_method"},
    }

    def reply(request: web.Request, seen: dict[str, Any]) -> Reply:
        if request.path == "/v1/payment_intents" and request.method == "POST":
            error = {
                "type": "card_error",
                "code": "authentication_required",
                "message": "This payment requires authentication.",
                "payment_intent": intent(seen, "requires_payment_method", last_payment_error=waiting_error),
            }
            return 402, {"error": error}
        if request.path == "/v1/payment_intents/pi_fake" and request.method == "GET":
            return 200, intent(seen, "requires_payment_method", last_payment_error=waiting_error)
        if request.path == "/v1/payment_intents/pi_fake/confirm":
            next_action = {"type": "redirect_to_url", "redirect_to_url": {"url": "https://hooks.stripe.com/3ds/x"}}
            return 200, intent(seen, "requires_action", next_action=next_action)
        return 404, {"error": {"type": "invalid_request_error", "message": "no such route"}}

    async with a_fake_stripe(reply) as fake, a_gateway(fake.url) as gateway:
        result = await gateway.charge(a_request(payer, saved_method_ref="pm_saved", off_session=True))
        assert (result.outcome, result.provider_ref) == (Outcome.REQUIRES_ACTION, "pi_fake")
        assert result.payer_action is not None
        assert (result.payer_action["client_secret"], result.payer_action["payment_method"]) == (
            "pi_fake_secret_x",
            "pm_saved",
        )
        assert (await gateway.get_payment("pi_fake")).outcome is Outcome.REQUIRES_ACTION  # not a decline
        resumed = await gateway.continue_on_session("pi_fake", "https://billing.example/pay/r/m/return")
    assert (resumed.outcome, resumed.payer_action) == (
        Outcome.REQUIRES_ACTION,
        {"kind": "URL", "url": "https://hooks.stripe.com/3ds/x"},
    )
    [confirm] = [r for r in fake.requests if r["path"] == "/v1/payment_intents/pi_fake/confirm"]
    assert confirm["form"] == {"payment_method": "pm_saved", "return_url": "https://billing.example/pay/r/m/return"}


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (500, {"error": {"type": "api_error", "message": "Something went wrong"}}, Outcome.UNKNOWN),
        (503, b"<html>upstream unavailable</html>", Outcome.UNKNOWN),
        (200, b"<html>a captive portal</html>", Outcome.UNKNOWN),
        (200, {"unexpected": "shape"}, Outcome.UNKNOWN),
        (400, {"error": {"type": "idempotency_error", "message": "Keys for idempotent requests..."}}, Outcome.UNKNOWN),
        (
            401,
            {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}},
            Outcome.NOT_ATTEMPTED,
        ),
        (429, {"error": {"type": "invalid_request_error", "message": "Too many requests"}}, Outcome.NOT_ATTEMPTED),
    ],
)
async def test_what_stripe_answers_when_things_go_wrong(payer: Payer, status: int, body: Any, outcome: Outcome) -> None:
    async with a_fake_stripe(lambda request, seen: (status, body)) as fake, a_gateway(fake.url) as gateway:
        result = await gateway.charge(a_request(payer, method_token="pm_new"))
        assert result.outcome is outcome, result
        assert len(fake.requests) == 1  # never retried blindly
        if outcome is Outcome.UNKNOWN:
            assert (await gateway.get_payment("pi_x")).outcome is Outcome.UNKNOWN
            with pytest.raises(StripeGatewayError):
                await gateway.find_payment("pay_x", payer)


async def test_find_payment_on_stripe_lists_the_customers_intents(payer: Payer) -> None:
    def reply(request: web.Request, seen: dict[str, Any]) -> Reply:
        if request.path == "/v1/payment_intents":
            intent = a_stripe_intent({"form": {"metadata[whitebill_reference]": "pay_1"}})
            return 200, {"object": "list", "url": "/v1/payment_intents", "has_more": False, "data": [intent]}
        return 200, a_stripe_intent({"form": {}}, status="processing")

    async with a_fake_stripe(reply) as fake, a_gateway(fake.url) as gateway:
        found = await gateway.find_payment("pay_1", payer)
        assert await gateway.find_payment("pay_2", payer) is None
    assert found is not None and (found.outcome, found.provider_ref) == (Outcome.PENDING, "pi_fake")
    assert fake.requests[0]["query"] == {"customer": payer.provider_customer_ref, "limit": "100"}
    assert fake.requests[1]["path"] == "/v1/payment_intents/pi_fake"


# --- nothing secret in the logs --------------------------------------------------------------------


async def test_no_key_secret_or_card_number_is_ever_logged(
    ls: LocalStripe,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stripe, "log", "debug")  # asks the SDK to print bodies to stderr too
    caplog.set_level(logging.DEBUG)  # every logger, through the root
    for name in ("stripe", "httpx", "httpcore", "aiohttp"):
        caplog.set_level(logging.DEBUG, logger=name)

    async with a_gateway(ls.url) as gateway:
        assert stripe.log == "info"
        payer = Payer(key="WORKSPACE:99", name="Logged Ltd", email="logs@acme.test")
        payer = Payer(payer.key, payer.name, payer.email, provider_customer_ref=await gateway.ensure_customer(payer))
        card = ls.create_card(VISA)
        results: list[Any] = [
            await gateway.charge(a_request(payer, method_token=card, save_method=True)),
            await gateway.charge(a_request(payer, method_token=ls.create_card(DECLINED_ON_CHARGE))),
            await gateway.charge(a_request(payer, method_token="pm_doesnotexist")),
        ]
        results.append(await gateway.refund(str(results[0].provider_ref), 100, "EUR", "r-logs"))
        results.append(
            await gateway.parse_webhook(*signed(an_event("payment_intent.succeeded", an_intent("succeeded"))))
        )
        with pytest.raises(WebhookRejected) as rejected:
            await gateway.parse_webhook(*signed(an_event("payment_intent.succeeded", {}), secret="whsec_other"))
    wrong_key = f"sk_test_other{uuid.uuid4().hex}"
    # localstripe takes any sk_ key: a key of another shape is refused with 401
    bad_shape = StripeGateway(GatewayConfig(credentials={"api_key": f"xk_{wrong_key}"}, settings={"api_base": ls.url}))
    results.append(await bad_shape.charge(a_request(payer, method_token=card)))
    await bad_shape.aclose()
    assert results[-1].outcome is Outcome.NOT_ATTEMPTED

    logged = "\n".join(f"{r.name} {r.levelname} {r.getMessage()}" for r in caplog.records)
    printed = capsys.readouterr()
    everything = "\n".join([logged, printed.out, printed.err, repr(results), str(rejected.value)])
    assert "Request to Stripe api" in logged  # the SDK's own INFO lines are kept (method and URL)
    assert any(r.name.startswith("httpcore") and r.levelno == logging.DEBUG for r in caplog.records)
    for secret in (API_KEY, API_KEY[8:], WEBHOOK_SECRET, wrong_key, VISA, DECLINED_ON_CHARGE, "Post details"):
        assert secret not in everything, secret


# --- refunds and charges that go wrong at Stripe --------------------------------------------------


def an_intent_read(request: web.Request) -> dict[str, Any]:
    """What GET /v1/payment_intents/{id} answers before a refund: the intent, paid in euros."""
    return {"id": request.path.rsplit("/", 1)[1], "object": "payment_intent", "status": "succeeded", "currency": "eur"}


@contextlib.asynccontextmanager
async def refunds_answering(status: int, body: Any) -> AsyncIterator[tuple[FakeStripe, StripeGateway]]:
    """A scripted Stripe whose intent reads succeed and whose POST /v1/refunds answers (status, body)."""

    def reply(request: web.Request, seen: dict[str, Any]) -> Reply:
        if request.method == "GET":
            return 200, an_intent_read(request)
        return status, body

    async with a_fake_stripe(reply) as fake, a_gateway(fake.url) as gateway:
        yield fake, gateway


def a_refund_object(status: str, **extra: Any) -> dict[str, Any]:
    return {"id": "re_1", "object": "refund", "amount": 500, "currency": "eur", "status": status, **extra}


async def test_a_refund_stripe_refuses_is_declined_with_stripes_code() -> None:
    error = {
        "type": "invalid_request_error",
        "code": "charge_already_refunded",
        "message": "Charge ch_1 has already been refunded.",
    }
    async with refunds_answering(400, {"error": error}) as (fake, gateway):
        result = await gateway.refund("pi_paid", 500, "EUR", "rf-1")
    assert result.outcome is Outcome.DECLINED and result.provider_ref is None
    assert (
        result.reason
        == "stripe: InvalidRequestError 400 charge_already_refunded Charge ch_1 has already been refunded."
    )
    refund_request = fake.requests[1]
    assert (refund_request["method"], refund_request["path"]) == ("POST", "/v1/refunds")
    assert refund_request["headers"]["Idempotency-Key"] == "rf-1"
    assert refund_request["form"] == {
        "payment_intent": "pi_paid",
        "amount": "500",
        "metadata[whitebill_refund]": "rf-1",
    }


@pytest.mark.parametrize("status", ["pending", "requires_action"])
async def test_a_refund_stripe_has_not_finished_is_pending(status: str) -> None:
    async with refunds_answering(200, a_refund_object(status)) as (_, gateway):
        result = await gateway.refund("pi_paid", 500, "EUR", "rf-1")
    assert (result.outcome, result.provider_ref, result.reason) == (Outcome.PENDING, "re_1", None)


async def test_a_refund_that_failed_at_stripe_is_declined_with_its_failure_reason() -> None:
    failed = a_refund_object("failed", failure_reason="expired_or_canceled_card")
    async with refunds_answering(200, failed) as (_, gateway):
        result = await gateway.refund("pi_paid", 500, "EUR", "rf-1")
    assert (result.outcome, result.provider_ref, result.reason) == (
        Outcome.DECLINED,
        "re_1",
        "expired_or_canceled_card",
    )


async def test_a_refund_canceled_at_stripe_without_a_reason_is_declined_as_canceled() -> None:
    async with refunds_answering(200, a_refund_object("canceled", failure_reason=None)) as (_, gateway):
        result = await gateway.refund("pi_paid", 500, "EUR", "rf-1")
    assert (result.outcome, result.provider_ref, result.reason) == (Outcome.DECLINED, "re_1", "canceled")


async def test_a_refund_in_a_status_stripe_never_documented_is_unknown() -> None:
    async with refunds_answering(200, a_refund_object("on_the_moon")) as (_, gateway):
        result = await gateway.refund("pi_paid", 500, "EUR", "rf-1")
    assert (result.outcome, result.provider_ref) == (Outcome.UNKNOWN, "re_1")
    assert result.reason == "unexpected status 'on_the_moon'"


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (
            401,
            {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}},
            Outcome.NOT_ATTEMPTED,
        ),
        (403, {"error": {"type": "invalid_request_error", "message": "not allowed"}}, Outcome.NOT_ATTEMPTED),
        (429, {"error": {"type": "invalid_request_error", "message": "Too many requests"}}, Outcome.NOT_ATTEMPTED),
        (500, {"error": {"type": "api_error", "message": "Something went wrong"}}, Outcome.UNKNOWN),
        (200, b"<html>a captive portal</html>", Outcome.UNKNOWN),
    ],
)
async def test_a_refund_request_that_fails_is_not_attempted_or_unknown(
    status: int, body: Any, outcome: Outcome
) -> None:
    """Refused for the key or the rate: certainly nothing refunded. No readable answer: maybe refunded."""
    async with refunds_answering(status, body) as (fake, gateway):
        result = await gateway.refund("pi_paid", 500, "EUR", "rf-1")
    assert result.outcome is outcome and result.provider_ref is None
    assert result.reason and result.reason.startswith("stripe: ") and API_KEY not in result.reason
    assert [r["method"] for r in fake.requests] == ["GET", "POST"]  # never retried blindly


async def test_a_refund_of_nothing_is_not_attempted_and_asks_stripe_nothing() -> None:
    async with refunds_answering(200, a_refund_object("succeeded")) as (fake, gateway):
        for amount in (0, -5):
            result = await gateway.refund("pi_paid", amount, "EUR", "rf-1")
            assert (result.outcome, result.reason) == (Outcome.NOT_ATTEMPTED, "the amount must be positive")
    assert fake.requests == []


async def test_refunding_a_payment_that_failed_at_stripe_is_declined(
    gateway: StripeGateway, ls: LocalStripe, payer: Payer
) -> None:
    request = a_request(payer, method_token=ls.create_card(DECLINED_ON_CHARGE))
    assert (await gateway.charge(request)).outcome is Outcome.DECLINED
    declined = await gateway.find_payment(request.idempotency_key, payer)  # localstripe's error names no intent
    assert declined is not None and declined.provider_ref
    result = await gateway.refund(declined.provider_ref, 100, "EUR", "rf-1")
    assert result.outcome is Outcome.DECLINED
    assert result.reason == "stripe: InvalidRequestError 400 Cannot refund a failed payment."


async def test_a_charge_of_nothing_is_not_attempted_and_asks_stripe_nothing(payer: Payer) -> None:
    async with a_fake_stripe(lambda request, seen: (200, a_stripe_intent(seen))) as fake, a_gateway(fake.url) as gw:
        for amount in (0, -1):
            result = await gw.charge(a_request(payer, method_token="pm_new", amount=amount))
            assert (result.outcome, result.decline_reason) == (Outcome.NOT_ATTEMPTED, "the amount must be positive")
    assert fake.requests == []


def refused_at_confirmation(intent_status: str | None) -> Callable[[web.Request, dict[str, Any]], Reply]:
    """Stripe created the PaymentIntent, then refused to confirm it (an invalid_request_error, not a
    card_error): the error carries the intent when there is one."""

    def reply(request: web.Request, seen: dict[str, Any]) -> Reply:
        error: dict[str, Any] = {
            "type": "invalid_request_error",
            "code": "payment_intent_authentication_failure",
            "message": "The provided PaymentMethod has failed authentication.",
        }
        if intent_status is not None:
            error["payment_intent"] = a_stripe_intent(seen, status=intent_status)
        return 400, {"error": error}

    return reply


async def test_a_charge_created_then_refused_at_confirmation_is_declined_under_its_intent(payer: Payer) -> None:
    async with a_fake_stripe(refused_at_confirmation("requires_payment_method")) as fake, a_gateway(fake.url) as gw:
        result = await gw.charge(a_request(payer, method_token="pm_new"))
    assert (result.outcome, result.provider_ref) == (Outcome.DECLINED, "pi_fake")
    assert result.decline_reason == (
        "payment_intent_authentication_failure: The provided PaymentMethod has failed authentication."
    )
    assert len(fake.requests) == 1


async def test_a_charge_created_then_left_waiting_for_the_payer_is_pending_under_its_intent(payer: Payer) -> None:
    async with a_fake_stripe(refused_at_confirmation("requires_action")) as fake, a_gateway(fake.url) as gw:
        result = await gw.charge(a_request(payer, method_token="pm_new"))
    assert (result.outcome, result.provider_ref) == (Outcome.PENDING, "pi_fake")
    assert result.payer_action is not None and result.payer_action["client_secret"] == "pi_fake_secret_x"


async def test_a_charge_refused_before_any_intent_was_made_is_not_attempted(payer: Payer) -> None:
    async with a_fake_stripe(refused_at_confirmation(None)) as fake, a_gateway(fake.url) as gw:
        result = await gw.charge(a_request(payer, method_token="pm_new"))
    assert result.outcome is Outcome.NOT_ATTEMPTED and result.provider_ref is None
    assert result.decline_reason == (
        "stripe: InvalidRequestError 400 payment_intent_authentication_failure "
        "The provided PaymentMethod has failed authentication."
    )


@pytest.mark.parametrize(
    ("intent", "outcome", "reason"),
    [
        ({"status": "canceled", "cancellation_reason": "fraudulent"}, Outcome.DECLINED, "canceled: fraudulent"),
        ({"status": "canceled"}, Outcome.DECLINED, "canceled: canceled"),
        ({"status": "requires_confirmation"}, Outcome.UNKNOWN, "unexpected status 'requires_confirmation'"),
    ],
)
async def test_a_charge_answered_with_a_canceled_or_unconfirmed_intent(
    payer: Payer, intent: dict[str, Any], outcome: Outcome, reason: str
) -> None:
    def reply(request: web.Request, seen: dict[str, Any]) -> Reply:
        return 200, {**a_stripe_intent(seen), **intent}

    async with a_fake_stripe(reply) as fake, a_gateway(fake.url) as gw:
        result = await gw.charge(a_request(payer, method_token="pm_new"))
    assert (result.outcome, result.provider_ref, result.decline_reason) == (outcome, "pi_fake", reason)
    assert result.saved_method is None
