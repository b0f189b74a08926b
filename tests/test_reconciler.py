"""The reconciler: open payments are asked about again, backing off, by any number of workers, each
check taken by one of them. The provider here is scripted and counts what it is asked."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from billing.accounts import opening
from billing.charges import charging, gateway_configs, payments, reconciler
from billing.core import clock
from gateways.base import Capabilities, ChargeRequest, ChargeResult, Outcome, Payer, RefundResult, WebhookNotice
from models.enums import PaymentMethodKind, PaymentStatus
from models.payments import GatewayConfig, Payment
from models.wallets import Wallet
from tests.factories import a_partner, a_workspace

pytestmark = pytest.mark.usefixtures("database")

S = PaymentStatus


class ScriptedProvider:
    """Answers get_payment with ``answers[provider_ref]`` (UNKNOWN otherwise) and find_payment with
    ``found``; records every question."""

    name = "scripted"

    def __init__(self) -> None:
        self.answers: dict[str, Outcome] = {}
        self.found: ChargeResult | None = None
        self.asked: list[str] = []

    def capabilities(self) -> Capabilities:
        return Capabilities(methods=frozenset({"PIX"}))

    async def ensure_customer(self, payer: Payer) -> str | None:
        return None

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        raise AssertionError("the reconciler never charges")

    async def get_payment(self, provider_ref: str) -> ChargeResult:
        self.asked.append(provider_ref)
        await asyncio.sleep(0)  # let a concurrent worker run
        return ChargeResult(self.answers.get(provider_ref, Outcome.UNKNOWN), provider_ref=provider_ref)

    async def find_payment(self, reference: str, payer: Payer) -> ChargeResult | None:
        self.asked.append(reference)
        return self.found

    async def refund(self, provider_ref: str, amount: int, currency: str, idempotency_key: str) -> RefundResult:
        raise AssertionError("the reconciler never refunds")

    async def parse_webhook(self, body: bytes, headers: dict[str, str]) -> WebhookNotice:
        raise AssertionError("no webhooks here")


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> ScriptedProvider:
    scripted = ScriptedProvider()
    monkeypatch.setattr(gateway_configs, "gateway_for", lambda config: scripted)
    return scripted


async def open_payments(count: int, *, status: S = S.PENDING, due: bool = True) -> tuple[Wallet, list[Payment]]:
    """``count`` R$ 10,00 pix payments for 100 points each, at a provider, in ``status``."""
    partner = await a_partner()
    workspace = await a_workspace(partner)
    wallet = await opening.workspace_wallet(workspace, "POINTS")
    config = await GatewayConfig.create(partner_id=partner.id, provider="scripted", methods=["PIX"])
    made = []
    for n in range(count):
        payment = await payments.create_payment(
            partner_id=partner.id,
            payer_key=f"WORKSPACE:{workspace.id}",
            gateway_config_id=config.id,
            provider="scripted",
            method=PaymentMethodKind.PIX,
            amount=1000,
            currency="BRL",
            purpose={"kind": "WALLET_CREDIT", "wallet_id": wallet.id, "quantity": 100},
        )
        if status is not S.CREATED:
            assert await payments.move(payment.id, status, provider_ref=f"pix_{payment.id}_{n}")
        await Payment.filter(id=payment.id).update(
            next_check_at=clock.now() if due else clock.now() + timedelta(days=1)
        )
        made.append(await Payment.get(id=payment.id))
    return wallet, made


async def test_a_payment_paid_at_the_provider_is_settled_once_and_leaves_the_queue(provider: ScriptedProvider) -> None:
    wallet, [payment] = await open_payments(1)
    provider.answers[payment.provider_ref] = Outcome.SUCCEEDED
    assert await reconciler.run_due() == 1
    await payment.refresh_from_db()
    assert (payment.status, payment.next_check_at, payment.check_attempts) == (S.SUCCEEDED, None, 1)
    assert (await Wallet.get(id=wallet.id)).balance == 100
    assert await reconciler.run_due() == 0
    assert provider.asked == [payment.provider_ref]


async def test_a_payment_still_pending_is_asked_again_later_and_later(provider: ScriptedProvider) -> None:
    _, [payment] = await open_payments(1)
    provider.answers[payment.provider_ref] = Outcome.PENDING
    waits = []
    for _ in range(4):
        assert await reconciler.run_due() == 1
        await payment.refresh_from_db()
        assert payment.status is S.PENDING
        waits.append(payment.next_check_at - clock.now())
        assert await reconciler.run_due() == 0  # not due again yet
        await clock.advance(waits[-1])
    assert [round(w.total_seconds()) for w in waits] == [
        round(step.total_seconds()) for step in charging.BACKOFF[1:5]
    ]  # check n is followed by the (n+1)th step of the back-off
    assert provider.asked == [payment.provider_ref] * 4


async def test_payments_not_yet_due_are_not_asked_about(provider: ScriptedProvider) -> None:
    _, [payment] = await open_payments(1, due=False)
    assert await reconciler.run_due() == 0
    assert provider.asked == []
    await payment.refresh_from_db()
    assert payment.check_attempts == 0


async def test_a_run_checks_at_most_its_limit_and_leaves_the_rest_for_the_next(provider: ScriptedProvider) -> None:
    _, made = await open_payments(3)
    assert await reconciler.run_due(limit=2) == 2
    assert provider.asked == [p.provider_ref for p in made[:2]]
    assert await reconciler.run_due(limit=2) == 1
    assert provider.asked == [p.provider_ref for p in made]


async def test_workers_running_at_once_check_each_payment_once(provider: ScriptedProvider) -> None:
    """Every worker reads the same due payments; the conditional claim gives each check to one."""
    wallet, made = await open_payments(6)
    for payment in made:
        provider.answers[payment.provider_ref] = Outcome.SUCCEEDED
    handled = await asyncio.gather(*(reconciler.run_due() for _ in range(4)))
    assert sum(handled) == 6
    assert sorted(provider.asked) == sorted(p.provider_ref for p in made)
    assert (await Wallet.get(id=wallet.id)).balance == 600


async def test_a_check_already_claimed_cannot_be_claimed_again() -> None:
    _, [payment] = await open_payments(1)
    seen = (await Payment.get(id=payment.id)).next_check_at
    before = clock.now()
    assert await reconciler._claim(payment.id, seen) is True
    assert await reconciler._claim(payment.id, seen) is False  # a second worker read the same row
    after = clock.now()
    await payment.refresh_from_db()
    assert payment.check_attempts == 1
    assert before + reconciler.LEASE <= payment.next_check_at <= after + reconciler.LEASE  # held for the lease


async def test_a_payment_settled_since_it_fell_due_only_leaves_the_queue(provider: ScriptedProvider) -> None:
    wallet, [payment] = await open_payments(1)
    assert await payments.move(payment.id, S.SUCCEEDED)  # a webhook came first
    await Payment.filter(id=payment.id).update(next_check_at=clock.now())
    await reconciler.check(await Payment.get(id=payment.id))
    await payment.refresh_from_db()
    assert (payment.status, payment.next_check_at) == (S.SUCCEEDED, None)
    assert provider.asked == []
    assert (await Wallet.get(id=wallet.id)).balance == 100


async def test_an_open_payment_without_a_gateway_configuration_leaves_the_queue_unasked(
    provider: ScriptedProvider,
) -> None:
    _, [payment] = await open_payments(1)
    await Payment.filter(id=payment.id).update(gateway_config_id=None)
    assert await reconciler.run_due() == 1
    await payment.refresh_from_db()
    assert (payment.status, payment.next_check_at) == (S.PENDING, None)
    assert provider.asked == []


async def test_a_payment_the_provider_never_received_becomes_not_attempted(provider: ScriptedProvider) -> None:
    """A charge cut off before the provider answered (CREATED, no provider reference): looked up by our
    reference and not found, it is certainly not charged, and no longer asked about."""
    _, [payment] = await open_payments(1, status=S.CREATED)
    assert await reconciler.run_due() == 1
    await payment.refresh_from_db()
    assert (payment.status, payment.next_check_at) == (S.NOT_ATTEMPTED, None)
    assert provider.asked == [payment.reference]


async def test_a_payment_found_by_reference_after_a_lost_answer_is_settled(provider: ScriptedProvider) -> None:
    wallet, [payment] = await open_payments(1, status=S.UNKNOWN)
    await Payment.filter(id=payment.id).update(provider_ref=None)
    provider.found = ChargeResult(Outcome.SUCCEEDED, provider_ref="pix_found")
    assert await reconciler.run_due() == 1
    await payment.refresh_from_db()
    assert (payment.status, payment.provider_ref, payment.next_check_at) == (S.SUCCEEDED, "pix_found", None)
    assert (await Wallet.get(id=wallet.id)).balance == 100


async def test_an_open_payment_is_given_up_on_after_thirty_five_days(provider: ScriptedProvider) -> None:
    _, [payment] = await open_payments(1)
    await clock.advance(charging.GIVE_UP_AFTER + timedelta(minutes=1))
    await Payment.filter(id=payment.id).update(next_check_at=clock.now())
    assert await reconciler.run_due() == 1  # asked one last time: still nothing
    await payment.refresh_from_db()
    assert (payment.status, payment.next_check_at) == (S.PENDING, None)
    assert await reconciler.run_due() == 0
