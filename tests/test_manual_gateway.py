"""The manual gateway: no provider behind it. The partner records by hand what it collected, so every
answer of the adapter is fixed, and nothing that asks a provider may take it for one."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from billing.accounts import opening
from billing.charges import charging, gateway_configs, payments, reconciler
from billing.core import clock
from billing.core.errors import ErrorCode
from billing.sales import refunds
from gateways import registry
from gateways.base import ChargeRequest, GatewayConfig, Outcome, Payer, RefundResult, WebhookRejected
from gateways.manual import ManualGateway
from models.enums import LedgerCause, PaymentMethodKind, PaymentStatus
from models.payments import GatewayConfig as StoredConfig
from models.payments import Payment, PaymentTransition, WebhookEvent
from models.tenancy import Partner
from models.wallets import LedgerEntry, Wallet
from tests.factories import a_partner, a_workspace, partner_viewer
from whitebill.app import create_app
from whitebill.settings import load_settings

PAYER = Payer(key="WORKSPACE:3", name="Padaria Central", email="caixa@padaria.example")


def a_charge(reference: str = "pay_ref_1") -> ChargeRequest:
    return ChargeRequest(
        payment_id=11, idempotency_key=reference, amount=4990, currency="BRL", method="MANUAL", payer=PAYER
    )


# ---------------------------------------------------------------- the adapter's own answers


def test_the_manual_gateway_offers_only_manual_payments_and_refunds() -> None:
    caps = ManualGateway().capabilities()
    assert caps.methods == frozenset({"MANUAL"})
    assert caps.supports_refunds is True
    assert caps.supports_saved_methods is False and caps.currencies is None


def test_the_manual_gateway_keeps_the_configuration_it_is_built_with() -> None:
    config = GatewayConfig(mode="LIVE", config_id=42)
    built = registry.create("manual", config)
    assert isinstance(built, ManualGateway) and built.config is config
    assert ManualGateway().config == GatewayConfig()  # none given: an empty one


async def test_the_manual_gateway_has_no_customers() -> None:
    assert await ManualGateway().ensure_customer(PAYER) is None


async def test_recording_a_manual_charge_is_a_success_named_after_the_payment_reference() -> None:
    result = await ManualGateway().charge(a_charge("pay_ref_abc"))
    assert result.outcome is Outcome.SUCCEEDED
    assert result.provider_ref == "manual_pay_ref_abc"
    assert result.decline_reason is None and result.payer_action is None and result.saved_method is None


async def test_a_manual_payment_read_back_is_the_success_it_was_recorded_as() -> None:
    got = await ManualGateway().get_payment("manual_pay_ref_abc")
    assert (got.outcome, got.provider_ref) == (Outcome.SUCCEEDED, "manual_pay_ref_abc")


async def test_the_manual_gateway_never_finds_a_payment_by_reference() -> None:
    """Nothing is ever sent anywhere, so a lost charge answer can never be found "at the provider"."""
    assert await ManualGateway().find_payment("pay_ref_abc", PAYER) is None


async def test_a_manual_refund_succeeds_under_a_reference_made_of_the_payment_and_the_key() -> None:
    result = await ManualGateway().refund("manual_pay_ref_abc", 1000, "BRL", "r-1")
    assert result == RefundResult(Outcome.SUCCEEDED, provider_ref="manual_pay_ref_abc_refund_r-1")


async def test_the_manual_gateway_rejects_every_webhook() -> None:
    with pytest.raises(WebhookRejected, match="no webhooks"):
        await ManualGateway().parse_webhook(b'{"id": "evt_1"}', {"content-type": "application/json"})


# ---------------------------------------------------------------- what the rest of whitebill does with it


async def a_manual_payment(status: PaymentStatus) -> tuple[StoredConfig, Payment, Wallet]:
    """A R$ 49,90 payment for 500 points through a stored manual configuration, in ``status``."""
    partner = await a_partner()
    workspace = await a_workspace(partner)
    wallet = await opening.workspace_wallet(workspace, "POINTS")
    config = await StoredConfig.create(partner_id=partner.id, provider=gateway_configs.MANUAL, methods=["MANUAL"])
    payment = await payments.create_payment(
        partner_id=partner.id,
        payer_key=f"WORKSPACE:{workspace.id}",
        gateway_config_id=config.id,
        provider=gateway_configs.MANUAL,
        method=PaymentMethodKind.MANUAL,
        amount=4990,
        currency="BRL",
        purpose={"kind": "WALLET_CREDIT", "wallet_id": wallet.id, "quantity": 500},
    )
    if status is not PaymentStatus.CREATED:
        assert await payments.move(payment.id, status, provider_ref=f"manual_{payment.reference}")
    await payment.refresh_from_db()
    return config, payment, wallet


@pytest.mark.usefixtures("database")
async def test_the_reconciler_never_takes_the_manual_gateways_word_for_an_unrecorded_payment() -> None:
    """ManualGateway.get_payment answers SUCCEEDED for anything: a PENDING manual payment due a check
    must not be delivered by it. The reconciler drops it from its queue and leaves it to the partner."""
    _, payment, wallet = await a_manual_payment(PaymentStatus.PENDING)
    await Payment.filter(id=payment.id).update(next_check_at=clock.now())

    assert await reconciler.run_due() == 1
    await payment.refresh_from_db()
    assert payment.status is PaymentStatus.PENDING and payment.fulfilled_at is None
    assert payment.next_check_at is None
    assert (await Wallet.get(id=wallet.id)).balance == 0
    assert await reconciler.run_due() == 0


@pytest.mark.usefixtures("database")
async def test_a_manual_payment_resolved_through_its_adapter_is_taken_as_recorded() -> None:
    """What the adapter's answers mean once folded in: read back by its reference it is a success
    (delivered once); looked up by our reference it was never sent, so it is not attempted."""
    config, paid, wallet = await a_manual_payment(PaymentStatus.UNKNOWN)
    gateway = gateway_configs.gateway_for(config)
    assert isinstance(gateway, ManualGateway)
    assert await charging.resolve_unknown(paid, config, gateway) is True
    await paid.refresh_from_db()
    assert paid.status is PaymentStatus.SUCCEEDED
    assert (await Wallet.get(id=wallet.id)).balance == 500

    config2, lost, _ = await a_manual_payment(PaymentStatus.CREATED)
    assert await charging.resolve_unknown(lost, config2, gateway_configs.gateway_for(config2)) is False
    await lost.refresh_from_db()
    assert lost.status is PaymentStatus.NOT_ATTEMPTED
    [transition] = await PaymentTransition.filter(payment_id=lost.id)
    assert transition.reason == "the provider has no such payment"


@pytest.mark.usefixtures("database")
async def test_refunding_a_manual_payment_records_it_without_asking_any_gateway(monkeypatch) -> None:
    _, payment, wallet = await a_manual_payment(PaymentStatus.SUCCEEDED)

    def no_gateway(_: StoredConfig) -> None:
        raise AssertionError("a manual payment's refund asked a gateway")

    monkeypatch.setattr(gateway_configs, "gateway_for", no_gateway)
    refunded, _ = await refunds.refund_payment(
        partner_viewer(await Partner.get(id=payment.partner_id)),
        payment_id=payment.id,
        amount=None,
        reason="paid back in cash",
        idempotency_key="r-1",
    )
    assert refunded.status is PaymentStatus.REFUNDED and refunded.refunded_amount == 4990
    assert (await Wallet.get(id=wallet.id)).balance == 0
    taken = await LedgerEntry.filter(wallet_id=wallet.id, cause=LedgerCause.REFUND).values_list("amount", flat=True)
    assert taken == [-500]


@pytest.mark.usefixtures("database")
async def test_a_webhook_sent_to_a_manual_configuration_is_refused_and_changes_nothing() -> None:
    config, payment, _ = await a_manual_payment(PaymentStatus.PENDING)
    app = create_app(dataclasses.replace(load_settings(), env="test"), manage_database=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        answer = await http.post(
            f"/webhooks/manual/{config.id}",
            content=b'{"id": "evt_1", "type": "payment.paid"}',
            headers={"content-type": "application/json"},
        )
    assert answer.status_code == 401
    assert answer.json()["errors"][0]["code"] == ErrorCode.UNAUTHENTICATED.value
    await payment.refresh_from_db()
    assert payment.status is PaymentStatus.PENDING
    assert await WebhookEvent.filter(gateway_config_id=config.id).count() == 0
