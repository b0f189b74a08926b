"""What each provider's verified webhook says, read by the adapters alone (no server needed): the
events whose meaning depends on the payment's state, disputes as they close, odd but authentic bodies,
and events about something other than a payment."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateways.asaas import AsaasGateway
from gateways.base import GatewayConfig, Outcome, WebhookRejected
from gateways.stripe import StripeGateway
from tests.test_gateway_stripe import an_event, config, signed

TOKEN = "whk-" + "N4pX8sLq" * 5


def asaas() -> AsaasGateway:
    return AsaasGateway(
        GatewayConfig(credentials={"webhook_token": TOKEN}, settings={"api_base": "http://127.0.0.1:9"})
    )


def asaas_body(event: str, payment: Any, event_id: str = "evt_1") -> bytes:
    return json.dumps({"id": event_id, "event": event, "payment": payment}).encode()


async def asaas_notice(event: str, **payment: Any) -> Any:
    body = asaas_body(event, {"id": "pay_1", "value": 100.0, **payment})
    return await asaas().parse_webhook(body, {"asaas-access-token": TOKEN})


@pytest.mark.parametrize(("status", "outcome"), [("CONFIRMED", Outcome.SUCCEEDED), ("PENDING", None)])
async def test_an_asaas_risk_approval_succeeds_only_a_payment_already_paid(
    status: str, outcome: Outcome | None
) -> None:
    notice = await asaas_notice("PAYMENT_APPROVED_BY_RISK_ANALYSIS", status=status)
    assert notice.outcome is outcome and notice.provider_ref == "pay_1"


@pytest.mark.parametrize(("status", "outcome"), [("RECEIVED", None), ("PENDING", Outcome.DECLINED)])
async def test_an_asaas_deletion_declines_an_unpaid_payment_and_never_undoes_a_paid_one(
    status: str, outcome: Outcome | None
) -> None:
    assert (await asaas_notice("PAYMENT_DELETED", status=status)).outcome is outcome


@pytest.mark.parametrize(
    ("chargeback", "outcome", "disputed", "charged_back"),
    [
        ({"status": "REVERSED"}, Outcome.SUCCEEDED, False, False),  # the dispute was won
        ({"status": "DISPUTE_LOST"}, None, True, True),
        ({"status": "DONE"}, None, True, True),
        ("REVERSED", None, False, False),  # not an object: says nothing about a dispute
    ],
)
async def test_an_asaas_chargeback_state_carried_by_a_payment_event_decides_the_dispute(
    chargeback: Any, outcome: Outcome | None, disputed: bool, charged_back: bool
) -> None:
    notice = await asaas_notice("PAYMENT_UPDATED", status="CHARGEBACK_REQUESTED", chargeback=chargeback)
    assert (notice.outcome, notice.disputed, notice.charged_back) == (outcome, disputed, charged_back)


async def test_an_asaas_refund_with_an_amount_that_is_no_amount_is_kept_without_one() -> None:
    notice = await asaas_notice("PAYMENT_REFUNDED", refunds=[{"status": "DONE", "value": "a lot"}])
    assert notice.event_type == "PAYMENT_REFUNDED" and notice.refunded_amount is None


async def test_an_asaas_refund_event_reports_each_refund_with_its_state() -> None:
    refunds = [
        {"status": "DONE", "value": 10.5, "description": "whitebill refund key-1", "dateCreated": "2026-12-01"},
        {"status": "CANCELLED", "value": 30, "dateCreated": "2026-12-02 10:00:00"},
        {"status": "PENDING", "value": 2, "description": "whitebill refund key-3"},
        {"status": "AWAITING_CRITICAL_ACTION_AUTHORIZATION", "value": 1},
    ]
    notice = await asaas_notice("PAYMENT_PARTIALLY_REFUNDED", refunds=refunds)
    assert notice.refunded_amount is None
    assert [(r.amount, r.outcome, r.key, r.provider_ref) for r in notice.refunds] == [
        (1050, Outcome.SUCCEEDED, "key-1", "pay_1/refunds/key-1"),
        (3000, Outcome.DECLINED, None, "pay_1/refunds/2026-12-02 10:00:00:3000"),
        (200, Outcome.PENDING, "key-3", "pay_1/refunds/key-3"),
        (100, Outcome.PENDING, None, "pay_1/refunds/None:100"),
    ]
    assert notice.refunds_complete
    denied = await asaas_notice("PAYMENT_REFUND_DENIED", refunds=refunds[1:2])
    assert [(r.amount, r.outcome) for r in denied.refunds] == [(3000, Outcome.DECLINED)]


async def test_an_asaas_partial_refund_without_refunds_listed_says_no_amount() -> None:
    assert (await asaas_notice("PAYMENT_PARTIALLY_REFUNDED")).refunded_amount is None


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"event": "PAYMENT_RECEIVED", "payment": {"id": "pay_1"}}),  # no id
        json.dumps({"id": "", "event": "PAYMENT_RECEIVED", "payment": {"id": "pay_1"}}),
        json.dumps({"id": "evt_1", "event": 7, "payment": {"id": "pay_1"}}),
        json.dumps({"id": "evt_1", "event": "PAYMENT_RECEIVED", "payment": "pay_1"}),  # payment not an object
        json.dumps({"id": "evt_1", "event": "PAYMENT_RECEIVED", "payment": {"id": 12}}),
        json.dumps(["evt_1"]),
        "{not json",
    ],
)
async def test_an_asaas_body_with_the_right_token_but_no_usable_event_is_rejected(body: str) -> None:
    with pytest.raises(WebhookRejected):
        await asaas().parse_webhook(body.encode(), {"asaas-access-token": TOKEN})


async def test_an_asaas_event_about_no_payment_names_none() -> None:
    body = json.dumps({"id": "evt_9", "event": "TRANSFER_DONE", "transfer": {"id": "tra_1"}}).encode()
    notice = await asaas().parse_webhook(body, {"asaas-access-token": TOKEN})
    assert (notice.event_type, notice.provider_ref, notice.outcome) == ("TRANSFER_DONE", None, None)


def stripe() -> StripeGateway:
    return StripeGateway(config("http://127.0.0.1:9", max_retries=0, timeout_seconds=1))


async def stripe_notice(event_type: str, obj: dict[str, Any]) -> Any:
    body, headers = signed(an_event(event_type, obj))
    return await stripe().parse_webhook(body, headers)


@pytest.mark.parametrize(
    ("status", "outcome", "charged_back"),
    [
        ("won", Outcome.SUCCEEDED, False),
        ("warning_closed", Outcome.SUCCEEDED, False),
        ("lost", None, True),
        ("under_review", None, False),  # not how a dispute closes: says nothing
    ],
)
async def test_a_stripe_dispute_closing_won_keeps_the_payment_and_lost_charges_it_back(
    status: str, outcome: Outcome | None, charged_back: bool
) -> None:
    dispute = {"id": "dp_1", "object": "dispute", "status": status, "payment_intent": "pi_7", "charge": "ch_7"}
    notice = await stripe_notice("charge.dispute.closed", dispute)
    assert (notice.provider_ref, notice.outcome, notice.charged_back) == ("pi_7", outcome, charged_back)


async def test_a_stripe_dispute_whose_charge_cannot_be_read_goes_on_naming_no_payment() -> None:
    # Only the charge is named and Stripe cannot be asked which payment it belongs to (nothing listens
    # there): the notice names no payment, so it is kept, not applied to a wrong one.
    dispute = {"id": "dp_2", "object": "dispute", "status": "needs_response", "charge": "ch_8"}
    notice = await stripe_notice("charge.dispute.created", dispute)
    assert (notice.provider_ref, notice.disputed) == (None, True)


async def test_a_stripe_charge_event_names_its_payment_intent_and_our_reference() -> None:
    charge = {"id": "ch_9", "object": "charge", "payment_intent": "pi_9", "metadata": {"whitebill_reference": "r_9"}}
    notice = await stripe_notice("charge.succeeded", charge)
    assert (notice.provider_ref, notice.reference, notice.outcome) == ("pi_9", "r_9", None)


async def test_a_stripe_event_about_something_else_names_no_payment() -> None:
    notice = await stripe_notice("customer.created", {"id": "cus_1", "object": "customer"})
    assert (notice.provider_ref, notice.outcome, notice.disputed) == (None, None, False)


async def test_a_stripe_refund_total_that_is_not_a_number_is_kept_without_one() -> None:
    charge = {"id": "ch_3", "object": "charge", "payment_intent": "pi_3", "amount_refunded": "500"}
    notice = await stripe_notice("charge.refunded", charge)
    assert (notice.provider_ref, notice.refunded_amount) == ("pi_3", None)


async def test_a_stripe_dispute_update_names_its_payment_and_changes_no_outcome() -> None:
    dispute = {"id": "dp_4", "object": "dispute", "status": "under_review", "payment_intent": "pi_4"}
    notice = await stripe_notice("charge.dispute.updated", dispute)
    assert (notice.provider_ref, notice.outcome, notice.disputed, notice.charged_back) == ("pi_4", None, False, False)


async def test_a_stripe_dispute_naming_neither_payment_nor_charge_names_no_payment() -> None:
    notice = await stripe_notice("charge.dispute.created", {"id": "dp_5", "object": "dispute"})
    assert (notice.provider_ref, notice.disputed) == (None, True)
