"""Gateway credentials at rest: encrypted with WHITEBILL_SECRET_KEY, a key that may be missing, wrong,
or rotated (the new key first, the old one after it, until every configuration is saved again)."""

from __future__ import annotations

import dataclasses
import json

import httpx
import pytest
from cryptography.fernet import Fernet

from billing.charges import gateway_configs, reconciler
from billing.core import clock, credentials
from billing.core.errors import BillingError, ErrorCode
from billing.sales import refunds
from gateways.stripe import StripeGateway
from models.enums import GatewayMode, PaymentMethodKind, PaymentStatus
from models.payments import GatewayConfig, Payment, WebhookEvent
from tests.factories import PLATFORM, a_partner, a_workspace, partner_viewer
from whitebill.app import create_app
from whitebill.settings import SECRET_KEY_ENV, configure_domain, load_settings

SECRETS = {"api_key": "sk_test_credentials0123456789", "webhook_secret": "whsec_credentials0123456789"}
OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture
def secret_key(monkeypatch: pytest.MonkeyPatch):
    """Set WHITEBILL_SECRET_KEY and configure the domain from it, as a restarted process would."""

    def use(value: str | None) -> None:
        if value is None:
            monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
        else:
            monkeypatch.setenv(SECRET_KEY_ENV, value)
        configure_domain(load_settings())

    return use


def refused(call, *args) -> BillingError:
    with pytest.raises(BillingError) as caught:
        call(*args)
    return caught.value


# ---------------------------------------------------------------- the key itself


def test_without_a_secret_key_credentials_cannot_be_stored_and_the_error_names_the_variable(secret_key) -> None:
    secret_key(None)
    error = refused(credentials.encrypt, SECRETS)
    assert error.code is ErrorCode.GATEWAY_NOT_CONFIGURED
    assert SECRET_KEY_ENV in error.message


def test_a_key_list_of_only_commas_and_spaces_counts_as_no_key(secret_key) -> None:
    secret_key(" , ,")
    error = refused(credentials.encrypt, SECRETS)
    assert error.code is ErrorCode.GATEWAY_NOT_CONFIGURED
    assert "set WHITEBILL_SECRET_KEY" in error.message


def test_a_key_that_is_not_a_fernet_key_is_refused_as_an_invalid_key_list(secret_key) -> None:
    secret_key(f"{NEW},not-a-fernet-key")
    error = refused(credentials.encrypt, SECRETS)
    assert error.code is ErrorCode.GATEWAY_NOT_CONFIGURED
    assert error.message == f"{SECRET_KEY_ENV} is not a valid key list"


def test_credentials_are_stored_encrypted_and_open_again_with_the_same_key(secret_key) -> None:
    secret_key(NEW)
    blob = credentials.encrypt(SECRETS)
    assert SECRETS["api_key"].encode() not in blob and SECRETS["webhook_secret"].encode() not in blob
    assert json.loads(Fernet(NEW).decrypt(blob)) == SECRETS  # the first key encrypts
    assert credentials.decrypt(blob) == SECRETS


def test_nothing_stored_opens_as_no_credentials_whatever_the_key(secret_key) -> None:
    secret_key(None)  # not even a key is needed to read that there is nothing
    assert credentials.decrypt(None) == {}
    assert credentials.decrypt(b"") == {}


def test_after_rotation_old_credentials_still_open_and_new_ones_use_the_new_key(secret_key) -> None:
    secret_key(OLD)
    before = credentials.encrypt(SECRETS)
    secret_key(f"{NEW}, {OLD}")  # the new key first; spaces around keys are allowed
    assert credentials.decrypt(before) == SECRETS
    after = credentials.encrypt(SECRETS)
    assert json.loads(Fernet(NEW).decrypt(after)) == SECRETS
    secret_key(NEW)  # the old key dropped: what was saved again still opens
    assert credentials.decrypt(after) == SECRETS


def test_credentials_under_a_key_that_was_dropped_do_not_open_and_say_the_key_changed(secret_key) -> None:
    secret_key(OLD)
    blob = credentials.encrypt(SECRETS)
    secret_key(NEW)
    error = refused(credentials.decrypt, blob)
    assert error.code is ErrorCode.GATEWAY_NOT_CONFIGURED
    assert error.message == f"stored credentials do not open with {SECRET_KEY_ENV}: was the key changed?"
    assert SECRETS["api_key"] not in error.message


def test_without_a_key_stored_credentials_cannot_be_opened(secret_key) -> None:
    secret_key(OLD)
    blob = credentials.encrypt(SECRETS)
    secret_key(None)
    assert refused(credentials.decrypt, blob).code is ErrorCode.GATEWAY_NOT_CONFIGURED


@pytest.mark.parametrize(
    ("stored", "hint"),
    [
        ({"api_key": "sk_test_abcdefgh1234", "webhook_secret": "whsec_zzzzzzzzzzzz"}, "…1234"),
        ({"webhook_secret": "whsec_zzzzzzzzzzzz", "api_key": "sk_test_abcdefgh1234"}, "…1234"),  # the key first
        ({"webhook_secret": "whsec_only_a_secret_9876"}, "…9876"),  # no API key: the first secret
        ({"api_key": "1234567"}, "…"),  # too short to show any of it
        ({"api_key": "12345678"}, "…5678"),  # just long enough
        ({}, None),
        ({"api_key": ""}, None),
    ],
)
def test_only_the_last_four_characters_of_the_main_secret_are_ever_hinted(stored: dict, hint: str | None) -> None:
    assert credentials.hint(stored) == hint


def test_a_new_key_is_a_fernet_key_that_encrypts(secret_key) -> None:
    key = credentials.new_key()
    secret_key(key)
    assert json.loads(Fernet(key).decrypt(credentials.encrypt({"api_key": "x"}))) == {"api_key": "x"}


# ---------------------------------------------------------------- configurations stored in the database


async def a_stripe_config(partner_id: int) -> GatewayConfig:
    return await gateway_configs.configure(
        PLATFORM,
        partner_id=partner_id,
        provider="stripe",
        methods=[PaymentMethodKind.CARD],
        mode=GatewayMode.TEST,
        api_key=SECRETS["api_key"],
        webhook_secret=SECRETS["webhook_secret"],
    )


@pytest.mark.usefixtures("database")
async def test_configuring_a_gateway_without_a_secret_key_is_refused_and_stores_nothing(secret_key) -> None:
    partner = await a_partner()
    secret_key(None)
    with pytest.raises(BillingError) as caught:
        await a_stripe_config(partner.id)
    assert caught.value.code is ErrorCode.GATEWAY_NOT_CONFIGURED
    assert await GatewayConfig.filter(partner_id=partner.id).count() == 0


@pytest.mark.usefixtures("database")
async def test_a_configuration_saved_under_the_old_key_keeps_working_through_a_rotation(secret_key) -> None:
    secret_key(OLD)
    partner = await a_partner()
    config = await a_stripe_config(partner.id)
    assert config.credentials_hint == "…6789"
    secret_key(f"{NEW},{OLD}")
    gateway = gateway_configs.gateway_for(await GatewayConfig.get(id=config.id))
    assert isinstance(gateway, StripeGateway)
    assert gateway._webhook_secret == SECRETS["webhook_secret"]  # opened with the old key, still listed
    await gateway.aclose()


@pytest.mark.usefixtures("database")
async def test_a_configuration_whose_key_was_dropped_cannot_be_used_to_refund(secret_key) -> None:
    """The refund is refused with GATEWAY_NOT_CONFIGURED before anything is recorded: the payment and
    what it bought stay as they were."""
    secret_key(OLD)
    partner = await a_partner()
    workspace = await a_workspace(partner)
    config = await a_stripe_config(partner.id)
    payment = await Payment.create(
        partner_id=partner.id,
        payer_key=f"WORKSPACE:{workspace.id}",
        gateway_config_id=config.id,
        provider="stripe",
        method=PaymentMethodKind.CARD,
        amount=4990,
        currency="BRL",
        status=PaymentStatus.SUCCEEDED,
        provider_ref="pi_rotated",
        reference="pay_rotated",
        purpose={"kind": "WALLET_CREDIT", "wallet_id": 0, "quantity": 0},
        purpose_kind="WALLET_CREDIT",
    )
    secret_key(NEW)
    with pytest.raises(BillingError) as caught:
        await refunds.refund_payment(
            partner_viewer(partner), payment_id=payment.id, amount=None, reason="", idempotency_key="r-1"
        )
    assert caught.value.code is ErrorCode.GATEWAY_NOT_CONFIGURED
    await payment.refresh_from_db()
    assert (payment.status, payment.refunded_amount, payment.reversed_amount) == (PaymentStatus.SUCCEEDED, 0, 0)


@pytest.mark.usefixtures("database")
async def test_a_webhook_for_a_configuration_whose_key_was_dropped_answers_503_and_changes_nothing(
    secret_key,
) -> None:
    """The provider is told to deliver again later (not 401: the sender did nothing wrong)."""
    secret_key(OLD)
    partner = await a_partner()
    config = await a_stripe_config(partner.id)
    secret_key(NEW)
    app = create_app(dataclasses.replace(load_settings(), env="test"), manage_database=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        answer = await http.post(f"/webhooks/stripe/{config.id}", content=b"{}", headers={"stripe-signature": "t=1"})
    assert answer.status_code == 503
    assert answer.json() == {"error": "gateway unavailable"}
    assert await WebhookEvent.filter(gateway_config_id=config.id).count() == 0


@pytest.mark.usefixtures("database")
async def test_the_reconciler_keeps_going_past_a_configuration_whose_key_was_dropped(secret_key, caplog) -> None:
    """One payment it cannot ask about is logged and kept under its lease; the others are still checked."""
    secret_key(OLD)
    partner = await a_partner()
    workspace = await a_workspace(partner)
    config = await a_stripe_config(partner.id)
    manual = await GatewayConfig.create(partner_id=partner.id, provider=gateway_configs.MANUAL, methods=["MANUAL"])
    made = []
    for n, config_id in enumerate((config.id, manual.id)):
        made.append(
            await Payment.create(
                partner_id=partner.id,
                payer_key=f"WORKSPACE:{workspace.id}",
                gateway_config_id=config_id,
                provider="stripe" if config_id == config.id else "manual",
                method=PaymentMethodKind.CARD,
                amount=4990,
                currency="BRL",
                status=PaymentStatus.PENDING,
                provider_ref=f"pi_{n}",
                reference=f"pay_{n}",
                purpose={"kind": "WALLET_CREDIT", "wallet_id": 0, "quantity": 0},
                purpose_kind="WALLET_CREDIT",
                next_check_at=clock.now(),
            )
        )
    secret_key(NEW)
    caplog.set_level("ERROR", logger="whitebill.reconciler")
    assert await reconciler.run_due() == 2
    stuck, other = made
    await stuck.refresh_from_db()
    await other.refresh_from_db()
    assert stuck.status is PaymentStatus.PENDING and stuck.check_attempts == 1
    assert stuck.next_check_at is not None and stuck.next_check_at > clock.now() + reconciler.LEASE * 0.99
    assert other.next_check_at is None  # checked: a manual payment leaves the queue
    [record] = [r for r in caplog.records if r.name == "whitebill.reconciler"]
    assert record.getMessage() == "reconciling a payment failed" and record.payment_id == stuck.id
    assert isinstance(record.exc_info[1], BillingError)
    assert record.exc_info[1].code is ErrorCode.GATEWAY_NOT_CONFIGURED
