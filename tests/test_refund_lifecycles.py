"""Refunds and disputes as the providers live them, end to end: GraphQL on a real server, the real Stripe
SDK against localstripe, the real Asaas SDK against the fake Asaas, provider events posted to the server.

localstripe never fails a refund and has no disputes, so Stripe's ``refund.failed``,
``charge.refund.updated`` and ``charge.dispute.*`` events are built here from Stripe's API reference ("The
Refund object", "The Dispute object", "Types of events") and signed with the SDK's own signature helper.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from typing import Any

import anyio
import httpx
import pytest
import stripe

from billing.tenants import api_keys
from models.enums import PaymentStatus, RefundStatus
from models.operations import OutboxEvent
from models.payments import Payment, Refund
from schema.ids import from_global_id, to_global_id
from tests.factories import a_partner, a_workspace
from tests.graphql import GraphQLClient
from tests.shop import CONFIGURE, CREATE_PACKAGE, buy, points, workspace_view

pytestmark = pytest.mark.usefixtures("database")

VISA = "4242424242424242"
STRIPE_KEY = "sk_test_" + secrets.token_hex(12)
STRIPE_SECRET = "whsec_" + secrets.token_hex(16)
REFUND = """mutation($payment: ID!, $amount: String, $key: String!) {
  refundPayment(input: {paymentId: $payment, amount: $amount, idempotencyKey: $key, reason: "asked"}) {
    payment { status refunded { amount } refunds { nodes { id status amount { amount } } } }
    refund { id status amount { amount } reason failureReason payerAction }
    errors { code field message } } }"""
PAYMENT = """query($id: ID!) { node(id: $id) { ... on Payment { status refunded { amount }
  refunds { nodes { status amount { amount } failureReason } } } } }"""


@pytest.fixture
async def shop(server, localstripe) -> dict[str, Any]:
    partner = await a_partner()
    client = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    package = await client.data(CREATE_PACKAGE)
    made = await client.data(
        CONFIGURE, {"provider": "stripe", "methods": ["CARD"], "key": STRIPE_KEY, "secret": STRIPE_SECRET}
    )
    assert made["configureGateway"]["errors"] == [], made
    config = made["configureGateway"]["gatewayConfig"]
    workspace = await a_workspace(partner)
    return {
        "partner": partner,
        "client": client,
        "server": server,
        "stripe": localstripe,
        "package": package["createCreditPackage"]["creditPackage"]["id"],
        "path": f"/webhooks/stripe/{from_global_id(config['id'])[1]}",
        "workspace": workspace,
        "ws": to_global_id("Workspace", workspace.id),
    }


async def bought_with_stripe(shop: dict[str, Any]) -> tuple[dict[str, Any], Payment]:
    """500 points for BRL 50.00, paid by card at Stripe (localstripe)."""
    card = await anyio.to_thread.run_sync(lambda: shop["stripe"].create_card(VISA))
    bought = await buy(shop, {"creditPackageId": shop["package"]}, card=card)
    assert bought["payment"]["status"] == "SUCCEEDED", bought
    return bought["payment"], await Payment.get(id=from_global_id(bought["payment"]["id"])[1])


async def points_now(shop: dict[str, Any]) -> str:
    return points(await workspace_view(shop))


def stripe_event(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "evt_" + uuid.uuid4().hex,
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": obj},
    }


def a_refund_object(refund: Refund, payment: Payment, status: str, **extra: Any) -> dict[str, Any]:
    """A Refund as Stripe's API reference describes it, for the refund whitebill asked for."""
    return {
        "id": refund.provider_ref,
        "object": "refund",
        "amount": refund.amount,
        "currency": payment.currency.lower(),
        "payment_intent": payment.provider_ref,
        "metadata": {"whitebill_refund": refund.key},
        "status": status,
        **extra,
    }


def a_dispute(payment: Payment, status: str) -> dict[str, Any]:
    return {
        "id": "dp_" + uuid.uuid4().hex[:14],
        "object": "dispute",
        "amount": payment.amount,
        "currency": payment.currency.lower(),
        "payment_intent": payment.provider_ref,
        "reason": "fraudulent",
        "status": status,
    }


async def post_signed(shop: dict[str, Any], event: dict[str, Any], times: int = 1) -> list[httpx.Response]:
    body = json.dumps(event).encode()
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), STRIPE_SECRET)
    async with httpx.AsyncClient(base_url=shop["server"].url, timeout=10) as http:
        answers = await asyncio.gather(
            *(
                http.post(
                    shop["path"], content=body, headers={"content-type": "application/json", "stripe-signature": header}
                )
                for _ in range(times)
            )
        )
    assert all(answer.status_code == 200 for answer in answers), [answer.text for answer in answers]
    return list(answers)


async def partner_told(shop: dict[str, Any], prefix: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await OutboxEvent.filter(partner_id=shop["partner"].id, event_type__startswith=prefix).order_by("id")
    return [(row.event_type, row.payload) for row in rows]


# ------------------------------------------------------------------ Stripe refunds


async def test_a_stripe_refund_done_then_failed_takes_back_once_and_gives_back_once(shop) -> None:
    paid, payment = await bought_with_stripe(shop)
    assert await points_now(shop) == "500"
    made = await shop["client"].data(REFUND, {"payment": paid["id"], "amount": "25.00", "key": "refund-1"})
    answer = made["refundPayment"]
    assert answer["errors"] == [], made
    assert (answer["refund"]["status"], answer["refund"]["amount"]["amount"]) == ("DONE", "25.00")
    assert answer["payment"]["status"] == "PARTIALLY_REFUNDED"
    assert await points_now(shop) == "250"
    again = await shop["client"].data(REFUND, {"payment": paid["id"], "amount": "25.00", "key": "refund-1"})
    assert again["refundPayment"]["refund"]["id"] == answer["refund"]["id"]  # the same refund, not another
    assert await points_now(shop) == "250"

    # Days later the card's bank sends the money back: Stripe says so twice, in two events.
    refund = await Refund.get(id=from_global_id(answer["refund"]["id"])[1])
    failed = a_refund_object(refund, payment, "failed", failure_reason="expired_or_canceled_card")
    await post_signed(shop, stripe_event("refund.failed", failed), times=3)
    await post_signed(shop, stripe_event("charge.refund.updated", failed))
    view = (await shop["client"].data(PAYMENT, {"id": paid["id"]}))["node"]
    assert (view["status"], view["refunded"]) == ("SUCCEEDED", None)
    assert view["refunds"]["nodes"] == [
        {"status": "FAILED", "amount": {"amount": "25.00"}, "failureReason": "expired_or_canceled_card"}
    ]
    assert await points_now(shop) == "500"
    told = await partner_told(shop, "refund.")
    assert [(event, payload["was_done"]) for event, payload in told] == [
        ("refund.succeeded", False),
        ("refund.failed", True),
    ]
    # The whole payment can be refunded again.
    rest = await shop["client"].data(REFUND, {"payment": paid["id"], "key": "refund-2"})
    assert (
        rest["refundPayment"]["refund"]["status"] == "DONE"
        and rest["refundPayment"]["refund"]["amount"]["amount"] == "50.00"
    )
    assert await points_now(shop) == "0"


async def test_a_refund_made_in_stripes_dashboard_is_adopted_when_reported_once(shop) -> None:
    _, payment = await bought_with_stripe(shop)
    made_there = await anyio.to_thread.run_sync(
        lambda: stripe.StripeClient(STRIPE_KEY, base_addresses={"api": shop["stripe"].url}).v1.refunds.create(
            {"payment_intent": payment.provider_ref, "amount": 1000}
        )
    )
    charge = {
        "id": "ch_" + uuid.uuid4().hex[:14],
        "object": "charge",
        "amount": payment.amount,
        "amount_refunded": 1000,
        "payment_intent": payment.provider_ref,
    }
    await post_signed(shop, stripe_event("charge.refunded", charge), times=2)
    [adopted] = await Refund.filter(payment_id=payment.id)
    assert (adopted.status, adopted.amount, adopted.provider_ref) == (RefundStatus.DONE, 1000, made_there.id)
    assert await points_now(shop) == "400"


# ------------------------------------------------------------------ Stripe disputes


async def test_stripe_disputes_won_and_lost_each_settle_once(shop) -> None:
    _, won = await bought_with_stripe(shop)
    _, lost = await bought_with_stripe(shop)
    assert await points_now(shop) == "1000"
    for payment in (won, lost):
        await post_signed(shop, stripe_event("charge.dispute.created", a_dispute(payment, "needs_response")))
        assert (await Payment.get(id=payment.id)).status is PaymentStatus.DISPUTED
    await post_signed(shop, stripe_event("charge.dispute.closed", a_dispute(won, "won")), times=3)
    await post_signed(shop, stripe_event("charge.dispute.closed", a_dispute(lost, "lost")), times=3)
    won_now, lost_now = await Payment.get(id=won.id), await Payment.get(id=lost.id)
    assert (won_now.status, lost_now.status) == (PaymentStatus.SUCCEEDED, PaymentStatus.CHARGED_BACK)
    assert won_now.fulfilled_at == won.fulfilled_at  # the won purchase stands, delivered once
    assert await points_now(shop) == "500"  # the lost one's points went back, once
