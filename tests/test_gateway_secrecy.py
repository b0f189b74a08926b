"""Gateway credentials and card data never appear in a response or a log line.

The whole payment life runs in this process (the app through ASGI, both real SDKs, their HTTP
libraries) while every logger is switched to DEBUG and every record is kept: configuring Stripe and
Asaas, a Stripe card checkout, an Asaas card paid on the hosted page and its webhooks, a refund, a
forged webhook, an unknown outcome reconciled. Then every record and every response is searched.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import uuid

import anyio
import httpx
import pytest

from billing.charges import reconciler
from billing.core import clock
from billing.tenants import api_keys
from models.payments import Payment
from schema.ids import from_global_id, to_global_id
from tests.factories import a_partner, a_workspace
from tests.fake_asaas.control import APPROVED_CARD
from tests.shop import CHECKOUT, CONFIGURE, CREATE_PACKAGE, CREATE_PLAN, REFUND, WORKSPACE
from whitebill.app import create_app
from whitebill.settings import load_settings

pytestmark = pytest.mark.usefixtures("database")

VISA = "4242424242424242"
STRIPE_KEY = "sk_test_" + "s3cr3tStripeKey" + uuid.uuid4().hex
STRIPE_SECRET = "whsec_" + "s3cr3tSigning" + uuid.uuid4().hex
ASAAS_TOKEN = "asaasHookToken" + uuid.uuid4().hex


class KeepEverything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.fake_threads = {t.ident for t in threading.enumerate() if t.name.startswith("uvicorn-")}

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread in self.fake_threads:
            return  # the fake Asaas server is the test's provider, not whitebill
        extras = {
            k: v for k, v in record.__dict__.items() if k not in logging.LogRecord("", 0, "", 0, "", (), None).__dict__
        }
        text = record.getMessage() + " " + repr(extras)
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name}: {text}")


@pytest.fixture
def every_log_record():
    handler = KeepEverything()
    root = logging.getLogger()
    saved = (
        root.level,
        {
            name: (lg.level, lg.disabled)
            for name, lg in logging.root.manager.loggerDict.items()
            if isinstance(lg, logging.Logger)
        },
    )
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for logger in list(logging.root.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            logger.setLevel(logging.DEBUG)
            logger.disabled = False
    yield handler
    root.removeHandler(handler)
    root.setLevel(saved[0])
    for name, (level, disabled) in saved[1].items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.disabled = disabled


async def test_no_credential_or_card_number_reaches_a_response_or_a_log_line(
    every_log_record, asaas, localstripe, monkeypatch
) -> None:
    monkeypatch.setenv("WHITEBILL_STRIPE_API_BASE", localstripe.url)
    monkeypatch.setenv("WHITEBILL_ASAAS_API_BASE", asaas.url)
    responses: list[str] = []
    partner = await a_partner()
    workspace = await a_workspace(partner)
    ws = to_global_id("Workspace", workspace.id)
    key = (await api_keys.create_key(partner_id=partner.id)).secret
    # The app configures the domain from its settings: these are read after the API bases are set.
    app = create_app(dataclasses.replace(load_settings(), env="test"), manage_database=False)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test", headers={"authorization": f"Bearer {key}"}
    )

    async def gql(query: str, variables: dict | None = None) -> dict:
        answer = await http.post("/graphql", json={"query": query, "variables": variables or {}})
        responses.append(answer.text)
        body = answer.json()
        assert not body.get("errors"), body
        return body["data"]

    async def checkout(**variables) -> dict:
        made = await gql(CHECKOUT, {"ws": ws, "key": str(uuid.uuid4()), **variables})
        assert made["checkout"]["errors"] == [], made
        return made["checkout"]["payment"]

    plan = (await gql(CREATE_PLAN, {"name": "Pro", "amount": "99.90"}))["createPlan"]["plan"]["id"]
    package = (await gql(CREATE_PACKAGE))["createCreditPackage"]["creditPackage"]["id"]

    stripe_config = (
        await gql(CONFIGURE, {"provider": "stripe", "methods": ["CARD"], "key": STRIPE_KEY, "secret": STRIPE_SECRET})
    )["configureGateway"]["gatewayConfig"]
    card = await anyio.to_thread.run_sync(lambda: localstripe.create_card(VISA))
    paid = await checkout(item={"planId": plan}, method="CARD", card=card, save=True)
    assert paid["status"] == "SUCCEEDED"
    saved = (await gql(WORKSPACE, {"ws": ws}))["node"]["savedPaymentMethods"][0]["id"]
    await checkout(item={"creditPackageId": package}, method="CARD", saved=saved)
    refund = await gql(REFUND, {"payment": paid["id"], "amount": "1.00", "key": "refund-1"})
    assert refund["refundPayment"]["errors"] == []
    forged = await http.post(
        f"/webhooks/stripe/{from_global_id(stripe_config['id'])[1]}",
        content=b"{}",
        headers={"stripe-signature": "t=1,v1=00"},
    )
    assert forged.status_code == 401

    asaas_config = (
        await gql(
            CONFIGURE, {"provider": "asaas", "methods": ["CARD", "PIX"], "key": asaas.token, "secret": ASAAS_TOKEN}
        )
    )["configureGateway"]["gatewayConfig"]
    hosted = await checkout(item={"creditPackageId": package}, method="CARD", save=True, taxId="52998224725")
    ref = (await Payment.get(id=from_global_id(hosted["id"])[1])).provider_ref
    await anyio.to_thread.run_sync(lambda: asaas.pay(ref, APPROVED_CARD))
    path = f"/webhooks/asaas/{from_global_id(asaas_config['id'])[1]}"
    for event in asaas.events(payment_id=ref):
        answer = await http.post(
            path,
            content=json.dumps(event).encode(),
            headers={"asaas-access-token": ASAAS_TOKEN, "content-type": "application/json"},
        )
        assert answer.status_code == 200, answer.text
    assert (await http.post(path, content=b"{}", headers={"asaas-access-token": "nope"})).status_code == 401
    # An unknown outcome, looked up by the reconciler.
    asaas.fault("error500", "POST", "/v3/payments", count=1, act_first=True)
    unknown = await checkout(item={"creditPackageId": package}, method="PIX", taxId="52998224725")
    assert unknown["status"] == "UNKNOWN"
    due = (await Payment.get(id=from_global_id(unknown["id"])[1])).next_check_at
    await clock.advance(due - clock.now())
    assert await reconciler.run_due() == 1
    listed = await gql(
        "query($p: ID!) { node(id: $p) { ... on Partner {"
        " gatewayConfigs { nodes { provider credentialsHint webhookUrl } } } } }",
        {"p": to_global_id("Partner", partner.id)},
    )
    assert len(listed["node"]["gatewayConfigs"]["nodes"]) == 2
    responses.append(json.dumps(await gql(WORKSPACE, {"ws": ws})))
    await http.aclose()

    secrets = {
        "Stripe key": STRIPE_KEY,
        "Stripe signing secret": STRIPE_SECRET,
        "Asaas key": asaas.token,
        "Asaas webhook token": ASAAS_TOKEN,
        "card number": VISA,
        "Asaas card number": APPROVED_CARD,
    }
    assert len(every_log_record.lines) > 50  # the capture saw the SDKs and the app talking
    for what, secret in secrets.items():
        leaks = [line for line in every_log_record.lines if secret in line]
        assert not leaks, f"{what} in the log: {leaks[:2]}"
        assert not [r for r in responses if secret in r], f"{what} in a response"
