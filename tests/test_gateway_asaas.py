"""The Asaas adapter against the fake Asaas (tests/fake_asaas), through the real ``asaas`` SDK. No database."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from asaas import Asaas
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateways import registry
from gateways.asaas import (
    PRODUCTION_API_BASE,
    SANDBOX_API_BASE,
    AsaasAuthError,
    AsaasCustomerError,
    AsaasGateway,
    minor_to_reais,
    reais_to_minor,
)
from gateways.base import (
    ChargeRequest,
    DisputeStatus,
    Gateway,
    GatewayConfig,
    Outcome,
    Payer,
    WebhookNotice,
    WebhookRejected,
)
from tests.fake_asaas import (
    APPROVED_CARD,
    REFUSED_CARDS,
    FakeAsaasControlError,
    FakeAsaasController,
    ReceivedWebhook,
    WebhookSink,
    running_webhook_sink,
)
from tests.fake_asaas.control import ServerThread
from tests.fake_asaas.fixtures import asaas, fake_asaas  # noqa: F401  (pytest fixtures)

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK_TOKEN = "whk-" + "Qz7rT2mK" * 5  # 44 characters, as Asaas wants (32 to 255, no spaces)
TOMORROW = (date.today() + timedelta(days=1)).isoformat()  # a valid due date in Brasília whatever the local zone
PAYER = Payer(key="WORKSPACE:12", name="Ana Souza", email="ana@example.com", tax_id="249.715.637-92")


def make_gateway(controller: FakeAsaasController, *, api_key: str | None = None, **settings: Any) -> AsaasGateway:
    return AsaasGateway(
        GatewayConfig(
            mode="TEST",
            credentials={"api_key": controller.token if api_key is None else api_key, "webhook_token": WEBHOOK_TOKEN},
            settings={"api_base": controller.url, "timeout_seconds": 2, "retry_backoff": 0, **settings},
            config_id=7,
        )
    )


@pytest.fixture
def gateway(asaas: FakeAsaasController) -> AsaasGateway:  # noqa: F811
    return make_gateway(asaas)


@pytest.fixture(scope="session")
def webhook_sink() -> Iterator[WebhookSink]:
    with running_webhook_sink() as sink:
        yield sink


@pytest.fixture
def sink(asaas: FakeAsaasController, webhook_sink: WebhookSink) -> WebhookSink:  # noqa: F811
    """A webhook receiver registered at the (reset) fake, with our token."""
    webhook_sink.clear()
    asaas.add_webhook(webhook_sink.url, WEBHOOK_TOKEN)
    return webhook_sink


def charge_request(method: str, amount: int = 19990, **fields: Any) -> ChargeRequest:
    fields.setdefault("idempotency_key", f"pay_ref_{secrets.token_hex(8)}")
    fields.setdefault("payer", PAYER)
    fields.setdefault("remote_ip", "198.51.100.23")  # the payer's address: Asaas requires it with a kept card
    return ChargeRequest(payment_id=1, amount=amount, currency="BRL", method=method, **fields)


def received(controller: FakeAsaasController, sink: WebhookSink, event: str, payment_id: str) -> ReceivedWebhook:
    controller.wait_deliveries()
    for hook in sink.received:
        body = json.loads(hook.body)
        if body["event"] == event and body["payment"]["id"] == payment_id:
            return hook
    raise AssertionError(f"no {event} for {payment_id} among {[json.loads(h.body)['event'] for h in sink.received]}")


async def notice_of(
    gateway: AsaasGateway, controller: FakeAsaasController, sink: WebhookSink, event: str, payment_id: str
) -> WebhookNotice:
    hook = received(controller, sink, event, payment_id)
    return await gateway.parse_webhook(hook.body, hook.headers)


def sdk(controller: FakeAsaasController) -> Any:
    return Asaas(controller.token, base_url=controller.url, timeout=5)


def only_payment(controller: FakeAsaasController, reference: str) -> dict[str, Any]:
    payments = controller.payments(reference)
    assert len(payments) == 1, payments
    return payments[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- configuration -------------------------------------------------------------------------------------


def test_registered_under_the_entry_point_with_defaults_and_no_secret_in_repr() -> None:
    gateway = registry.create("asaas", GatewayConfig(mode="TEST", credentials={"api_key": "k-secret-123"}))
    assert isinstance(gateway, AsaasGateway) and isinstance(gateway, Gateway)
    assert gateway.api_base == SANDBOX_API_BASE
    live = AsaasGateway(GatewayConfig(mode="LIVE", credentials={"api_key": "k-secret-123"}))
    assert live.api_base == PRODUCTION_API_BASE
    assert AsaasGateway(GatewayConfig(settings={"api_base": "http://127.0.0.1:9/v3/"})).api_base == "http://127.0.0.1:9"
    assert "k-secret-123" not in repr(gateway) and "k-secret-123" not in repr(live)
    caps = gateway.capabilities()
    assert caps.methods == frozenset({"CARD", "BOLETO", "PIX"})
    assert caps.currencies == frozenset({"BRL"}) and caps.supports_refunds and caps.supports_saved_methods


# -- amounts -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minor", "reais"),
    [
        (1, "0.01"),
        (10, "0.1"),
        (29, "0.29"),
        (110, "1.1"),
        (19990, "199.9"),
        (19999, "199.99"),
        (123456789, "1234567.89"),
        (999_999_999_999_999, "9999999999999.99"),
    ],
)
def test_minor_units_to_reais_and_back_exactly(minor: int, reais: str) -> None:
    value = minor_to_reais(minor)
    assert Decimal(json.dumps(value)) == Decimal(reais)  # what the SDK puts on the wire
    assert reais_to_minor(value) == minor
    assert reais_to_minor(json.loads(json.dumps(value))) == minor


def test_reais_to_minor_avoids_float_traps_and_refuses_garbage() -> None:
    assert reais_to_minor(0.29) == 29  # Decimal(0.29) would be 0.28999999999999998002...
    assert reais_to_minor(1.15) == 115
    assert reais_to_minor(19.99) == 1999
    assert reais_to_minor(94.51) == 9451
    assert reais_to_minor(5) == 500
    assert reais_to_minor("10.5") == 1050
    assert reais_to_minor(Decimal("0.07")) == 7
    assert all(reais_to_minor(minor_to_reais(n)) == n for n in range(0, 100_000, 7))
    for bad in (0.1 + 0.2, 1.005, True, None, "abc", float("nan"), float("inf"), [1]):
        with pytest.raises(ValueError):
            reais_to_minor(bad)
    for wrong_type in (True, 1.0, "1"):
        with pytest.raises(TypeError):
            minor_to_reais(wrong_type)  # type: ignore[arg-type]
    for out_of_range in (-1, 10**15):
        with pytest.raises(ValueError):
            minor_to_reais(out_of_range)


# -- customers -----------------------------------------------------------------------------------------


async def test_ensure_customer_creates_once_with_the_cpf(asaas: FakeAsaasController, gateway: AsaasGateway) -> None:  # noqa: F811
    customer_id = await gateway.ensure_customer(PAYER)
    assert customer_id is not None and customer_id.startswith("cus_")
    assert await gateway.ensure_customer(PAYER) == customer_id  # found by externalReference, not created again
    created = [r for r in asaas.requests() if r["method"] == "POST" and r["path"] == "/v3/customers"]
    assert len(created) == 1
    customer = sdk(asaas).customers.get(customer_id)
    assert (customer["cpfCnpj"], customer["externalReference"], customer["name"]) == (
        "24971563792",
        "WORKSPACE:12",
        "Ana Souza",
    )
    known = Payer(key="WORKSPACE:99", name="B", provider_customer_ref="cus_known")
    assert await gateway.ensure_customer(known) == "cus_known"


async def test_a_payer_without_cpf_gets_a_clear_error_and_no_charge(
    asaas: FakeAsaasController,  # noqa: F811
    gateway: AsaasGateway,
) -> None:
    no_tax_id = Payer(key="WORKSPACE:13", name="Sem Documento")
    with pytest.raises(AsaasCustomerError, match="CPF or CNPJ"):
        await gateway.ensure_customer(no_tax_id)
    with pytest.raises(AsaasCustomerError, match=r"11 \(CPF\) or 14 \(CNPJ\) digits"):
        await gateway.ensure_customer(Payer(key="WORKSPACE:14", name="X", tax_id="123.456"))
    result = await gateway.charge(charge_request("PIX", payer=no_tax_id))
    assert result.outcome is Outcome.NOT_ATTEMPTED and "CPF or CNPJ" in (result.decline_reason or "")
    assert not [r for r in asaas.requests() if r["method"] == "POST"]


# -- charges -------------------------------------------------------------------------------------------


async def test_boleto_is_pending_with_its_line_barcode_and_due_date(
    asaas: FakeAsaasController,  # noqa: F811
    gateway: AsaasGateway,
) -> None:
    due = (date.today() + timedelta(days=5)).isoformat()
    request = charge_request("BOLETO", 19990, due_date=due, description="Plano Pro, março")
    result = await gateway.charge(request)
    assert result.outcome is Outcome.PENDING
    payment = only_payment(asaas, request.idempotency_key)
    assert result.provider_ref == payment["id"]
    assert (payment["value"], payment["billingType"], payment["dueDate"]) == (199.9, "BOLETO", due)
    action = result.payer_action or {}
    assert action["kind"] == "BOLETO" and action["url"] == payment["bankSlipUrl"]
    assert len(action["boleto_line"]) == 47 and action["boleto_line"].isdigit()
    assert len(action["barcode"]) == 44 and action["barcode"].isdigit()
    assert action["expires_at"] == due


async def test_pix_is_pending_with_its_code_and_qr_image(asaas: FakeAsaasController, gateway: AsaasGateway) -> None:  # noqa: F811
    request = charge_request("PIX", 1)
    result = await gateway.charge(request)
    assert result.outcome is Outcome.PENDING
    payment = only_payment(asaas, request.idempotency_key)
    assert payment["value"] == 0.01
    action = result.payer_action or {}
    assert action["kind"] == "PIX" and action["url"] == payment["invoiceUrl"]
    assert action["pix_payload"].startswith("000201") and "br.gov.bcb.pix" in action["pix_payload"]
    assert base64.b64decode(action["pix_qr_png_base64"]).startswith(b"\x89PNG\r\n\x1a\n")
    assert action["expires_at"].startswith(payment["dueDate"])


async def test_the_same_reference_never_makes_a_second_payment(
    asaas: FakeAsaasController,  # noqa: F811
    gateway: AsaasGateway,
) -> None:
    request = charge_request("PIX", 5000)
    first = await gateway.charge(request)
    again = await gateway.charge(request)
    assert first.outcome is again.outcome is Outcome.PENDING
    assert again.provider_ref == first.provider_ref
    only_payment(asaas, request.idempotency_key)


async def test_hosted_card_payment_then_webhook_with_the_card_then_off_session_charge(
    asaas: FakeAsaasController,  # noqa: F811
    gateway: AsaasGateway,
    sink: WebhookSink,
) -> None:
    request = charge_request("CARD", 4990, save_method=True)
    result = await gateway.charge(request)
    payment = only_payment(asaas, request.idempotency_key)
    assert result.outcome is Outcome.PENDING
    assert result.payer_action == {"kind": "URL", "url": payment["invoiceUrl"]}

    paid = asaas.pay(payment["id"], card_number=APPROVED_CARD)
    assert paid["status"] == "CONFIRMED"
    token = paid["creditCard"]["creditCardToken"]
    notice = await notice_of(gateway, asaas, sink, "PAYMENT_CONFIRMED", payment["id"])
    assert notice.outcome is Outcome.SUCCEEDED
    assert (notice.provider_ref, notice.reference) == (payment["id"], request.idempotency_key)
    assert notice.saved_method is not None
    assert notice.saved_method.provider_method_ref == token
    assert (notice.saved_method.kind, notice.saved_method.brand, notice.saved_method.last4) == ("CARD", "VISA", "4444")
    assert notice.saved_method.provider_customer_ref == payment["customer"]
    assert token not in json.dumps(notice.raw)  # the raw event keeps no usable card token
    assert (await gateway.get_payment(payment["id"])).saved_method == notice.saved_method

    off_session = charge_request("CARD", 4990, saved_method_ref=token, off_session=True)
    charged = await gateway.charge(off_session)
    assert charged.outcome is Outcome.SUCCEEDED, charged
    second = only_payment(asaas, off_session.idempotency_key)
    assert (charged.provider_ref, second["status"], second["value"]) == (second["id"], "CONFIRMED", 49.9)


async def test_refused_cards_are_declined(
    asaas: FakeAsaasController,  # noqa: F811
    gateway: AsaasGateway,
    sink: WebhookSink,
) -> None:
    hosted = await gateway.charge(charge_request("CARD", 3000))
    assert hosted.provider_ref is not None
    assert asaas.pay(hosted.provider_ref, card_number=REFUSED_CARDS[0])["status"] == "PENDING"
    notice = await notice_of(gateway, asaas, sink, "PAYMENT_CREDIT_CARD_CAPTURE_REFUSED", hosted.provider_ref)
    assert notice.outcome is Outcome.DECLINED and notice.saved_method is None
    assert (await gateway.get_payment(hosted.provider_ref)).outcome is Outcome.PENDING  # still payable

    customer = await gateway.ensure_customer(PAYER)
    assert customer is not None
    refused_card = asaas.tokenize_card(customer, REFUSED_CARDS[1])["creditCardToken"]
    expired_card = asaas.tokenize_card(customer, APPROVED_CARD)["creditCardToken"]
    asaas.refuse_card_token(expired_card)  # a card saved earlier, refused now
    for token in (refused_card, expired_card):
        request = charge_request("CARD", 3000, saved_method_ref=token, off_session=True)
        result = await gateway.charge(request)
        assert result.outcome is Outcome.DECLINED
        assert "não autorizada" in (result.decline_reason or "")
        assert asaas.payments(request.idempotency_key) == []  # Asaas keeps no refused payment
        assert await gateway.find_payment(request.idempotency_key, PAYER) is None


async def test_a_kept_card_is_charged_only_with_the_payers_address_and_a_production_account_keeps_none(
    asaas: FakeAsaasController,  # noqa: F811
    gateway: AsaasGateway,
    sink: WebhookSink,
) -> None:
    first = await gateway.charge(charge_request("CARD", 4990, save_method=True))
    paid = asaas.pay(first.provider_ref, card_number=APPROVED_CARD)
    token = paid["creditCard"]["creditCardToken"]
    without = await gateway.charge(charge_request("CARD", 4990, saved_method_ref=token, remote_ip=None))
    assert without.outcome is Outcome.NOT_ATTEMPTED and "remoteIp" in (without.decline_reason or "")
    with_ip = charge_request("CARD", 4990, saved_method_ref=token, remote_ip="2001:db8::7")
    assert (await gateway.charge(with_ip)).outcome is Outcome.SUCCEEDED  # the fake refuses it without remoteIp

    asaas.card_tokenization(False)  # a production account not approved for card tokenization
    hosted = await gateway.charge(charge_request("CARD", 4990, save_method=True))
    asaas.pay(hosted.provider_ref, card_number=APPROVED_CARD)
    notice = await notice_of(gateway, asaas, sink, "PAYMENT_CONFIRMED", hosted.provider_ref)
    assert (notice.outcome, notice.saved_method) == (Outcome.SUCCEEDED, None)


async def test_refunds_that_wait_end_done_or_denied_and_boletos_are_refunded_through_their_own_flow(
    asaas: FakeAsaasController,  # noqa: F811
    gateway: AsaasGateway,
    sink: WebhookSink,
) -> None:
    asaas.refunds_wait()
    pix = (await gateway.charge(charge_request("PIX", 10000))).provider_ref
    asaas.pay(pix)
    asked = await gateway.refund(pix, 2500, "BRL", "rf-1")
    assert (asked.outcome, asked.provider_ref) == (Outcome.PENDING, f"{pix}/refunds/rf-1")
    waiting = await notice_of(gateway, asaas, sink, "PAYMENT_REFUND_IN_PROGRESS", pix)
    assert [(r.amount, r.outcome, r.key) for r in waiting.refunds] == [(2500, Outcome.PENDING, "rf-1")]
    asaas.finish_refund(pix, done=False)
    denied = await notice_of(gateway, asaas, sink, "PAYMENT_REFUND_DENIED", pix)
    assert [(r.amount, r.outcome, r.key) for r in denied.refunds] == [(2500, Outcome.DECLINED, "rf-1")]
    assert (await gateway.refund(pix, 2500, "BRL", "rf-1")).outcome is Outcome.DECLINED  # a retry: still denied
    assert (await gateway.refund(pix, 2500, "BRL", "rf-2")).outcome is Outcome.PENDING
    asaas.finish_refund(pix, done=True)
    done = await notice_of(gateway, asaas, sink, "PAYMENT_PARTIALLY_REFUNDED", pix)
    assert [(r.outcome, r.key) for r in done.refunds] == [(Outcome.DECLINED, "rf-1"), (Outcome.SUCCEEDED, "rf-2")]
    assert [(r.outcome, r.key) for r in await gateway.refunds_of(pix) or []] == [
        (Outcome.DECLINED, "rf-1"),
        (Outcome.SUCCEEDED, "rf-2"),
    ]

    boleto = (await gateway.charge(charge_request("BOLETO", 8000))).provider_ref
    asaas.pay(boleto)
    assert (await gateway.refund(boleto, 4000, "BRL", "rf-3")).outcome is Outcome.DECLINED  # in full only
    whole = await gateway.refund(boleto, 8000, "BRL", "rf-4")
    assert whole.outcome is Outcome.PENDING and whole.payer_action is not None
    assert whole.payer_action["kind"] == "URL" and whole.payer_action["url"].startswith(asaas.url)
    assert (await gateway.refund(boleto, 8000, "BRL", "rf-4")).outcome is Outcome.PENDING  # a retry asks nothing
    assert len([r for r in asaas.requests() if r["path"].endswith("/bankSlip/refund")]) == 1


async def test_the_sandbox_actions_confirm_and_expire_a_charge_as_documented(
    asaas: FakeAsaasController,  # noqa: F811
    gateway: AsaasGateway,
    sink: WebhookSink,
) -> None:
    async with httpx.AsyncClient(base_url=asaas.url, headers={"access_token": asaas.token}) as api:
        boleto = (await gateway.charge(charge_request("BOLETO", 8000))).provider_ref
        assert (await api.post(f"/v3/sandbox/payment/{boleto}/overdue")).json()["status"] == "OVERDUE"
        assert (await notice_of(gateway, asaas, sink, "PAYMENT_OVERDUE", boleto)).outcome is None
        assert (await api.post(f"/v3/sandbox/payment/{boleto}/confirm")).json()["status"] == "RECEIVED"
        assert (await notice_of(gateway, asaas, sink, "PAYMENT_RECEIVED", boleto)).outcome is Outcome.SUCCEEDED
        card = (await gateway.charge(charge_request("CARD", 5000))).provider_ref
        assert (await api.post(f"/v3/sandbox/payment/{card}/confirm")).json()["status"] == "CONFIRMED"
        assert (await api.post(f"/v3/sandbox/payment/{card}/confirm")).status_code == 400  # paid already
    async with httpx.AsyncClient(base_url=asaas.url) as anonymous:  # authenticated like the rest of the API
        assert (await anonymous.post(f"/v3/sandbox/payment/{card}/overdue")).status_code == 401


async def test_refunds_partial_then_full_are_idempotent(
    asaas: FakeAsaasController,  # noqa: F811
    gateway: AsaasGateway,
    sink: WebhookSink,
) -> None:
    result = await gateway.charge(charge_request("PIX", 10000))
    pay_id = result.provider_ref
    assert pay_id is not None
    asaas.pay(pay_id)
    assert (await notice_of(gateway, asaas, sink, "PAYMENT_RECEIVED", pay_id)).outcome is Outcome.SUCCEEDED

    partial = await gateway.refund(pay_id, 2550, "BRL", "rf-1")
    assert (partial.outcome, partial.provider_ref) == (Outcome.SUCCEEDED, f"{pay_id}/refunds/rf-1")
    assert (await gateway.refund(pay_id, 2550, "BRL", "rf-1")).outcome is Outcome.SUCCEEDED  # a retry
    assert len(asaas.payments()[0]["refunds"]) == 1
    notice = await notice_of(gateway, asaas, sink, "PAYMENT_PARTIALLY_REFUNDED", pay_id)
    assert notice.outcome is None
    assert [(r.amount, r.outcome, r.key) for r in notice.refunds] == [(2550, Outcome.SUCCEEDED, "rf-1")]

    assert (await gateway.refund(pay_id, 7450, "BRL", "rf-2")).outcome is Outcome.SUCCEEDED
    payment = next(p for p in asaas.payments() if p["id"] == pay_id)
    assert payment["status"] == "REFUNDED" and [r["value"] for r in payment["refunds"]] == [25.5, 74.5]
    notice = await notice_of(gateway, asaas, sink, "PAYMENT_REFUNDED", pay_id)
    assert [(r.amount, r.key) for r in notice.refunds] == [(2550, "rf-1"), (7450, "rf-2")]
    assert {r.outcome for r in notice.refunds} == {Outcome.SUCCEEDED}
    assert [(r.amount, r.outcome, r.key) for r in await gateway.refunds_of(pay_id) or []] == [
        (2550, Outcome.SUCCEEDED, "rf-1"),
        (7450, Outcome.SUCCEEDED, "rf-2"),
    ]

    too_much = await gateway.refund(pay_id, 1, "BRL", "rf-3")
    assert too_much.outcome is Outcome.DECLINED and too_much.reason
    assert (await gateway.refund(pay_id, 100, "USD", "rf-4")).outcome is Outcome.NOT_ATTEMPTED


async def test_find_payment_by_our_reference(asaas: FakeAsaasController, gateway: AsaasGateway) -> None:  # noqa: F811
    request = charge_request("BOLETO", 1234)
    created = await gateway.charge(request)
    found = await gateway.find_payment(request.idempotency_key, PAYER)
    assert found is not None
    assert (found.outcome, found.provider_ref) == (Outcome.PENDING, created.provider_ref)
    assert found.payer_action == created.payer_action
    assert await gateway.find_payment("never-sent", PAYER) is None

    assert sdk(asaas).payments.delete(created.provider_ref)["deleted"] is True
    assert await gateway.find_payment(request.idempotency_key, PAYER) is None  # a deleted payment does not count
    gone = await gateway.get_payment(created.provider_ref or "")
    assert gone.outcome is Outcome.NOT_ATTEMPTED and "deleted" in (gone.decline_reason or "")


# -- faults: every failure folds into the outcome contract ---------------------------------------------


async def test_a_timeout_after_the_payment_was_made_is_unknown_and_found_later(
    asaas: FakeAsaasController,  # noqa: F811
) -> None:
    gateway = make_gateway(asaas, timeout_seconds=0.5)
    await gateway.ensure_customer(PAYER)
    asaas.fault("slow", "POST", "/v3/payments", seconds=2, act_first=True)
    request = charge_request("PIX", 2500)
    started = time.monotonic()
    result = await gateway.charge(request)
    assert result.outcome is Outcome.UNKNOWN and time.monotonic() - started < 1.9
    found = await gateway.find_payment(request.idempotency_key, PAYER)
    assert found is not None and found.outcome is Outcome.PENDING
    assert found.provider_ref == only_payment(asaas, request.idempotency_key)["id"]
    retried = await gateway.charge(request)  # a retry adopts the payment instead of charging twice
    assert retried.provider_ref == found.provider_ref
    only_payment(asaas, request.idempotency_key)
    posts = [r for r in asaas.requests() if r["method"] == "POST" and r["path"] == "/v3/payments"]
    assert len(posts) == 1


@pytest.mark.parametrize("act_first", [False, True])
async def test_a_dropped_connection_is_unknown(
    asaas: FakeAsaasController,  # noqa: F811
    gateway: AsaasGateway,
    act_first: bool,
) -> None:
    await gateway.ensure_customer(PAYER)
    asaas.fault("drop", "POST", "/v3/payments", act_first=act_first)
    request = charge_request("BOLETO", 5000)
    assert (await gateway.charge(request)).outcome is Outcome.UNKNOWN
    assert [r["status"] for r in asaas.requests() if r["fault"]] == ["dropped"]
    found = await gateway.find_payment(request.idempotency_key, PAYER)
    assert (found is not None) is act_first


@pytest.mark.parametrize("act_first", [False, True])
async def test_a_server_error_is_unknown(asaas: FakeAsaasController, gateway: AsaasGateway, act_first: bool) -> None:  # noqa: F811
    await gateway.ensure_customer(PAYER)
    asaas.fault("error500", "POST", "/v3/payments", act_first=act_first)
    request = charge_request("PIX", 5000)
    result = await gateway.charge(request)
    assert result.outcome is Outcome.UNKNOWN and "500" in (result.decline_reason or "")
    assert len(asaas.payments(request.idempotency_key)) == int(act_first)


async def test_server_errors_on_reads_are_unknown_never_none(
    asaas: FakeAsaasController,  # noqa: F811
    gateway: AsaasGateway,
) -> None:
    created = await gateway.charge(charge_request("PIX", 5000))
    assert created.provider_ref is not None
    asaas.fault("drop", "GET", "/v3/payments", count=1)  # the SDK retries a GET: this one goes unnoticed
    assert (await gateway.get_payment(created.provider_ref)).outcome is Outcome.PENDING
    asaas.fault("error500", "GET", "/v3/payments", count=20)  # the SDK gives up: requests' RetryError
    looked_up = await gateway.get_payment(created.provider_ref)
    assert (looked_up.outcome, looked_up.provider_ref) == (Outcome.UNKNOWN, created.provider_ref)
    found = await gateway.find_payment("whatever", PAYER)
    assert found is not None and found.outcome is Outcome.UNKNOWN


@pytest.mark.parametrize("body", ["text", "json", "list"])
async def test_a_malformed_answer_is_unknown(asaas: FakeAsaasController, gateway: AsaasGateway, body: str) -> None:  # noqa: F811
    await gateway.ensure_customer(PAYER)
    asaas.fault("malformed", "POST", "/v3/payments", body=body)
    assert (await gateway.charge(charge_request("CARD", 5000))).outcome is Outcome.UNKNOWN
    asaas.fault("malformed", "GET", "/v3/payments", body=body)
    found = await gateway.find_payment("whatever", PAYER)
    assert found is not None and found.outcome is Outcome.UNKNOWN  # a garbled list is not "no payment"


async def test_no_connection_at_all_is_not_attempted() -> None:
    nowhere = AsaasGateway(
        GatewayConfig(
            credentials={"api_key": "k", "webhook_token": WEBHOOK_TOKEN},
            settings={"api_base": f"http://127.0.0.1:{closed_port()}", "timeout_seconds": 1, "retry_backoff": 0},
        )
    )
    payer = Payer(key="WORKSPACE:1", name="A", tax_id="24971563792", provider_customer_ref="cus_1")
    result = await nowhere.charge(charge_request("PIX", 100, payer=payer))
    assert result.outcome is Outcome.NOT_ATTEMPTED and "could not be reached" in (result.decline_reason or "")


async def test_a_rejected_api_key_is_a_clear_error_without_the_key(asaas: FakeAsaasController) -> None:  # noqa: F811
    wrong_key = "$aact_hmlg_WRONG_" + secrets.token_hex(16)
    gateway = make_gateway(asaas, api_key=wrong_key)
    with pytest.raises(AsaasAuthError) as caught:
        await gateway.ensure_customer(PAYER)
    assert "401" in str(caught.value) and wrong_key not in str(caught.value) and wrong_key not in repr(caught.value)
    result = await gateway.charge(charge_request("PIX", 100))
    assert result.outcome is Outcome.NOT_ATTEMPTED
    assert "API key" in (result.decline_reason or "") and wrong_key not in repr(result)
    payer = Payer(key="WORKSPACE:1", name="A", tax_id="24971563792", provider_customer_ref="cus_1")
    assert (await gateway.charge(charge_request("PIX", 100, payer=payer))).outcome is Outcome.NOT_ATTEMPTED
    assert (await gateway.refund("pay_1", 100, "BRL", "r")).outcome is Outcome.NOT_ATTEMPTED
    assert {r["status"] for r in asaas.requests()} == {401}


# -- webhooks ------------------------------------------------------------------------------------------


async def test_webhooks_need_our_token(asaas: FakeAsaasController, gateway: AsaasGateway, sink: WebhookSink) -> None:  # noqa: F811
    result = await gateway.charge(charge_request("PIX", 100))
    hook = received(asaas, sink, "PAYMENT_CREATED", result.provider_ref or "")
    assert hook.headers["asaas-access-token"] == WEBHOOK_TOKEN
    notice = await gateway.parse_webhook(hook.body, hook.headers)
    assert (notice.event_type, notice.outcome, notice.provider_ref) == ("PAYMENT_CREATED", None, result.provider_ref)
    assert notice.event_id == json.loads(hook.body)["id"]
    assert (await gateway.parse_webhook(hook.body, {"Asaas-Access-Token": WEBHOOK_TOKEN})).event_id == notice.event_id

    forged = {**hook.headers, "asaas-access-token": WEBHOOK_TOKEN[:-1] + "x"}
    missing = {k: v for k, v in hook.headers.items() if k != "asaas-access-token"}
    for headers in (forged, missing, {"asaas-access-token": ""}):
        with pytest.raises(WebhookRejected) as caught:
            await gateway.parse_webhook(hook.body, headers)
        assert WEBHOOK_TOKEN not in str(caught.value)
    for body in (b"{not json", b"\xff\xfe", b"[1, 2]", b'{"event": "PAYMENT_RECEIVED"}', b'{"id": "e", "payment": 1}'):
        with pytest.raises(WebhookRejected):
            await gateway.parse_webhook(body, hook.headers)
    unconfigured = AsaasGateway(GatewayConfig(credentials={"api_key": asaas.token}))
    with pytest.raises(WebhookRejected):
        await unconfigured.parse_webhook(hook.body, hook.headers)


async def test_webhook_events_map_to_notices(
    asaas: FakeAsaasController,  # noqa: F811
    gateway: AsaasGateway,
    sink: WebhookSink,
) -> None:
    async def card_paid() -> str:
        result = await gateway.charge(charge_request("CARD", 8000))
        assert result.provider_ref is not None
        asaas.pay(result.provider_ref, card_number=APPROVED_CARD)
        return result.provider_ref

    async def notice(event: str, payment_id: str) -> WebhookNotice:
        return await notice_of(gateway, asaas, sink, event, payment_id)

    won = await card_paid()
    asaas.settle(won)
    assert (await notice("PAYMENT_RECEIVED", won)).outcome is Outcome.SUCCEEDED
    asaas.open_chargeback(won)
    opened = await notice("PAYMENT_CHARGEBACK_REQUESTED", won)
    assert (opened.disputed, opened.charged_back, opened.outcome) == (True, False, None)
    asaas.dispute_chargeback(won)
    assert (await notice("PAYMENT_CHARGEBACK_DISPUTE", won)).disputed
    asaas.resolve_chargeback(won, won=True)
    reversal = await notice("PAYMENT_AWAITING_CHARGEBACK_REVERSAL", won)
    assert (reversal.outcome, reversal.disputed, reversal.charged_back) == (Outcome.SUCCEEDED, False, False)

    lost = await card_paid()
    asaas.open_chargeback(lost)
    asaas.dispute_chargeback(lost)
    assert await gateway.dispute_of(lost) is DisputeStatus.OPEN
    asaas.resolve_chargeback(lost, won=False)
    asaas.wait_deliveries()
    # Asaas documents no event for a lost chargeback: none arrives, the chargeback endpoint says so.
    last = [json.loads(h.body) for h in sink.received if json.loads(h.body)["payment"]["id"] == lost][-1]
    assert last["event"] == "PAYMENT_CHARGEBACK_DISPUTE" and last["payment"]["chargeback"]["status"] == "IN_DISPUTE"
    assert await gateway.dispute_of(lost) is DisputeStatus.LOST
    assert await gateway.dispute_of(won) is DisputeStatus.WON
    # A payment whose final state does reach a webhook (a test may send one) is read as lost.
    final = {**last, "payment": {**last["payment"], "chargeback": {"status": "DISPUTE_LOST"}}}
    gone = await gateway.parse_webhook(json.dumps(final).encode(), {"asaas-access-token": WEBHOOK_TOKEN})
    assert (gone.charged_back, gone.disputed) == (True, True)

    unpaid = await gateway.charge(charge_request("BOLETO", 8000))
    assert unpaid.provider_ref is not None
    assert await gateway.dispute_of(unpaid.provider_ref) is None  # no chargeback: 404
    asaas.mark_overdue(unpaid.provider_ref)
    assert (await notice("PAYMENT_OVERDUE", unpaid.provider_ref)).outcome is None
    assert sdk(asaas).payments.delete(unpaid.provider_ref)["deleted"]
    assert (await notice("PAYMENT_DELETED", unpaid.provider_ref)).outcome is Outcome.DECLINED


def test_failed_deliveries_are_kept_and_sent_again_in_order(asaas: FakeAsaasController, sink: WebhookSink) -> None:  # noqa: F811
    sink.status = 503
    customer = sdk(asaas).customers.create(name="Ana", cpf_cnpj="24971563792")
    payment = sdk(asaas).payments.create(customer["id"], "PIX", 10.0, TOMORROW)
    asaas.wait_deliveries()
    [record] = asaas.event_log()
    assert record["pending_webhooks"] and record["deliveries"][0]["status"] == 503
    sink.status = 200
    asaas.pay(payment["id"])  # a SEQUENTIALLY webhook sends the held event first
    asaas.wait_deliveries()
    delivered = [json.loads(h.body)["event"] for h in sink.received if h.body]
    assert delivered[-2:] == ["PAYMENT_CREATED", "PAYMENT_RECEIVED"]
    assert all(not r["pending_webhooks"] for r in asaas.event_log())
    sink.status = 500
    asaas.mark_overdue(sdk(asaas).payments.create(customer["id"], "BOLETO", 5.0, TOMORROW)["id"])
    asaas.wait_deliveries()
    sink.status = 200
    asaas.retry_webhooks()
    asaas.wait_deliveries()
    assert all(not r["pending_webhooks"] for r in asaas.event_log())


def test_a_failing_delivery_is_retried_holds_the_later_ones_and_the_webhook_pauses_after_15_failures(
    asaas: FakeAsaasController,  # noqa: F811
    sink: WebhookSink,
) -> None:
    """Asaas's sequential queue: only a 200 moves it on; the failing event is tried again by itself while
    the later ones wait; after 15 failures in a row the webhook is interrupted and events keep being
    queued; reactivated, it sends them all, in order."""
    sink.status = 409
    asaas.retry_failed_deliveries_every(0.01)
    first = asaas.emit_event("TRANSFER_DONE")
    second = asaas.emit_event("INVOICE_CREATED")
    deadline = time.monotonic() + 10
    while not asaas.webhooks()[0]["interrupted"]:
        assert time.monotonic() < deadline, asaas.webhooks()
        time.sleep(0.02)
    asaas.wait_deliveries()
    time.sleep(0.1)  # no retry comes after the pause
    log = {record["body"]["id"]: record for record in asaas.event_log()}
    assert [d["status"] for d in log[first["id"]]["deliveries"]] == [409] * 15
    assert log[second["id"]]["deliveries"] == [] and log[second["id"]]["pending_webhooks"]
    [webhook] = asaas.webhooks()
    assert webhook["penalizedRequestsCount"] == 15
    third = asaas.emit_event("ACCOUNT_STATUS_GENERAL_APPROVAL_APPROVED")  # made and queued while paused
    asaas.wait_deliveries()
    assert len(sink.received) == 15

    sink.status = 200
    reactivated = asaas.update_webhook(webhook["id"], interrupted=False)
    assert reactivated["interrupted"] is False and reactivated["penalizedRequestsCount"] == 0
    asaas.wait_deliveries()
    delivered = [json.loads(h.body)["id"] for h in sink.received[15:]]
    assert delivered == [first["id"], second["id"], third["id"]]
    assert all(not r["pending_webhooks"] for r in asaas.event_log())


async def test_events_of_other_kinds_have_the_documented_shapes_and_name_no_payment(
    asaas: FakeAsaasController,  # noqa: F811
    gateway: AsaasGateway,
    sink: WebhookSink,
) -> None:
    objects = {
        "TRANSFER_DONE": "transfer",
        "INVOICE_CREATED": "invoice",
        "ACCOUNT_STATUS_GENERAL_APPROVAL_APPROVED": "accountStatus",
    }
    for event in objects:
        asaas.emit_event(event)
    asaas.wait_deliveries()
    assert len(sink.received) == 3
    for hook in sink.received:
        body = json.loads(hook.body)
        key = objects[body["event"]]
        assert body["id"].startswith("evt_") and body["dateCreated"] and "payment" not in body
        assert body[key]["id"] and set(body["account"]) == {"id", "ownerId"}
        notice = await gateway.parse_webhook(hook.body, hook.headers)
        assert (notice.event_type, notice.provider_ref, notice.outcome) == (body["event"], None, None)
    assert json.loads(sink.received[0].body)["transfer"]["status"] == "DONE"
    with pytest.raises(FakeAsaasControlError) as refused:
        asaas.emit_event("SUBSCRIPTION_CREATED")
    assert refused.value.status == 400


# -- the fake itself, over plain HTTP ------------------------------------------------------------------


def test_the_fake_requires_the_token_and_takes_trailing_slashes(asaas: FakeAsaasController) -> None:  # noqa: F811
    with httpx.Client(base_url=asaas.url, headers={"access_token": asaas.token}) as http:
        created = http.post("/v3/customers/", json={"name": "Ana", "cpfCnpj": "12.345.678/0001-95"})
        assert created.status_code == 200 and created.json()["personType"] == "JURIDICA"
        for path in ("/v3/customers", "/v3/customers/"):
            page = http.get(path, params={"cpfCnpj": "12345678000195"}).json()
            assert {k: page[k] for k in ("object", "hasMore", "totalCount", "offset")} == {
                "object": "list",
                "hasMore": False,
                "totalCount": 1,
                "offset": 0,
            }
        bad = http.post("/v3/customers", json={"name": "Ana", "cpfCnpj": "123"})
        assert bad.status_code == 400 and bad.json()["errors"][0]["code"] == "invalid_cpfCnpj"
    assert httpx.get(asaas.url + "/v3/payments").json()["errors"][0]["code"] == "access_token_not_found"
    wrong = httpx.get(asaas.url + "/v3/payments/", headers={"access_token": "nope"})
    assert wrong.status_code == 401 and wrong.json()["errors"][0]["code"] == "invalid_access_token"


# -- logs ----------------------------------------------------------------------------------------------


async def test_no_secret_or_card_data_reaches_any_log(
    asaas: FakeAsaasController,  # noqa: F811
    gateway: AsaasGateway,
    sink: WebhookSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: the SDK's "asaas", urllib3, httpx, ours, the fake's
    hosted = await gateway.charge(charge_request("CARD", 7000))
    assert hosted.provider_ref is not None
    token = asaas.pay(hosted.provider_ref, card_number=APPROVED_CARD)["creditCard"]["creditCardToken"]
    notice = await notice_of(gateway, asaas, sink, "PAYMENT_CONFIRMED", hosted.provider_ref)
    assert notice.saved_method is not None
    again = await gateway.charge(charge_request("CARD", 7000, saved_method_ref=token, off_session=True))
    assert again.outcome is Outcome.SUCCEEDED
    asaas.fault("error500", "POST", "/v3/payments")
    assert (await gateway.charge(charge_request("CARD", 7000, saved_method_ref=token))).outcome is Outcome.UNKNOWN
    wrong_key = "$aact_hmlg_LOGTEST_" + secrets.token_hex(12)
    with pytest.raises(AsaasAuthError):
        await make_gateway(asaas, api_key=wrong_key).ensure_customer(PAYER)

    records = caplog.records
    assert any(r.name == "asaas" and "hidden" in r.getMessage() for r in records), "the SDK's body lines were seen"
    assert any(r.name.startswith("urllib3") for r in records)
    everything = caplog.text + "\n".join(r.getMessage() + str(r.args) for r in records)
    for secret in (asaas.token, wrong_key, WEBHOOK_TOKEN, APPROVED_CARD, token, "24971563792"):
        assert secret not in everything, f"{secret[:6]}... leaked into the logs"


# -- the fake in its own process -----------------------------------------------------------------------


@pytest.fixture
def standalone_fake() -> Iterator[FakeAsaasController]:
    """``python -m tests.fake_asaas --port N --token T`` in its own process, driven over HTTP."""
    token = "standalone-" + secrets.token_hex(8)
    port = closed_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_asaas", "--port", str(port), "--token", token],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert process.stdout is not None
        url = f"http://127.0.0.1:{port}"
        assert process.stdout.readline().strip() == f"fake-asaas listening on {url}"
        with FakeAsaasController(url, token) as controller:
            deadline = time.monotonic() + 10
            while True:
                try:
                    assert controller.health()
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the standalone fake did not come up"
                    time.sleep(0.05)
            yield controller
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_the_fake_runs_standalone_and_the_sdk_talks_to_it(standalone_fake: FakeAsaasController) -> None:
    client = Asaas(standalone_fake.token, base_url=standalone_fake.url, timeout=5)
    customer = client.customers.create(name="Ana", cpf_cnpj="24971563792", external_reference="WS:1")
    payment = client.payments.create(customer["id"], "PIX", 12.34, TOMORROW)
    assert client.payments.get_pix_qr_code(payment["id"])["payload"].startswith("000201")
    standalone_fake.pay(payment["id"])
    assert client.payments.get(payment["id"])["status"] == "RECEIVED"
    assert standalone_fake.events(payment_id=payment["id"])[-1]["event"] == "PAYMENT_RECEIVED"
    result = await make_gateway(standalone_fake).charge(charge_request("BOLETO", 1234))
    assert result.outcome is Outcome.PENDING
    assert result.provider_ref in {p["id"] for p in standalone_fake.payments()}


# -- refunds that go wrong -------------------------------------------------------------------------------


async def a_paid_pix(asaas: FakeAsaasController, gateway: AsaasGateway, amount: int = 10000) -> str:  # noqa: F811
    result = await gateway.charge(charge_request("PIX", amount))
    assert result.provider_ref is not None
    asaas.pay(result.provider_ref)
    return result.provider_ref


def refunds_at_the_fake(asaas: FakeAsaasController, pay_id: str) -> list[dict[str, Any]]:  # noqa: F811
    return next(p for p in asaas.payments() if p["id"] == pay_id)["refunds"] or []


async def test_a_refund_of_a_payment_not_yet_paid_is_declined_with_asaas_reason(
    asaas: FakeAsaasController,  # noqa: F811
    gateway: AsaasGateway,
) -> None:
    unpaid = await gateway.charge(charge_request("BOLETO", 5000))
    assert unpaid.provider_ref is not None
    result = await gateway.refund(unpaid.provider_ref, 5000, "BRL", "rf-1")
    assert result.outcome is Outcome.DECLINED and result.provider_ref is None
    assert result.reason == "Asaas refused the refund: Não é possível estornar uma cobrança com situação PENDING."
    assert refunds_at_the_fake(asaas, unpaid.provider_ref) == []


async def test_a_refund_of_a_payment_asaas_does_not_know_is_declined(
    asaas: FakeAsaasController,  # noqa: F811
    gateway: AsaasGateway,
) -> None:
    result = await gateway.refund("pay_doesnotexist", 100, "BRL", "rf-1")
    assert (result.outcome, result.reason) == (Outcome.DECLINED, "Asaas refused the refund: Cobrança não encontrada.")
    assert [r["method"] for r in asaas.requests()] == ["GET"]  # nothing was asked to refund


@pytest.mark.parametrize("act_first", [False, True])
async def test_a_refund_answered_with_a_server_error_is_unknown_and_a_retry_refunds_once(
    asaas: FakeAsaasController,  # noqa: F811
    gateway: AsaasGateway,
    act_first: bool,
) -> None:
    """Asaas may or may not have refunded (act_first: it did). The retry with the same key finds the
    refund it made by its description, or makes it: one refund either way."""
    pay_id = await a_paid_pix(asaas, gateway)
    asaas.fault("error500", "POST", f"/v3/payments/{pay_id}/refund", act_first=act_first)
    first = await gateway.refund(pay_id, 4000, "BRL", "rf-1")
    assert (first.outcome, first.provider_ref, first.reason) == (Outcome.UNKNOWN, None, "Asaas answered HTTP 500")
    assert len(refunds_at_the_fake(asaas, pay_id)) == int(act_first)
    again = await gateway.refund(pay_id, 4000, "BRL", "rf-1")
    assert (again.outcome, again.provider_ref) == (Outcome.SUCCEEDED, f"{pay_id}/refunds/rf-1")
    [refund] = refunds_at_the_fake(asaas, pay_id)
    assert (refund["value"], refund["status"], refund["description"]) == (40.0, "DONE", "whitebill refund rf-1")


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("drop", "the connection to Asaas failed before an answer arrived"),
        ("malformed", "Asaas answered something unexpected (the payment is not a JSON object)"),
    ],
)
async def test_a_refund_without_a_readable_answer_is_unknown(
    asaas: FakeAsaasController,  # noqa: F811
    gateway: AsaasGateway,
    mode: str,
    reason: str,
) -> None:
    pay_id = await a_paid_pix(asaas, gateway)
    asaas.fault(mode, "POST", f"/v3/payments/{pay_id}/refund", act_first=True, body="list")
    result = await gateway.refund(pay_id, 1000, "BRL", "rf-1")
    assert (result.outcome, result.reason) == (Outcome.UNKNOWN, reason)


async def test_a_refund_whose_payment_cannot_be_read_first_is_not_attempted(
    asaas: FakeAsaasController,  # noqa: F811
    gateway: AsaasGateway,
) -> None:
    pay_id = await a_paid_pix(asaas, gateway)
    asaas.fault("error500", "GET", f"/v3/payments/{pay_id}", count=20)  # the SDK's retries too
    result = await gateway.refund(pay_id, 1000, "BRL", "rf-1")
    assert result.outcome is Outcome.NOT_ATTEMPTED
    assert result.reason == "could not read the payment: Asaas kept answering with server errors"
    asaas.clear_faults()
    assert refunds_at_the_fake(asaas, pay_id) == []


async def test_a_refund_with_a_rejected_key_is_not_attempted(asaas: FakeAsaasController) -> None:  # noqa: F811
    pay_id = await a_paid_pix(asaas, make_gateway(asaas))
    result = await make_gateway(asaas, api_key="$aact_hmlg_WRONG_0000").refund(pay_id, 1000, "BRL", "rf-1")
    assert result.outcome is Outcome.NOT_ATTEMPTED and result.reason and "HTTP 401" in result.reason
    assert refunds_at_the_fake(asaas, pay_id) == []


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        (0, "invalid refund: the amount must be positive"),
        (10**15, "invalid refund: amount out of range"),
        (-1, "invalid refund: amount out of range"),
    ],
)
async def test_a_refund_of_an_impossible_amount_is_not_attempted_and_asks_asaas_nothing(
    asaas: FakeAsaasController,  # noqa: F811
    gateway: AsaasGateway,
    amount: int,
    reason: str,
) -> None:
    result = await gateway.refund("pay_1", amount, "BRL", "rf-1")
    assert (result.outcome, result.reason) == (Outcome.NOT_ATTEMPTED, reason)
    assert asaas.requests() == []


# Asaas lists a payment's refunds with the statuses PENDING, CANCELLED and DONE (docs.asaas.com/docs/refunds);
# the fake completes every refund at once (DONE), so these answers come from a scripted server instead.


@contextlib.contextmanager
def scripted_asaas(before: dict[str, Any], after: dict[str, Any] | None) -> Iterator[tuple[AsaasGateway, list[str]]]:
    """Answers GET /v3/payments/{id} with ``before`` and POST .../refund with ``after``; records the calls."""
    calls: list[str] = []

    async def read(request: Request) -> Response:
        calls.append(f"GET {request.url.path}")
        return JSONResponse(before)

    async def refund(request: Request) -> Response:
        calls.append(f"POST {request.url.path}")
        return JSONResponse(after)

    app = Starlette(
        routes=[
            Route("/v3/payments/{id}", read, methods=["GET"]),
            Route("/v3/payments/{id}/refund", refund, methods=["POST"]),
            Route("/v3/payments/{id}/refund/", refund, methods=["POST"]),
        ]
    )
    server = ServerThread(app)
    server.start()
    try:
        gateway = AsaasGateway(
            GatewayConfig(
                credentials={"api_key": "scripted-key", "webhook_token": WEBHOOK_TOKEN},
                settings={"api_base": server.url, "timeout_seconds": 2, "retry_backoff": 0},
            )
        )
        yield gateway, calls
    finally:
        server.stop()


def an_asaas_payment(status: str, refunds: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"object": "payment", "id": "pay_1", "status": status, "value": 100.0, "refunds": refunds}


def a_refund_line(status: str, key: str = "rf-1") -> dict[str, Any]:
    return {"status": status, "value": 10.0, "description": f"whitebill refund {key}"}


@pytest.mark.parametrize(
    ("after", "outcome"),
    [
        (an_asaas_payment("RECEIVED", [a_refund_line("PENDING")]), Outcome.PENDING),
        (an_asaas_payment("RECEIVED", [a_refund_line("DONE", "other"), a_refund_line("CANCELLED")]), Outcome.DECLINED),
        (an_asaas_payment("REFUND_IN_PROGRESS"), Outcome.PENDING),  # no refunds listed: by the payment's status
        (an_asaas_payment("REFUND_REQUESTED"), Outcome.PENDING),
        (an_asaas_payment("REFUNDED"), Outcome.SUCCEEDED),
    ],
)
def test_a_refund_asaas_has_not_finished_or_cancelled_is_pending_or_declined(
    after: dict[str, Any], outcome: Outcome
) -> None:
    with scripted_asaas(an_asaas_payment("RECEIVED"), after) as (gateway, calls):
        result = anyio.run(gateway.refund, "pay_1", 1000, "BRL", "rf-1")
    assert (result.outcome, result.provider_ref) == (outcome, "pay_1/refunds/rf-1")
    assert calls == ["GET /v3/payments/pay_1", "POST /v3/payments/pay_1/refund"]


@pytest.mark.parametrize(("status", "outcome"), [("PENDING", Outcome.PENDING), ("CANCELLED", Outcome.DECLINED)])
def test_a_refund_already_asked_for_is_not_asked_again_and_reports_how_it_stands(status: str, outcome: Outcome) -> None:
    before = an_asaas_payment("RECEIVED", [a_refund_line(status)])
    with scripted_asaas(before, None) as (gateway, calls):
        result = anyio.run(gateway.refund, "pay_1", 1000, "BRL", "rf-1")
    assert (result.outcome, result.provider_ref) == (outcome, "pay_1/refunds/rf-1")
    assert calls == ["GET /v3/payments/pay_1"]
