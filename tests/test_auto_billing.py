"""Flow C, agency auto-billing (Stammer), on SQLite and PostgreSQL.

Pool 9,000; the plan grants 10,000; the platform sells 2,000 credits for $10: one charge of $10 to the
partner's saved card, pool 11,000 then 1,000, the workspace 10,000, one notice. A shortfall of 4,500
buys one 5,000 for $20, not three 2,000; seats 5 -> 10 buy exactly 5. A decline grants nothing and
tells the partner. A workspace's own auto-billing accepts usage within its overdraft while it buys the
partner's package, which cascades into the partner's; after a decline, usage beyond it is refused.
Racing workers buy once."""

from __future__ import annotations

import asyncio
import secrets
import uuid

import anyio
import pytest

from billing.accounts import ledger, opening, wallets
from billing.accounts.ledger import Leg
from billing.auto_billing import engine
from billing.catalog import plans
from billing.charges import charging, gateway_configs
from billing.core import clock, work
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Money
from billing.subscriptions import current, lifecycle
from billing.tenants import api_keys, partners
from billing.usage import units
from gateways.base import SavedMethod
from models.auto_billing import AutoBillingSlot, PoolGrant, PoolGrantStatus
from models.enums import BillingInterval, ExternalAccount, GatewayMode, LedgerCause, OwnerKind, PaymentMethodKind
from models.operations import OutboxEvent
from models.payments import Payment
from models.subscriptions import SubscriptionPeriod
from models.tenancy import Partner, Workspace
from models.wallets import LedgerEntry, Wallet
from schema.ids import to_global_id
from tests.factories import PLATFORM, a_workspace, partner_viewer
from tests.graphql import GraphQLClient
from tests.shop import CONFIGURE
from whitebill.settings import load_settings
from whitebill.worker import Worker

pytestmark = pytest.mark.usefixtures("database")

CREDITS, SEATS = "MESSAGE_CREDITS", "SEATS"
VISA = "4242424242424242"


# ---------------------------------------------------------------- helpers


async def an_agency(name: str = "Stammer Agency") -> Partner:
    return await partners.create_partner(PLATFORM, name=name, slug=f"ag-{secrets.token_hex(4)}", currency="USD")


async def platform_package(quantity: int, cents: int, unit: str = CREDITS) -> int:
    package = await plans.create_credit_package(
        PLATFORM, name=f"{quantity} {unit.lower()}", unit=unit, quantity=quantity, price=Money(cents, "USD")
    )
    return int(package.id)


async def partner_package(partner: Partner, quantity: int, cents: int) -> int:
    package = await plans.create_credit_package(
        partner_viewer(partner), name=f"{quantity} credits", unit=CREDITS, quantity=quantity, price=Money(cents, "USD")
    )
    return int(package.id)


async def pool_of(partner: Partner, unit: str = CREDITS) -> Wallet:
    return await opening.open_wallet(
        partner_id=partner.id, owner_kind=OwnerKind.PARTNER, owner_id=partner.id, unit=unit
    )


async def fund_pool(partner: Partner, amount: int, unit: str = CREDITS) -> None:
    """Units already in the pool (bought earlier): straight from issuance, as a test's given."""
    pool = await pool_of(partner, unit)
    await ledger.post([Leg(amount, unit, ExternalAccount.ISSUANCE, pool.id)], cause=LedgerCause.GRANT)


async def balance(workspace_or_partner: Workspace | Partner, unit: str = CREDITS) -> int:
    if isinstance(workspace_or_partner, Partner):
        return int((await pool_of(workspace_or_partner, unit)).balance)
    wallet = await opening.workspace_wallet(workspace_or_partner, unit)
    return int(wallet.balance)


async def ledger_sums(wallet_id: int) -> int:
    wallet = await Wallet.get(id=wallet_id)
    assert sum(await LedgerEntry.filter(wallet_id=wallet_id).values_list("amount", flat=True)) == wallet.balance
    assert wallet.balance >= -wallet.credit_limit
    return int(wallet.balance)


async def turn_on(partner: Partner, *, for_clients: bool = False, overdraft: int = 0) -> None:
    await engine.configure(
        partner_viewer(partner),
        partner_id=partner.id,
        enabled=True,
        for_clients=for_clients,
        client_overdraft=overdraft,
    )


async def sign_up(partner: Partner, workspace: Workspace, included: dict[str, int]) -> None:
    """The partner puts the workspace on its plan (collected its own way): its first period's grant."""
    viewer = partner_viewer(partner)
    plan = await plans.create_plan(
        viewer,
        name=f"Plan {secrets.token_hex(2)}",
        interval=BillingInterval.MONTHLY,
        price=Money(0, "USD"),
        limits={},
        included_units=included,
    )
    await lifecycle.assign_plan(
        viewer, workspace_id=workspace.id, plan_id=plan.id, note="", idempotency_key=str(uuid.uuid4())
    )


async def run_worker() -> None:
    worker = Worker(load_settings())
    while await worker.tick():
        pass


async def ledgerpay_for(partner_id: int | None) -> int:
    """A LedgerPay configuration: the platform's (partner None, charging partners) or a partner's."""
    viewer = PLATFORM if partner_id is None else partner_viewer(await Partner.get(id=partner_id))
    config = await gateway_configs.configure(
        viewer,
        partner_id=partner_id,
        provider="ledgerpay",
        methods=[PaymentMethodKind.CARD],
        mode=GatewayMode.TEST,
        api_key="lp_key_0000000000",
        webhook_secret="lp_secret_000000",
    )
    return int(config.id)


async def save_card(config_id: int, partner_id: int, payer_key: str, token: str) -> None:
    await charging.keep_saved_method(
        config_id=config_id, partner_id=partner_id, payer_key=payer_key, saved=SavedMethod(token, "CARD", "lp", "0000")
    )


async def auto_billing_payments(partner: Partner) -> list[Payment]:
    return await Payment.filter(partner_id=partner.id, note__startswith="auto-billing").order_by("id")


async def notices(event_type: str, partner: Partner) -> list[OutboxEvent]:
    return await OutboxEvent.filter(event_type=event_type, partner_id=partner.id).order_by("id")


# ---------------------------------------------------------------- Stammer's example, through GraphQL

PACKAGE = """mutation { createCreditPackage(input: {name: "2,000 credits", unit: "MESSAGE_CREDITS", quantity: 2000,
  priceAmount: "10.00", priceCurrency: "USD"}) { creditPackage { id } errors { code } } }"""
BUY = """mutation($p: ID!, $card: String!) { buyPlatformPackage(input: {packageId: $p, method: CARD, quantity: 5,
  cardToken: $card, saveCard: true, idempotencyKey: "pool-1"}) {
    payment { status amount { amount } } errors { code } } }"""
TRANSFER = """mutation($ws: ID!) { transferUnits(input: {workspaceId: $ws, unit: "MESSAGE_CREDITS", amount: "1000",
  toWorkspace: true, idempotencyKey: "t1"}) { pool { balance { amount } } errors { code } } }"""
SET = """mutation { setAutoBilling(input: {enabled: true}) { autoBilling { enabled } errors { code message } } }"""
PLAN = """mutation { createPlan(input: {name: "Growth", interval: MONTHLY, priceAmount: "0", priceCurrency: "USD",
  limits: [], includedUnits: [{name: "MESSAGE_CREDITS", value: 10000}]}) { plan { id } errors { code } } }"""
ASSIGN = """mutation($ws: ID!, $plan: ID!) { assignPlan(input: {workspaceId: $ws, planId: $plan,
  idempotencyKey: "sign-up"}) { errors { code } } }"""
CREDITS_OF = """query($ws: ID!) { node(id: $ws) { ... on Workspace { wallets { unit balance { amount } } } } }"""
OVERVIEW = """{ autoBilling { enabled pools { unit balance { amount } waiting { amount } buying }
  purchases { nodes { amount { amount currency } status provider purpose } }
  waiting { nodes { workspaceId quantity { amount unit } status source } } } }"""


async def workspace_credits(client: GraphQLClient, ws: str) -> str:
    found = (await client.data(CREDITS_OF, {"ws": ws}))["node"]["wallets"]
    return next((w["balance"]["amount"] for w in found if w["unit"] == CREDITS), "0")


async def test_stammer_pool_9000_plan_10000_one_charge_of_10_pool_ends_at_1000(server, localstripe) -> None:
    platform = GraphQLClient(server.url, (await api_keys.create_key(partner_id=None, name="ops")).secret)
    partner = await an_agency()
    client = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    first, second = await a_workspace(partner, "First"), await a_workspace(partner, "Clinica")
    ws = to_global_id("Workspace", second.id)

    # The platform charges partners through Stripe and sells 2,000 credits for $10.
    configured = await platform.data(
        CONFIGURE, {"provider": "stripe", "methods": ["CARD"], "key": "sk_test_stammer", "secret": "whsec_stammer"}
    )
    assert configured["configureGateway"]["errors"] == []
    package = (await platform.data(PACKAGE))["createCreditPackage"]["creditPackage"]["id"]
    # Pool 9,000: the partner bought 10,000 with its card (kept for later) and gave 1,000 to a client.
    card = await anyio.to_thread.run_sync(lambda: localstripe.create_card(VISA))
    bought = (await client.data(BUY, {"p": package, "card": card}))["buyPlatformPackage"]
    assert bought["payment"] == {"status": "SUCCEEDED", "amount": {"amount": "50.00"}}, bought
    moved = await client.data(TRANSFER, {"ws": to_global_id("Workspace", first.id)})
    assert moved["transferUnits"]["pool"]["balance"]["amount"] == "9000"
    before = await Payment.filter(partner_id=partner.id, amount__gt=0).count()

    assert (await client.data(SET))["setAutoBilling"] == {"autoBilling": {"enabled": True}, "errors": []}
    plan = (await client.data(PLAN))["createPlan"]["plan"]["id"]
    assert (await client.data(ASSIGN, {"ws": ws, "plan": plan}))["assignPlan"]["errors"] == []
    # The grant waits for its charge: nothing reached the workspace, nothing was charged yet.
    assert await workspace_credits(client, ws) == "0"
    assert await Payment.filter(partner_id=partner.id, amount__gt=0).count() == before
    period = await SubscriptionPeriod.get(subscription__workspace_id=second.id)
    assert (await client.data(OVERVIEW))["autoBilling"]["waiting"]["nodes"] == [
        {
            "workspaceId": ws,
            "quantity": {"amount": "10000", "unit": CREDITS},
            "status": "PENDING",
            "source": to_global_id("SubscriptionPeriod", period.id),  # owed for the plan's first period
        }
    ]

    await run_worker()

    assert await workspace_credits(client, ws) == "10000"
    seen = (await client.data(OVERVIEW))["autoBilling"]
    pool = next(p for p in seen["pools"] if p["unit"] == CREDITS)
    assert pool == {"unit": CREDITS, "balance": {"amount": "1000"}, "waiting": {"amount": "0"}, "buying": False}
    assert seen["purchases"]["nodes"] == [
        {"amount": {"amount": "10.00", "currency": "USD"}, "status": "SUCCEEDED", "provider": "stripe",
         "purpose": "WALLET_CREDIT"}
    ]  # fmt: skip
    assert seen["waiting"]["nodes"] == []
    charges = await Payment.filter(partner_id=partner.id, amount__gt=0).order_by("id")
    assert len(charges) == before + 1  # exactly one new charge: $10, 1000 minor units (the plan itself is free)
    assert (charges[-1].amount, charges[-1].currency, charges[-1].payer_key) == (1000, "USD", f"PARTNER:{partner.id}")
    performed = await notices("auto_billing.performed", partner)
    assert len(performed) == 1
    assert performed[0].payload["quantity"] == 2000 and performed[0].payload["balance"] == 1000
    assert performed[0].payload["delivered"] == [
        {"workspace_id": second.id, "quantity": 10000, "grant_id": performed[0].payload["delivered"][0]["grant_id"]}
    ]
    pool_wallet = await pool_of(partner)
    assert await ledger_sums(pool_wallet.id) == 1000
    entries = await LedgerEntry.filter(wallet_id=pool_wallet.id).order_by("id").values_list("amount", flat=True)
    assert list(entries)[-2:] == [2000, -10000]  # pool 11,000, then the transfer
    assert not await notices("auto_billing.failed", partner)


# ---------------------------------------------------------------- the optimiser's choice, seats


async def test_a_shortfall_of_4500_buys_one_5000_for_20_not_three_2000() -> None:
    partner = await an_agency()
    workspace = await a_workspace(partner)
    await platform_package(2000, 1000)
    five_thousand = await platform_package(5000, 2000)
    await turn_on(partner)
    await sign_up(partner, workspace, {CREDITS: 4500})  # pool 0: short by 4,500

    await run_worker()  # the platform has no gateway: recorded as collected

    [payment] = await auto_billing_payments(partner)
    assert (payment.amount, payment.provider, payment.status.value) == (2000, "manual", "SUCCEEDED")
    assert [(p["package_id"], p["count"]) for p in payment.purpose["packages"]] == [(five_thousand, 1)]
    assert await balance(partner) == 500 and await balance(workspace) == 4500
    assert len(await notices("auto_billing.performed", partner)) == 1


async def test_seats_have_5_need_10_buy_exactly_5() -> None:
    partner = await an_agency()
    workspace = await a_workspace(partner)
    three = await platform_package(3, 600, SEATS)  # 3 seats for $6: the best rate, but 6 seats would be one too many
    two = await platform_package(2, 1000, SEATS)
    await fund_pool(partner, 5, SEATS)
    await turn_on(partner)
    await sign_up(partner, workspace, {SEATS: 10})

    await run_worker()

    [payment] = await auto_billing_payments(partner)
    assert payment.purpose["quantity"] == 5 and payment.amount == 1600
    assert sorted((p["package_id"], p["count"]) for p in payment.purpose["packages"]) == sorted([(three, 1), (two, 1)])
    assert await balance(partner, SEATS) == 0 and await balance(workspace, SEATS) == 10


async def test_seats_that_no_combination_makes_exactly_are_not_bought_and_the_partner_is_told() -> None:
    partner = await an_agency()
    workspace = await a_workspace(partner)
    await platform_package(2, 1000, SEATS)
    await turn_on(partner)
    await sign_up(partner, workspace, {SEATS: 5})
    await run_worker()
    assert not await auto_billing_payments(partner)
    [failed] = await notices("auto_billing.failed", partner)
    assert "exactly 5" in failed.payload["reason"]
    assert await PoolGrant.filter(workspace_id=workspace.id, status=PoolGrantStatus.PENDING).count() == 1


async def test_a_pool_that_holds_the_grant_transfers_without_buying_and_a_period_grants_once() -> None:
    partner = await an_agency()
    workspace = await a_workspace(partner)
    await platform_package(2000, 1000)
    await fund_pool(partner, 12_000)
    await turn_on(partner)
    await sign_up(partner, workspace, {CREDITS: 10_000})
    assert await balance(workspace) == 10_000 and await balance(partner) == 2_000  # in the granting transaction
    subscription = await current.live_subscription(workspace.id)
    assert subscription is not None
    period = await subscription.periods.all().first()
    await lifecycle.grant_included_units(subscription, period)  # the same period again: nothing more
    assert await balance(workspace) == 10_000
    await run_worker()
    assert not await auto_billing_payments(partner) and not await notices("auto_billing.performed", partner)


async def test_the_monthly_grant_also_waits_for_its_charge() -> None:
    partner = await an_agency()
    workspace = await a_workspace(partner)
    await platform_package(2000, 1000)
    await fund_pool(partner, 10_000)
    await turn_on(partner)
    await sign_up(partner, workspace, {CREDITS: 10_000})
    assert await balance(partner) == 0
    subscription = await current.live_subscription(workspace.id)
    assert subscription is not None
    await clock.advance(subscription.current_period_end - clock.now())
    await run_worker()  # the renewal grants 10,000 more: the pool buys 5 x 2,000 in one payment
    [payment] = await auto_billing_payments(partner)
    assert payment.amount == 5000 and payment.purpose["packages"][0]["count"] == 5
    assert await balance(workspace) == 20_000 and await balance(partner) == 0


# ---------------------------------------------------------------- declines, and the retry


async def test_a_declined_charge_grants_nothing_tells_the_partner_and_retries_with_a_new_card(ledgerpay) -> None:
    partner = await an_agency()
    workspace = await a_workspace(partner)
    config = await ledgerpay_for(None)
    await save_card(config, partner.id, f"PARTNER:{partner.id}", "tok_decline")
    await platform_package(2000, 1000)
    await fund_pool(partner, 9000)
    await turn_on(partner)
    await sign_up(partner, workspace, {CREDITS: 10_000})

    await run_worker()

    [declined] = await auto_billing_payments(partner)
    assert declined.status.value == "DECLINED" and declined.provider == "ledgerpay"
    assert await balance(workspace) == 0 and await balance(partner) == 9000  # nothing granted
    [failed] = await notices("auto_billing.failed", partner)
    assert failed.payload["payment_id"] == declined.id and failed.payload["reason"] == "card_declined"
    assert not await notices("auto_billing.performed", partner)
    slot = await AutoBillingSlot.get(wallet_id=(await pool_of(partner)).id)
    assert slot.in_flight_payment_id is None and slot.failures == 1 and slot.retry_after is not None

    await save_card(config, partner.id, f"PARTNER:{partner.id}", "tok_ok")  # the partner replaces its card
    await run_worker()
    assert len(await auto_billing_payments(partner)) == 1  # still backing off
    await clock.advance(slot.retry_after - clock.now())
    await run_worker()
    paid = (await auto_billing_payments(partner))[-1]
    assert paid.status.value == "SUCCEEDED" and paid.amount == 1000
    assert await balance(workspace) == 10_000 and await balance(partner) == 1000
    assert len(await notices("auto_billing.performed", partner)) == 1


# ---------------------------------------------------------------- a workspace's own auto-billing


async def clients_shop(card: str) -> tuple[Partner, Workspace, Wallet]:
    """An agency selling 1,000 credits for $8 to its clients through LedgerPay, its pool refilled from
    the platform's 2,000 for $10 (no platform gateway: recorded as collected); a client on a plan
    (without one it could use nothing: PLAN_REQUIRED) with 100 credits and a card on file."""
    partner = await an_agency()
    workspace = await a_workspace(partner)
    await sign_up(partner, workspace, {})
    config = await ledgerpay_for(partner.id)
    await save_card(config, partner.id, f"WORKSPACE:{workspace.id}", card)
    await partner_package(partner, 1000, 800)
    await platform_package(2000, 1000)
    await turn_on(partner, for_clients=True, overdraft=500)
    await wallets.adjust_workspace_balance(
        partner_viewer(partner), workspace_id=workspace.id, unit=CREDITS, amount=100, note="", idempotency_key="g"
    )
    return partner, workspace, await opening.workspace_wallet(workspace, CREDITS)


async def use(workspace: Workspace, amount: int) -> int:
    return await units.consume_units(
        PLATFORM, workspace_id=workspace.id, unit=CREDITS, amount=amount, event_id=str(uuid.uuid4())
    )


async def test_workspace_usage_within_the_overdraft_buys_the_partners_package_which_cascades(ledgerpay) -> None:
    partner, workspace, wallet = await clients_shop("tok_ok")
    assert await use(workspace, 300) == -200  # too few credits: accepted within the overdraft of 500
    with pytest.raises(BillingError) as refused:
        await use(workspace, 400)  # -600 is beyond it
    assert refused.value.code is ErrorCode.INSUFFICIENT_BALANCE
    assert refused.value.details["reason"] == "OVERDRAFT_EXCEEDED" and "overdraft of 500" in refused.value.message
    assert await use(workspace, 250) == -450
    assert not await auto_billing_payments(partner)  # the charge runs in the worker, never in the ingestion

    await run_worker()

    client_payment, pool_payment = await auto_billing_payments(partner)
    assert client_payment.payer_key == f"WORKSPACE:{workspace.id}" and client_payment.provider == "ledgerpay"
    assert (client_payment.amount, client_payment.purpose["quantity"]) == (800, 1000)  # 1,000 covers the 450
    assert pool_payment.payer_key == f"PARTNER:{partner.id}" and pool_payment.amount == 1000  # the cascade
    assert await ledger_sums(wallet.id) == 550 and await balance(partner) == 1000
    assert (await Wallet.get(id=wallet.id)).credit_limit == 0  # the overdraft is closed again
    performed = await notices("auto_billing.performed", partner)
    assert sorted(n.payload["payer"] for n in performed) == sorted([f"PARTNER:{partner.id}", client_payment.payer_key])
    transfer = await LedgerEntry.get(wallet_id=wallet.id, cause=LedgerCause.TRANSFER)
    assert transfer.amount == 1000 and transfer.counter_wallet_id == (await pool_of(partner)).id


async def test_a_declined_workspace_charge_grants_nothing_and_refuses_usage_beyond_the_overdraft(ledgerpay) -> None:
    partner, workspace, wallet = await clients_shop("tok_decline")
    assert await use(workspace, 300) == -200
    await run_worker()
    [declined] = await auto_billing_payments(partner)
    assert declined.status.value == "DECLINED"
    [failed] = await notices("auto_billing.failed", partner)
    assert failed.payload["workspace_id"] == workspace.id and failed.payload["reason"] == "card_declined"
    assert await ledger_sums(wallet.id) == -200 and await balance(partner) == 0  # nothing granted, nothing bought
    assert (await Wallet.get(id=wallet.id)).credit_limit == 200  # what is overdrawn stays, no more
    with pytest.raises(BillingError) as refused:
        await use(workspace, 1)
    assert refused.value.code is ErrorCode.INSUFFICIENT_BALANCE
    assert refused.value.details["reason"] == "AUTO_BILLING_DECLINED" and "declined" in refused.value.message
    assert len(await auto_billing_payments(partner)) == 1

    # A new card, and the back-off is over: the next short usage buys again, and the wallet's own
    # limit (0) comes back, not the debt the decline left.
    config = await gateway_configs.active_config(partner.id)
    assert config is not None
    await save_card(config.id, partner.id, f"WORKSPACE:{workspace.id}", "tok_ok")
    await clock.advance((await AutoBillingSlot.get(wallet_id=wallet.id)).retry_after - clock.now())
    assert await use(workspace, 100) == -300
    await run_worker()
    assert await ledger_sums(wallet.id) == 700 and (await Wallet.get(id=wallet.id)).credit_limit == 0
    assert [p.status.value for p in await auto_billing_payments(partner)] == ["DECLINED", "SUCCEEDED", "SUCCEEDED"]


async def test_without_the_partners_packages_a_workspace_has_no_auto_billing() -> None:
    partner = await an_agency()
    workspace = await a_workspace(partner)
    await sign_up(partner, workspace, {})
    await turn_on(partner, for_clients=True, overdraft=500)
    with pytest.raises(BillingError) as refused:
        await use(workspace, 1)
    assert refused.value.code is ErrorCode.INSUFFICIENT_BALANCE and "reason" not in refused.value.details
    with pytest.raises(BillingError) as invalid:
        await turn_on(partner, for_clients=True, overdraft=0)
    assert invalid.value.field == "clientOverdraft"


# ---------------------------------------------------------------- several workers


async def test_racing_workers_and_repeated_jobs_buy_once() -> None:
    partner = await an_agency()
    workspace = await a_workspace(partner)
    await platform_package(2000, 1000)
    await fund_pool(partner, 9000)
    await turn_on(partner)
    await sign_up(partner, workspace, {CREDITS: 10_000})
    pool = await pool_of(partner)
    for _ in range(3):  # as if the job were queued again, or claimed twice
        await work.schedule(engine.BUY_JOB, {"wallet_id": pool.id})
    workers = [Worker(load_settings(), name=f"w{i}") for i in range(4)]
    await asyncio.gather(*(w.tick() for w in workers), *(engine.buy(pool.id) for _ in range(4)))
    await run_worker()
    assert len(await auto_billing_payments(partner)) == 1
    assert await balance(workspace) == 10_000 and await balance(partner) == 1000
    assert await ledger_sums(pool.id) == 1000
    assert len(await notices("auto_billing.performed", partner)) == 1


async def test_grants_made_while_a_purchase_is_pending_are_bought_after_it(ledgerpay) -> None:
    import whitebill_ledgerpay

    partner = await an_agency()
    first, second = await a_workspace(partner), await a_workspace(partner)
    config = await ledgerpay_for(None)
    await save_card(config, partner.id, f"PARTNER:{partner.id}", "tok_pending")
    await platform_package(2000, 1000)
    await turn_on(partner)
    await sign_up(partner, first, {CREDITS: 1500})
    await run_worker()
    [pending] = await auto_billing_payments(partner)
    assert pending.status.value == "PENDING"
    await sign_up(partner, second, {CREDITS: 1500})  # waits behind the first; nothing more is bought yet
    await run_worker()
    assert len(await auto_billing_payments(partner)) == 1

    whitebill_ledgerpay.settle(pending.provider_ref)  # paid at the provider; the reconciler finds out
    await clock.advance(pending.next_check_at - clock.now())
    await run_worker()
    assert await balance(first) == 1500 and await balance(second) == 0
    first_buy, second_buy = await auto_billing_payments(partner)  # bought once the first had its answer
    assert second_buy.status.value == "PENDING"
    whitebill_ledgerpay.settle(second_buy.provider_ref)
    await clock.advance(second_buy.next_check_at - clock.now())
    await run_worker()
    first_buy, second_buy = await auto_billing_payments(partner)
    assert first_buy.status.value == second_buy.status.value == "SUCCEEDED"
    assert second_buy.amount == 1000  # the pool had 500 left; the second grant needed 1,000 more
    assert await balance(first) == await balance(second) == 1500 and await balance(partner) == 1000
    assert len(await notices("auto_billing.performed", partner)) == 2
