"""The payment spine: the state table, charging through a gateway, webhooks, and exactly-once fulfilment."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets

import httpx
import pytest
from tortoise.exceptions import OperationalError

from billing.accounts import opening
from billing.charges import gateway_configs, payments
from billing.charges.payments import TRANSITIONS
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Money
from billing.sales import provider_webhooks, purchases
from billing.sales.provider_webhooks import NoticeResult, process_notice
from gateways import registry
from gateways.base import (
    Capabilities,
    ChargeRequest,
    ChargeResult,
    Gateway,
    Outcome,
    Payer,
    RefundResult,
    WebhookNotice,
)
from models.enums import GatewayMode, LedgerCause, PaymentMethodKind, PaymentStatus
from models.payments import GatewayConfig, IgnoredProviderEvent, Payment, PaymentTransition, WebhookEvent
from models.tenancy import Partner
from models.wallets import LedgerEntry, Posting, Wallet
from schema.relay import Connection, paginate
from tests.factories import a_partner, a_workspace, partner_viewer
from whitebill.app import create_app
from whitebill.settings import load_settings

pytestmark = pytest.mark.usefixtures("database")

S = PaymentStatus
POINTS_BOUGHT = 500


async def points_wallet(partner: Partner | None = None) -> Wallet:
    workspace = await a_workspace(partner or await a_partner())
    return await opening.workspace_wallet(workspace, "POINTS")


async def a_points_payment(
    wallet: Wallet,
    *,
    config: GatewayConfig | None = None,
    provider_ref: str | None = None,
    method: PaymentMethodKind = PaymentMethodKind.PIX,
) -> Payment:
    """A committed payment of R$ 49,90 for 500 points, not yet sent to any provider."""
    payment = await payments.create_payment(
        partner_id=wallet.partner_id,
        payer_key=f"WORKSPACE:{wallet.workspace_id}",
        gateway_config_id=config.id if config else None,
        provider=config.provider if config else "fake",
        method=method,
        amount=4990,
        currency="BRL",
        purpose={"kind": "WALLET_CREDIT", "wallet_id": wallet.id, "quantity": POINTS_BOUGHT},
    )
    if provider_ref is not None:
        await Payment.filter(id=payment.id).update(provider_ref=provider_ref)
        await payment.refresh_from_db()
    return payment


async def balance(wallet: Wallet) -> int:
    return (await Wallet.get(id=wallet.id)).balance


async def purchase_entries(wallet: Wallet) -> int:
    return await LedgerEntry.filter(wallet_id=wallet.id, cause=LedgerCause.PURCHASE).count()


async def force_status(payment: Payment, status: PaymentStatus) -> None:
    """Put a payment in a status directly, as if earlier moves had happened."""
    await Payment.filter(id=payment.id).update(status=status)


# ---------------------------------------------------------------- manual purchases


async def test_a_purchase_recorded_by_hand_credits_the_workspace_once() -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    bought = await purchases.record_manual_purchase(
        partner_viewer(partner),
        workspace_id=workspace.id,
        unit="POINTS",
        quantity=500,
        price=Money(4990, "BRL"),
        note="paid in cash",
        idempotency_key="cash-1",
    )

    wallet = await Wallet.get(id=bought.wallet_id)
    assert wallet.workspace_id == workspace.id and wallet.unit == "POINTS"
    assert wallet.balance == 500
    payment = await Payment.get(id=bought.payment_id)
    assert payment.status is S.SUCCEEDED
    assert payment.fulfilled_at is not None
    assert (payment.amount, payment.currency, payment.method) == (4990, "BRL", PaymentMethodKind.MANUAL)

    entry = await LedgerEntry.get(wallet_id=wallet.id)
    assert (entry.amount, entry.cause) == (500, LedgerCause.PURCHASE)
    posting = await Posting.get(id=entry.posting_id)
    assert (posting.caused_by_type, posting.caused_by_id) == ("Payment", str(payment.id))


async def test_replaying_a_manual_purchase_returns_the_same_payment_and_credits_nothing_more() -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)

    async def record() -> purchases.ManualPurchase:
        return await purchases.record_manual_purchase(
            partner_viewer(partner),
            workspace_id=workspace.id,
            unit="POINTS",
            quantity=500,
            price=Money(4990, "BRL"),
            note="",
            idempotency_key="cash-1",
        )

    first = await record()
    again = await record()
    assert again == first
    assert await Payment.all().count() == 1
    wallet = await Wallet.get(id=first.wallet_id)
    assert wallet.balance == 500
    assert await purchase_entries(wallet) == 1


async def test_a_payment_for_something_nothing_delivers_is_refused() -> None:
    wallet = await points_wallet()
    with pytest.raises(BillingError) as refused:
        await payments.create_payment(
            partner_id=wallet.partner_id,
            payer_key="WORKSPACE:1",
            gateway_config_id=None,
            provider="fake",
            method=PaymentMethodKind.PIX,
            amount=100,
            currency="BRL",
            purpose={"kind": "NO_SUCH_PURPOSE"},
        )
    assert refused.value.code is ErrorCode.INVALID_INPUT
    assert await Payment.all().count() == 0


async def test_a_manual_purchase_key_reused_for_another_quantity_is_refused() -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    viewer = partner_viewer(partner)
    await purchases.record_manual_purchase(
        viewer,
        workspace_id=workspace.id,
        unit="POINTS",
        quantity=500,
        price=Money(4990, "BRL"),
        note="",
        idempotency_key="cash-1",
    )
    with pytest.raises(BillingError) as refused:
        await purchases.record_manual_purchase(
            viewer,
            workspace_id=workspace.id,
            unit="POINTS",
            quantity=5000,
            price=Money(4990, "BRL"),
            note="",
            idempotency_key="cash-1",
        )
    assert refused.value.code is ErrorCode.IDEMPOTENCY_KEY_REUSED
    assert await Payment.all().count() == 1
    assert (await Wallet.get(workspace_id=workspace.id, unit="POINTS")).balance == 500


async def test_a_partner_cannot_record_a_purchase_for_another_partners_workspace() -> None:
    workspace = await a_workspace(await a_partner("Owner agency"))
    intruder = await a_partner("Other agency")
    with pytest.raises(BillingError) as refused:
        await purchases.record_manual_purchase(
            partner_viewer(intruder),
            workspace_id=workspace.id,
            unit="POINTS",
            quantity=500,
            price=Money(0, "BRL"),
            note="",
            idempotency_key="cash-1",
        )
    assert refused.value.code is ErrorCode.NOT_FOUND
    assert await Payment.all().count() == 0
    assert await Wallet.filter(workspace_id=workspace.id).count() == 0


# ---------------------------------------------------------------- moves and the state table


async def test_a_success_delivered_twice_fulfils_once() -> None:
    wallet = await points_wallet()
    payment = await a_points_payment(wallet)
    assert await payments.move(payment.id, S.SUCCEEDED, reason="charge answer") is True
    assert await payments.move(payment.id, S.SUCCEEDED, reason="webhook") is False
    assert await balance(wallet) == POINTS_BOUGHT
    assert await purchase_entries(wallet) == 1
    assert await PaymentTransition.filter(payment_id=payment.id).count() == 1


async def test_ten_concurrent_successes_fulfil_once() -> None:
    """The charge's reply, webhooks and the reconciler may all report the same success at once.

    On PostgreSQL these are ten concurrent transactions; embedded SQLite serialises them."""
    wallet = await points_wallet()
    payment = await a_points_payment(wallet)
    outcomes = await asyncio.gather(*(payments.move(payment.id, S.SUCCEEDED) for _ in range(10)))
    assert outcomes.count(True) == 1
    assert await balance(wallet) == POINTS_BOUGHT
    assert await purchase_entries(wallet) == 1
    assert await PaymentTransition.filter(payment_id=payment.id).count() == 1


async def test_an_illegal_move_is_refused_and_changes_nothing() -> None:
    """A refund cannot become pending again, a new payment cannot be refunded, a lost chargeback
    cannot succeed, a paid payment cannot be declined."""
    wallet = await points_wallet()
    payment = await a_points_payment(wallet)
    illegal = [
        (S.REFUNDED, S.PENDING),
        (S.CREATED, S.REFUNDED),
        (S.CHARGED_BACK, S.SUCCEEDED),
        (S.SUCCEEDED, S.DECLINED),
    ]
    for current, target in illegal:
        await force_status(payment, current)
        assert await payments.move(payment.id, target, decline_reason="should not be written") is False
        await payment.refresh_from_db()
        assert payment.status is current, (current, target)
        assert payment.decline_reason is None and payment.fulfilled_at is None
    assert await PaymentTransition.filter(payment_id=payment.id).count() == 0
    assert await balance(wallet) == 0


async def test_each_legal_move_is_recorded_as_a_transition() -> None:
    """CREATED -> PENDING (pix shown) -> SUCCEEDED (paid) -> PARTIALLY_REFUNDED -> REFUNDED."""
    wallet = await points_wallet()
    payment = await a_points_payment(wallet)
    path = [S.PENDING, S.SUCCEEDED, S.PARTIALLY_REFUNDED, S.REFUNDED]
    for target in path:
        assert await payments.move(payment.id, target, reason=f"to {target}") is True
    transitions = await PaymentTransition.filter(payment_id=payment.id).order_by("id")
    assert [(t.from_status, t.to_status, t.reason) for t in transitions] == [
        (S.CREATED, S.PENDING, "to PENDING"),
        (S.PENDING, S.SUCCEEDED, "to SUCCEEDED"),
        (S.SUCCEEDED, S.PARTIALLY_REFUNDED, "to PARTIALLY_REFUNDED"),
        (S.PARTIALLY_REFUNDED, S.REFUNDED, "to REFUNDED"),
    ]
    await payment.refresh_from_db()
    assert payment.status is S.REFUNDED


async def test_a_dispute_won_returns_to_succeeded_without_fulfilling_again() -> None:
    wallet = await points_wallet()
    payment = await a_points_payment(wallet)
    assert await payments.move(payment.id, S.SUCCEEDED)
    assert await payments.move(payment.id, S.DISPUTED, reason="chargeback opened")
    assert await payments.move(payment.id, S.SUCCEEDED, reason="dispute won")
    await payment.refresh_from_db()
    assert payment.status is S.SUCCEEDED
    assert await balance(wallet) == POINTS_BOUGHT
    assert await purchase_entries(wallet) == 1
    assert await PaymentTransition.filter(payment_id=payment.id).count() == 3


def test_every_status_is_reachable_only_from_the_statuses_the_table_names() -> None:
    for target in PaymentStatus:
        allowed = TRANSITIONS.get(target, frozenset())
        for current in PaymentStatus:
            dispute_won = (current, target) == (S.DISPUTED, S.SUCCEEDED)
            assert payments.can_move(current, target) == (current in allowed or dispute_won), (current, target)
    # Nothing ever moves back to CREATED: it is only where a payment starts.
    assert S.CREATED not in TRANSITIONS
    assert not any(payments.can_move(current, S.CREATED) for current in PaymentStatus)
    # Final states: nothing leaves a full refund or a lost chargeback.
    for final in (S.REFUNDED, S.CHARGED_BACK):
        assert not any(payments.can_move(final, target) for target in PaymentStatus)


async def test_move_does_in_the_database_exactly_what_the_table_says() -> None:
    """Every (from, to) pair: legal ones move and leave a transition, illegal ones change nothing."""
    wallet = await points_wallet()
    payment = await a_points_payment(wallet)
    for current in PaymentStatus:
        for target in PaymentStatus:
            await force_status(payment, current)
            before = await PaymentTransition.filter(payment_id=payment.id).count()
            moved = await payments.move(payment.id, target)
            assert moved == payments.can_move(current, target), (current, target)
            await payment.refresh_from_db()
            assert payment.status is (target if moved else current), (current, target)
            after = await PaymentTransition.filter(payment_id=payment.id).count()
            assert after == before + (1 if moved else 0), (current, target)
    # However many times it reached SUCCEEDED, the points were delivered once.
    assert await balance(wallet) == POINTS_BOUGHT
    assert await purchase_entries(wallet) == 1


# ---------------------------------------------------------------- charging through a gateway


class FakeGateway:
    """A provider whose charge answers whatever the test tells it to."""

    name = "fake"

    def __init__(self, answer: ChargeResult | Exception) -> None:
        self.answer = answer
        self.requests: list[ChargeRequest] = []

    def capabilities(self) -> Capabilities:
        return Capabilities(methods=frozenset({"CARD", "PIX"}))

    async def ensure_customer(self, payer: Payer) -> str | None:
        return None

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        self.requests.append(request)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def get_payment(self, provider_ref: str) -> ChargeResult:
        return ChargeResult(Outcome.UNKNOWN, provider_ref=provider_ref)

    async def find_payment(self, reference: str, payer: Payer) -> ChargeResult | None:
        return None

    async def refund(self, provider_ref: str, amount: int, currency: str, idempotency_key: str) -> RefundResult:
        return RefundResult(Outcome.NOT_ATTEMPTED)

    async def parse_webhook(self, body: bytes, headers: dict[str, str]) -> WebhookNotice:
        raise NotImplementedError


PAYER = Payer(key="WORKSPACE:1", name="Client", email="owner@client.example")


async def test_a_charge_that_crashes_leaves_the_payment_unknown_and_delivers_nothing() -> None:
    """A timeout may or may not have collected money: reconcile later, never fulfil on a guess."""
    wallet = await points_wallet()
    payment = await a_points_payment(wallet, method=PaymentMethodKind.CARD)
    gateway = FakeGateway(TimeoutError("provider did not answer"))
    assert isinstance(gateway, Gateway)
    payment, _ = await payments.charge(gateway, payment, PAYER)
    assert payment.status is S.UNKNOWN
    assert payment.fulfilled_at is None
    assert payment.decline_reason == "TimeoutError"
    assert await balance(wallet) == 0
    [request] = gateway.requests
    assert request.idempotency_key == payment.reference
    assert (request.payment_id, request.amount, request.currency, request.method) == (payment.id, 4990, "BRL", "CARD")


async def test_a_pix_charge_stays_pending_with_what_the_payer_needs() -> None:
    wallet = await points_wallet()
    payment = await a_points_payment(wallet, method=PaymentMethodKind.PIX)
    pix = {"pix_payload": "00020126580014br.gov.bcb.pix", "expires_at": "2025-07-01T12:00:00Z"}
    gateway = FakeGateway(ChargeResult(Outcome.PENDING, provider_ref="pay_pix_1", payer_action=pix))
    payment, _ = await payments.charge(gateway, payment, PAYER)
    assert payment.status is S.PENDING
    assert payment.provider_ref == "pay_pix_1"
    assert payment.fulfilled_at is None
    assert await balance(wallet) == 0
    assert gateway.requests[0].idempotency_key == payment.reference
    stored = await Payment.get(id=payment.id)
    assert stored.payer_action == pix


async def test_a_declined_card_keeps_the_reason_and_delivers_nothing() -> None:
    wallet = await points_wallet()
    payment = await a_points_payment(wallet, method=PaymentMethodKind.CARD)
    gateway = FakeGateway(ChargeResult(Outcome.DECLINED, provider_ref="ch_1", decline_reason="insufficient_funds"))
    payment, _ = await payments.charge(gateway, payment, PAYER, saved_method_ref="pm_1", off_session=True)
    assert payment.status is S.DECLINED
    assert payment.decline_reason == "insufficient_funds"
    assert payment.fulfilled_at is None
    assert await balance(wallet) == 0
    [request] = gateway.requests
    assert request.idempotency_key == payment.reference
    assert (request.saved_method_ref, request.off_session) == ("pm_1", True)
    [transition] = await PaymentTransition.filter(payment_id=payment.id)
    assert (transition.from_status, transition.to_status, transition.reason) == (
        S.CREATED,
        S.DECLINED,
        "insufficient_funds",
    )


async def test_a_successful_charge_delivers_the_points() -> None:
    wallet = await points_wallet()
    payment = await a_points_payment(wallet, method=PaymentMethodKind.CARD)
    payment, _ = await payments.charge(
        FakeGateway(ChargeResult(Outcome.SUCCEEDED, provider_ref="ch_2")), payment, PAYER
    )
    assert payment.status is S.SUCCEEDED and payment.fulfilled_at is not None
    assert await balance(wallet) == POINTS_BOUGHT


# ---------------------------------------------------------------- webhooks


async def a_manual_config(partner: Partner) -> GatewayConfig:
    return await GatewayConfig.create(partner_id=partner.id, provider="manual")


def paid_notice(provider_ref: str, event_id: str = "evt_1") -> WebhookNotice:
    return WebhookNotice(
        event_id=event_id,
        event_type="payment.paid",
        provider_ref=provider_ref,
        outcome=Outcome.SUCCEEDED,
        raw={"id": event_id},
    )


async def test_a_payment_webhook_fulfils_once_and_a_repeated_event_changes_nothing() -> None:
    partner = await a_partner()
    config = await a_manual_config(partner)
    wallet = await points_wallet(partner)
    payment = await a_points_payment(wallet, config=config, provider_ref="ref_1")
    await force_status(payment, S.PENDING)

    assert await process_notice(config, paid_notice("ref_1")) is NoticeResult.PROCESSED
    await payment.refresh_from_db()
    assert payment.status is S.SUCCEEDED and payment.fulfilled_at is not None
    assert await balance(wallet) == POINTS_BOUGHT

    assert await process_notice(config, paid_notice("ref_1")) is NoticeResult.DUPLICATE
    assert await balance(wallet) == POINTS_BOUGHT
    assert await purchase_entries(wallet) == 1
    assert await PaymentTransition.filter(payment_id=payment.id).count() == 1


async def test_a_new_event_reporting_the_same_success_does_not_fulfil_again() -> None:
    partner = await a_partner()
    config = await a_manual_config(partner)
    wallet = await points_wallet(partner)
    payment = await a_points_payment(wallet, config=config, provider_ref="ref_1")
    assert await process_notice(config, paid_notice("ref_1", event_id="evt_1")) is NoticeResult.PROCESSED
    assert await process_notice(config, paid_notice("ref_1", event_id="evt_2")) is NoticeResult.PROCESSED
    assert await balance(wallet) == POINTS_BOUGHT
    assert await purchase_entries(wallet) == 1
    await payment.refresh_from_db()
    assert payment.status is S.SUCCEEDED


async def test_another_partners_gateway_cannot_touch_this_payment() -> None:
    partner = await a_partner()
    config = await a_manual_config(partner)
    wallet = await points_wallet(partner)
    payment = await a_points_payment(wallet, config=config, provider_ref="ref_1")
    await force_status(payment, S.PENDING)

    intruder = await a_manual_config(await a_partner("Other agency"))
    # Verified with the other partner's secret, naming this payment's provider reference.
    assert (
        await process_notice(intruder, paid_notice("ref_1", event_id=f"evt_{secrets.token_hex(4)}"))
        is NoticeResult.IGNORED
    )
    # Kept at the intruder's configuration, and never applied to this partner's payment later either.
    assert await IgnoredProviderEvent.filter(gateway_config_id=intruder.id).count() == 1
    assert await provider_webhooks.apply_held_events(payment) is False
    await payment.refresh_from_db()
    assert payment.status is S.PENDING and payment.fulfilled_at is None
    assert await balance(wallet) == 0
    assert await PaymentTransition.filter(payment_id=payment.id).count() == 0
    assert await WebhookEvent.filter(gateway_config_id=config.id).count() == 0


async def test_concurrent_deliveries_of_one_webhook_are_processed_once() -> None:
    partner = await a_partner()
    config = await a_manual_config(partner)
    wallet = await points_wallet(partner)
    await a_points_payment(wallet, config=config, provider_ref="ref_1")
    outcomes = await asyncio.gather(*(process_notice(config, paid_notice("ref_1")) for _ in range(10)))
    assert outcomes.count(NoticeResult.PROCESSED) == 1
    assert await WebhookEvent.filter(gateway_config_id=config.id).count() == 1
    assert await balance(wallet) == POINTS_BOUGHT
    assert await purchase_entries(wallet) == 1


async def test_a_dispute_opened_and_won_by_webhook_does_not_deliver_twice() -> None:
    partner = await a_partner()
    config = await a_manual_config(partner)
    wallet = await points_wallet(partner)
    payment = await a_points_payment(wallet, config=config, provider_ref="ref_1")
    assert await process_notice(config, paid_notice("ref_1")) is NoticeResult.PROCESSED
    dispute = WebhookNotice(event_id="evt_2", event_type="charge.dispute.created", provider_ref="ref_1", disputed=True)
    assert await process_notice(config, dispute) is NoticeResult.PROCESSED
    await payment.refresh_from_db()
    assert payment.status is S.DISPUTED
    won = WebhookNotice(
        event_id="evt_3", event_type="charge.dispute.won", provider_ref="ref_1", outcome=Outcome.SUCCEEDED
    )
    assert await process_notice(config, won) is NoticeResult.PROCESSED
    await payment.refresh_from_db()
    assert payment.status is S.SUCCEEDED
    assert await balance(wallet) == POINTS_BOUGHT
    assert await purchase_entries(wallet) == 1


async def test_a_webhook_that_overtakes_the_charge_reply_is_applied_when_the_reply_arrives() -> None:
    """The provider's "paid" event can arrive before the charge's own reply has stored the
    provider reference. The event matches no payment yet: it is answered (200) and kept as ignored;
    when the reply gives the payment that reference, the kept event is applied to it, once."""
    partner = await a_partner()
    config = await a_manual_config(partner)
    wallet = await points_wallet(partner)
    payment = await a_points_payment(wallet, config=config)  # provider reference not known yet

    assert await process_notice(config, paid_notice("ref_1")) is NoticeResult.IGNORED  # overtakes the reply
    assert await balance(wallet) == 0
    gateway = FakeGateway(ChargeResult(Outcome.PENDING, provider_ref="ref_1", payer_action={"url": "https://pay"}))
    payment, _ = await payments.charge(gateway, payment, PAYER)
    assert payment.status is S.SUCCEEDED  # the kept "paid" event, applied when the reply stored ref_1
    assert await balance(wallet) == POINTS_BOUGHT
    assert await IgnoredProviderEvent.filter(gateway_config_id=config.id).count() == 0
    assert await process_notice(config, paid_notice("ref_1")) is NoticeResult.DUPLICATE  # the provider retries
    payment, _ = await payments.charge(gateway, payment, PAYER)  # the same reply again
    assert await balance(wallet) == POINTS_BOUGHT
    assert await purchase_entries(wallet) == 1


async def test_an_event_kept_while_the_reply_stored_the_reference_is_still_applied(monkeypatch) -> None:
    """The race the other way round: the event looks for its payment just before the charge's reply
    stores the reference, and the reply looks for kept events just before the event is kept. The event
    looks again once it is kept, and applies itself."""
    partner = await a_partner()
    config = await a_manual_config(partner)
    wallet = await points_wallet(partner)
    payment = await a_points_payment(wallet, config=config)
    await force_status(payment, S.PENDING)
    looked = provider_webhooks._find_payment

    async def looks_just_before_the_reply(*args):
        found = await looked(*args)
        await Payment.filter(id=payment.id).update(provider_ref="ref_1")  # the reply, without its look
        return found

    monkeypatch.setattr(provider_webhooks, "_find_payment", looks_just_before_the_reply)
    assert await process_notice(config, paid_notice("ref_1")) is NoticeResult.PROCESSED
    monkeypatch.setattr(provider_webhooks, "_find_payment", looked)
    await payment.refresh_from_db()
    assert payment.status is S.SUCCEEDED
    assert await balance(wallet) == POINTS_BOUGHT
    assert await IgnoredProviderEvent.all().count() == 0
    assert await provider_webhooks.apply_held_events(payment) is False  # the reply's own look finds nothing
    assert await purchase_entries(wallet) == 1


async def test_the_worker_applies_a_kept_event_once_its_payment_has_the_reference() -> None:
    """A process stopped after storing a charge's reply and before applying the events kept for it: the
    worker's sweep applies them, once, and never another partner's."""
    partner = await a_partner()
    config = await a_manual_config(partner)
    wallet = await points_wallet(partner)
    payment = await a_points_payment(wallet, config=config)
    await force_status(payment, S.PENDING)
    assert await process_notice(config, paid_notice("ref_1")) is NoticeResult.IGNORED
    intruder = await a_manual_config(await a_partner("Other agency"))
    assert await process_notice(intruder, paid_notice("ref_1", event_id="evt_x")) is NoticeResult.IGNORED
    assert await provider_webhooks.run_due() == 0  # no payment has ref_1 yet
    await Payment.filter(id=payment.id).update(provider_ref="ref_1")  # the reply, stored; then the process died
    assert await provider_webhooks.run_due() == 1
    assert await provider_webhooks.run_due() == 0
    await payment.refresh_from_db()
    assert payment.status is S.SUCCEEDED and await balance(wallet) == POINTS_BOUGHT
    assert await purchase_entries(wallet) == 1
    assert [e.event_id for e in await IgnoredProviderEvent.all()] == ["evt_x"]  # the intruder's stays kept


async def test_an_event_about_nothing_of_ours_is_kept_as_ignored_once_and_changes_nothing() -> None:
    partner = await a_partner()
    config = await a_manual_config(partner)
    wallet = await points_wallet(partner)
    payment = await a_points_payment(wallet, config=config, provider_ref="ref_1")
    await force_status(payment, S.PENDING)
    transfer = WebhookNotice(event_id="evt_t", event_type="TRANSFER_DONE", provider_ref=None, raw={"id": "evt_t"})
    elsewhere = paid_notice("pay_made_in_the_dashboard", event_id="evt_d")
    for notice in (transfer, elsewhere, transfer):
        assert await process_notice(config, notice) is NoticeResult.IGNORED
    kept = await IgnoredProviderEvent.filter(gateway_config_id=config.id).order_by("id")
    assert [(k.event_id, k.event_type, k.provider_ref) for k in kept] == [
        ("evt_t", "TRANSFER_DONE", None),
        ("evt_d", "payment.paid", "pay_made_in_the_dashboard"),
    ]
    await payment.refresh_from_db()
    assert payment.status is S.PENDING and await balance(wallet) == 0
    assert await WebhookEvent.all().count() == 0


async def test_an_event_of_the_partners_other_configuration_settles_that_payment_once_at_either_url() -> None:
    """A partner switched configurations of one provider; the provider sends the old payment's events
    to both URLs: whichever arrives first applies it, the other is a duplicate."""
    partner = await a_partner()
    old = await a_manual_config(partner)
    new = await a_manual_config(partner)
    wallet = await points_wallet(partner)
    payment = await a_points_payment(wallet, config=old, provider_ref="ref_1")
    await force_status(payment, S.PENDING)
    assert await process_notice(new, paid_notice("ref_1")) is NoticeResult.PROCESSED
    assert await process_notice(old, paid_notice("ref_1")) is NoticeResult.DUPLICATE
    await payment.refresh_from_db()
    assert payment.status is S.SUCCEEDED
    assert await balance(wallet) == POINTS_BOUGHT and await purchase_entries(wallet) == 1
    assert [e.gateway_config_id for e in await WebhookEvent.all()] == [old.id]  # recorded with the payment
    assert await IgnoredProviderEvent.all().count() == 0


async def test_a_refund_webhook_marks_the_payment_refunded() -> None:
    """The notice carries the refunded amount; the payment records it and becomes REFUNDED."""
    partner = await a_partner()
    config = await a_manual_config(partner)
    wallet = await points_wallet(partner)
    payment = await a_points_payment(wallet, config=config, provider_ref="ref_1")
    assert await process_notice(config, paid_notice("ref_1")) is NoticeResult.PROCESSED
    refund = WebhookNotice(
        event_id="evt_2", event_type="payment.refunded", provider_ref="ref_1", refunded_amount=payment.amount
    )
    assert await process_notice(config, refund) is NoticeResult.PROCESSED
    await payment.refresh_from_db()
    assert payment.status is S.REFUNDED
    assert payment.refunded_amount == payment.amount


async def test_a_failure_of_ours_answers_503_is_counted_and_the_next_200_clears_it(monkeypatch) -> None:
    """Only an unverified event gets 401, and a transient failure of ours (here the database refusing the
    write) a 5xx the provider retries; both count as failed answers, a 200 resets the count."""
    partner = await a_partner()
    token = "asaas-hook-" + secrets.token_hex(16)
    config = await gateway_configs.configure(
        partner_viewer(partner),
        partner_id=partner.id,
        provider="asaas",
        methods=[PaymentMethodKind.PIX],
        mode=GatewayMode.TEST,
        api_key="$aact_test_" + secrets.token_hex(16),
        webhook_secret=token,
    )
    app = create_app(dataclasses.replace(load_settings(), env="test"), manage_database=False)
    body = json.dumps({"id": "evt_1", "event": "TRANSFER_DONE", "transfer": {"id": "t_1"}}).encode()

    async def down(*_: object) -> NoticeResult:
        raise OperationalError("the database is down")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:

        async def post(headers: dict[str, str]) -> httpx.Response:
            return await http.post(f"/webhooks/asaas/{config.id}", content=body, headers=headers)

        assert (await post({"asaas-access-token": token + "x"})).status_code == 401
        monkeypatch.setattr(provider_webhooks, "process_notice", down)
        assert (await post({"asaas-access-token": token})).status_code == 503
        await config.refresh_from_db()
        assert config.webhook_failures == 2 and config.webhook_failing_since is None
        assert await IgnoredProviderEvent.all().count() == 0
        monkeypatch.undo()
        answer = await post({"asaas-access-token": token})
        assert answer.status_code == 200 and answer.json() == {"received": True, "duplicate": False, "ignored": True}
    await config.refresh_from_db()
    assert config.webhook_failures == 0
    assert [e.event_type for e in await IgnoredProviderEvent.filter(gateway_config_id=config.id)] == ["TRANSFER_DONE"]


# ---------------------------------------------------------------- the gateway registry


def test_the_manual_gateway_is_found_through_its_entry_point() -> None:
    assert "manual" in registry.available()
    gateway = registry.create("manual")
    assert isinstance(gateway, Gateway)
    assert gateway.name == "manual"
    with pytest.raises(registry.UnknownGateway):
        registry.create("no-such-provider")


# ---------------------------------------------------------------- listing, newest first


async def test_a_newest_first_page_continues_below_its_cursor_and_sees_nothing_newer() -> None:
    wallet = await points_wallet()
    made = [(await a_points_payment(wallet)).id for _ in range(5)]
    of_workspace = Payment.filter(payer_key=f"WORKSPACE:{wallet.workspace_id}")

    def ids(page: Connection[int]) -> list[int]:
        return [edge.node for edge in page.edges]

    first = await paginate(of_workspace, first=2, after=None, to_node=lambda p: p.id, newest_first=True)
    assert ids(first) == [made[4], made[3]] and first.page_info.has_next_page
    await a_points_payment(wallet)  # newer than the cursor: a later page never shows it
    second = await paginate(
        of_workspace, first=2, after=first.page_info.end_cursor, to_node=lambda p: p.id, newest_first=True
    )
    assert ids(second) == [made[2], made[1]] and second.page_info.has_next_page
    last = await paginate(
        of_workspace, first=2, after=second.page_info.end_cursor, to_node=lambda p: p.id, newest_first=True
    )
    assert ids(last) == [made[0]] and not last.page_info.has_next_page and last.page_info.has_previous_page
