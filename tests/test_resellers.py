"""Resellers of resellers: platform → master → agency → freelancer → client. Each level's price is its
parent's plus its own margin, rounded once per level; a client's payment debits every level its parent's
price in one posting; a level short of balance holds the whole deduction back and is the one told; no
partner sits a fourth level down; every level's statement reconciles with its ledger."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from billing.accounts import statements, top_ups, wallets
from billing.auto_billing import engine
from billing.catalog import plans, rate_cards
from billing.core import clock, config
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Money
from billing.core.periods import month_range
from billing.sales import checkout, partner_balance, purchases, refunds
from billing.subscriptions import lifecycle, renewals
from billing.tenants import api_keys, identity, partners
from billing.usage import platform_deductions, project_credit, usage_reports, whatsapp
from billing.usage.exact_amounts import FINE
from models.documents import Document
from models.enums import (
    BillingInterval,
    DocumentKind,
    MarginKind,
    MessageCategory,
    OwnerKind,
    PaymentMethodKind,
    PaymentStatus,
    PeriodStatus,
    PlanChangeTiming,
    RefundPlanPolicy,
)
from models.operations import OutboxEvent
from models.payments import Payment
from models.subscriptions import SubscriptionPeriod
from models.tenancy import Partner, Project, Workspace
from models.wallets import LedgerEntry, PlatformDeduction, Wallet
from schema.ids import to_global_id
from tests.factories import PLATFORM, a_client_login, a_partner, a_workspace, partner_viewer
from tests.graphql import GraphQLClient
from whitebill.settings import load_settings
from whitebill.worker import Worker

pytestmark = pytest.mark.usefixtures("database")


async def a_chain():
    """Master (+20 %), its agency (+5.00 BRL), the agency's freelancer (+15 %), on the platform's 49.90 plan."""
    master = await a_partner("Master")
    agency = await partners_sub(master, "Agency")
    freelancer = await partners_sub(agency, "Freelancer")
    plan = await plans.create_plan(
        PLATFORM, name="Basic", interval=BillingInterval.MONTHLY, price=Money(4990, "BRL"), limits={}
    )
    await plans.set_margin(partner_viewer(master), kind=MarginKind.PERCENTAGE, value=Decimal(20), plan_id=plan.id)
    await plans.set_margin(partner_viewer(agency), kind=MarginKind.FIXED, value="5.00", plan_id=plan.id)
    await plans.set_margin(partner_viewer(freelancer), kind=MarginKind.PERCENTAGE, value=Decimal(15), plan_id=plan.id)
    return master, agency, freelancer, plan


async def partners_sub(parent, name: str):
    return await partners.create_sub_partner(partner_viewer(parent), name=name, slug=f"{parent.slug}-{name.lower()}")


async def fund(partner, amount: int, key: str) -> None:
    """Each level's balance is with its parent: the parent funds it (the platform its direct partners)."""
    parent = PLATFORM if partner.parent_id is None else partner_viewer(await Partner.get(id=partner.parent_id))
    await wallets.grant_partner_balance(
        parent, partner_id=partner.id, currency="BRL", amount=amount, note="", idempotency_key=key
    )


async def balance(partner) -> int:
    found = await Wallet.get_or_none(owner_key=f"PARTNER:{partner.id}", owner_kind=OwnerKind.PARTNER, unit="BRL")
    return found.balance if found else 0


async def test_each_level_adds_its_margin_to_its_parents_price_rounded_once_per_level() -> None:
    master, agency, freelancer, plan = await a_chain()
    # By hand: 49.90 + 20 % = 59.88; + 5.00 = 64.88; + 15 % = 74.612 -> 74.61 (half-even to the cent).
    assert [(await plans.price_for(p.id, plan)).amount for p in (master, agency, freelancer)] == [5988, 6488, 7461]
    assert (agency.level, freelancer.level, freelancer.parent_id) == (2, 3, agency.id)


async def test_no_partner_sits_a_fourth_level_down_and_the_platform_may_lower_the_limit() -> None:
    master, agency, freelancer, _ = await a_chain()
    with pytest.raises(BillingError) as refused:
        await partners_sub(freelancer, "Fourth")
    assert refused.value.code is ErrorCode.FORBIDDEN
    lowered = config.current()
    config.configure(
        config.DomainConfig(**{**{f: getattr(lowered, f) for f in lowered.__slots__}, "max_partner_levels": 2})
    )
    try:
        with pytest.raises(BillingError) as refused:
            await partners_sub(agency, "Another")
        assert refused.value.code is ErrorCode.FORBIDDEN
        await partners_sub(master, "Second")  # still one level below the master
    finally:
        config.configure(lowered)


async def test_a_renewal_debits_every_level_its_parents_price_in_one_posting_and_statements_reconcile() -> None:
    master, agency, freelancer, plan = await a_chain()
    for n, partner in enumerate((master, agency, freelancer)):
        await fund(partner, 1000_00, f"fund-{n}")
    client = await a_workspace(freelancer, "Client")
    subscription = await lifecycle.assign_plan(
        partner_viewer(freelancer), workspace_id=client.id, plan_id=plan.id, note="", idempotency_key="a"
    )
    assert subscription.price_amount == 7461  # the client pays the freelancer's price
    assert [await balance(p) for p in (master, agency, freelancer)] == [1000_00 - 4990, 1000_00 - 5988, 1000_00 - 6488]
    await clock.advance(subscription.current_period_end - clock.now())
    assert await renewals.run_due() == 1
    for period in await SubscriptionPeriod.filter(subscription_id=subscription.id, status=PeriodStatus.DUE):
        assert period.payment_id is not None
        await purchases.record_payment(
            partner_viewer(freelancer), payment_id=period.payment_id, note="", idempotency_key="renewal"
        )
    assert [await balance(p) for p in (master, agency, freelancer)] == [
        1000_00 - 2 * 4990,
        1000_00 - 2 * 5988,
        1000_00 - 2 * 6488,
    ]
    renewal = await PlatformDeduction.get(kind="RENEWAL")
    entries = await LedgerEntry.filter(posting_id=renewal.posting_id).order_by("id")
    assert sorted(e.amount for e in entries) == [-6488, -5988, -4990]  # one posting: every level or none
    for partner in (master, agency, freelancer):
        month = clock.now().strftime("%Y-%m")
        statement = await statements.monthly(PLATFORM, partner_id=partner.id, month=month)
        wallet = await Wallet.get(owner_key=f"PARTNER:{partner.id}", unit="BRL")
        in_month = await LedgerEntry.filter(
            wallet_id=wallet.id, created_at__gte=statement.start, created_at__lt=statement.end
        )
        assert statement.reconciled and statement.movement == sum(e.amount for e in in_month)


async def test_a_middle_level_short_of_balance_holds_the_deduction_back_is_told_and_pays_once_after_its_top_up() -> (
    None
):
    master, agency, freelancer, plan = await a_chain()
    await fund(master, 1000_00, "m")
    await fund(agency, 10_00, "a")  # short: it owes its parent 59.88
    await fund(freelancer, 1000_00, "f")
    client = await a_workspace(freelancer, "Client")
    await lifecycle.assign_plan(
        partner_viewer(freelancer), workspace_id=client.id, plan_id=plan.id, note="", idempotency_key="a"
    )
    pending = await PlatformDeduction.get(kind="PLAN")
    assert pending.debited_at is None  # the client has its plan; nobody was debited
    assert [await balance(p) for p in (master, agency, freelancer)] == [1000_00, 10_00, 1000_00]
    told = await OutboxEvent.filter(event_type="partner.balance_insufficient")
    assert [(e.partner_id, e.payload["amount"]) for e in told] == [(agency.id, 5988)]  # the short one, its share
    await fund(agency, 100_00, "a2")
    await clock.advance(platform_deductions.RETRY_EVERY + timedelta(minutes=1))
    for _ in range(2):  # the retry, and a repeat of it: debited once
        await platform_deductions.retry_job({"deduction_id": pending.id})
    assert [await balance(p) for p in (master, agency, freelancer)] == [1000_00 - 4990, 110_00 - 5988, 1000_00 - 6488]


PARTNERS = "{ partners(first: 20) { nodes { name level subPartners(first: 5) { nodes { name } } } } }"
CREATE_SUB = """mutation($name: String!, $slug: String!) { createSubPartner(input: {name: $name, slug: $slug}) {
  partner { name level defaultCurrency } errors { code field } } }"""


async def test_a_parent_sees_the_partners_below_it_and_a_sub_partner_sees_neither_its_parent_nor_its_siblings(
    server,
) -> None:
    master, agency, freelancer, _ = await a_chain()
    sibling = await partners_sub(master, "Sibling")

    async def client_of(partner) -> GraphQLClient:
        return GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)

    seen = (await (await client_of(master)).data(PARTNERS))["partners"]["nodes"]
    assert sorted((p["name"], p["level"]) for p in seen) == [
        ("Agency", 2),
        ("Freelancer", 3),
        ("Master", 1),
        ("Sibling", 2),
    ]
    assert {p["name"]: [c["name"] for c in p["subPartners"]["nodes"]] for p in seen}["Master"] == ["Agency", "Sibling"]
    seen = (await (await client_of(agency)).data(PARTNERS))["partners"]["nodes"]
    assert [(p["name"], [c["name"] for c in p["subPartners"]["nodes"]]) for p in seen] == [
        ("Agency", ["Freelancer"]),
        ("Freelancer", []),
    ]
    assert [p["name"] for p in (await (await client_of(sibling)).data(PARTNERS))["partners"]["nodes"]] == ["Sibling"]

    freelancer_api = await client_of(freelancer)
    refused = (await freelancer_api.data(CREATE_SUB, {"name": "Fourth", "slug": "fourth-level"}))["createSubPartner"]
    assert refused == {"partner": None, "errors": [{"code": "FORBIDDEN", "field": None}]}
    made = await (await client_of(sibling)).data(CREATE_SUB, {"name": "Shop", "slug": "sibling-shop"})
    assert made["createSubPartner"]["partner"] == {"name": "Shop", "level": 3, "defaultCurrency": "BRL"}


async def test_each_balance_is_held_with_the_parent_which_alone_funds_it_and_records_its_top_ups() -> None:
    master, agency, freelancer, _ = await a_chain()
    await fund(agency, 50_00, "by-master")
    refused = [
        (PLATFORM, agency),  # the agency's balance is with the master, not the platform
        (partner_viewer(master), freelancer),  # nor with its grandparent
        (partner_viewer(agency), master),  # never up the chain
    ]
    for n, (who, whom) in enumerate([*refused, (partner_viewer(agency), agency)]):  # nor itself (FORBIDDEN)
        with pytest.raises(BillingError) as error:
            await wallets.grant_partner_balance(
                who, partner_id=whom.id, currency="BRL", amount=1, note="", idempotency_key=f"no-{n}"
            )
        expected = ErrorCode.FORBIDDEN if whom is agency and who.partner_id == agency.id else ErrorCode.NOT_FOUND
        assert (error.value.code, error.value.field) == (expected, "partnerId")
    assert await balance(agency) == 50_00

    # A manual top-up of the agency's balance is the master's to collect and to record.
    top_up = await partner_balance.top_up(
        partner_viewer(agency),
        partner_id=agency.id,
        amount="20.00",
        method=PaymentMethodKind.MANUAL,
        idempotency_key="t",
    )
    assert (top_up.status, top_up.purpose["collector"]) == (PaymentStatus.PENDING, master.id)
    with pytest.raises(BillingError) as error:
        await purchases.record_payment(partner_viewer(agency), payment_id=top_up.id, note="", idempotency_key="self")
    assert error.value.code is ErrorCode.FORBIDDEN  # saying it paid itself would credit its own balance
    for stranger in (freelancer, await a_partner("Other")):
        with pytest.raises(BillingError) as error:
            await purchases.record_payment(partner_viewer(stranger), payment_id=top_up.id, note="", idempotency_key="x")
        assert error.value.code is ErrorCode.NOT_FOUND
    assert await balance(agency) == 50_00
    await purchases.record_payment(partner_viewer(master), payment_id=top_up.id, note="wire", idempotency_key="r")
    assert (await Payment.get(id=top_up.id)).status is PaymentStatus.SUCCEEDED
    assert await balance(agency) == 70_00


async def test_a_partner_never_records_its_own_payment_to_the_platform() -> None:
    master = await a_partner("Master")
    top_up = await partner_balance.top_up(
        partner_viewer(master),
        partner_id=master.id,
        amount="20.00",
        method=PaymentMethodKind.MANUAL,
        idempotency_key="t",
    )
    with pytest.raises(BillingError) as error:
        await purchases.record_payment(partner_viewer(master), payment_id=top_up.id, note="", idempotency_key="self")
    assert error.value.code is ErrorCode.FORBIDDEN
    assert await balance(master) == 0
    await purchases.record_payment(PLATFORM, payment_id=top_up.id, note="", idempotency_key="platform")
    assert await balance(master) == 20_00


READ_BELOW = """query($workspace: ID!, $partner: ID!) {
  workspace: node(id: $workspace) { ... on Workspace { name wallets { unit balance { amount } } } }
  partner: node(id: $partner) { ... on Partner { name workspaces(first: 5) { nodes { name } }
    wallets { unit balance { amount } entries(first: 5) { nodes { amount { amount } } } } } }
  workspaces(first: 10) { nodes { name } }
}"""
STATEMENT = """query($partner: ID!, $month: String!) {
  partnerStatement(partnerId: $partner, month: $month) { closingBalance { amount } } }"""


async def test_a_parent_reads_its_descendants_workspaces_balances_and_statements_and_nobody_reads_up_or_across(
    server,
) -> None:
    master, agency, freelancer, _ = await a_chain()
    sibling = await partners_sub(master, "Sibling")
    await fund(agency, 30_00, "a")
    for partner in (master, agency, freelancer, sibling):
        await a_workspace(partner, f"{partner.name}'s client")
    month = clock.now().strftime("%Y-%m")

    async def read(reader, owner) -> tuple[dict, dict]:
        api = GraphQLClient(server.url, (await api_keys.create_key(partner_id=reader.id)).secret)
        workspace = await Workspace.get(partner_id=owner.id)
        partner = to_global_id("Partner", owner.id)
        read = await api.data(READ_BELOW, {"workspace": to_global_id("Workspace", workspace.id), "partner": partner})
        return read, await api.execute(STATEMENT, {"partner": partner, "month": month})

    seen, statement = await read(master, agency)
    assert seen["workspace"]["name"] == "Agency's client"
    assert seen["partner"]["workspaces"]["nodes"] == [{"name": "Agency's client"}]
    assert [(w["unit"], w["balance"]["amount"]) for w in seen["partner"]["wallets"]] == [("BRL", "30.00")]
    assert [e["amount"]["amount"] for e in seen["partner"]["wallets"][0]["entries"]["nodes"]] == ["30.00"]
    assert statement["data"]["partnerStatement"]["closingBalance"]["amount"] == "30.00"
    assert seen["workspaces"]["nodes"] == [{"name": "Master's client"}]  # its own list stays its own
    assert (await read(master, freelancer))[0]["workspace"]["name"] == "Freelancer's client"  # two levels down

    for reader, owner in ((agency, master), (freelancer, agency), (agency, sibling), (sibling, freelancer)):
        seen, statement = await read(reader, owner)
        assert (seen["workspace"], seen["partner"]) == (None, None), (reader.name, owner.name)
        assert [e["extensions"]["code"] for e in statement["errors"]] == ["NOT_FOUND"]


# --- usage down the chain -----------------------------------------------------------------------------


async def a_usage_chain(agency_funds: int = 100_00) -> dict:
    """The chain with WhatsApp rates: the platform's BR marketing message at 0.0625 BRL; the master +20 %,
    the agency +0.01 a message, the freelancer +15 %; a freelancer's client with a project of 100.00 credit."""
    master, agency, freelancer, _ = await a_chain()
    await rate_cards.set_platform_rates(
        PLATFORM, currency="BRL", cells=[rate_cards.CellInput("BR", MessageCategory.MARKETING, "0.0625")]
    )
    for partner, kind, value in (
        (master, MarginKind.PERCENTAGE, "20"),
        (agency, MarginKind.FIXED, "0.01"),
        (freelancer, MarginKind.PERCENTAGE, "15"),
    ):
        await rate_cards.set_partner_margin(partner_viewer(partner), partner_id=partner.id, kind=kind, value=value)
    await fund(master, 100_00, "m")
    await fund(agency, agency_funds, "a")
    await fund(freelancer, 100_00, "f")
    client = await a_workspace(freelancer, "Client")
    project = await Project.get(workspace_id=client.id)
    await project_credit.assign(
        partner_viewer(freelancer), project_id=project.id, amount=100_00, note="", idempotency_key="credit"
    )
    return {"levels": (master, agency, freelancer), "project": project}


def thirteen_messages(project, prefix: str = "e") -> list[whatsapp.UsageIn]:
    """Ten events of one message, then one of three: 13 messages."""
    when = clock.now() - timedelta(minutes=1)
    one = [whatsapp.UsageIn(project.id, f"{prefix}{i}", "MARKETING", when, country="BR") for i in range(10)]
    return [*one, whatsapp.UsageIn(project.id, f"{prefix}-three", "MARKETING", when, count=3, country="BR")]


async def usage_moved(owner_key: str) -> int:
    wallet = await Wallet.get(owner_key=owner_key, unit="BRL")
    return -sum(e.amount for e in await LedgerEntry.filter(wallet_id=wallet.id, cause="USAGE"))


async def test_each_level_sees_its_parents_rate_as_its_cost_with_its_own_margin_rounded_once_per_level() -> None:
    chain = await a_usage_chain()
    _, agency, freelancer = chain["levels"]
    now = clock.now()
    # By hand: 0.0625 + 20 % = 0.075; + 0.01 = 0.085; + 15 % = 0.09775.
    rates = [(await rate_cards.table(p.id, "BRL")).rate("BR", "MARKETING", now) for p in chain["levels"]]
    assert [(r.platform, r.partner) for r in rates] == [
        (Fraction("0.0625"), Fraction("0.075")),
        (Fraction("0.075"), Fraction("0.085")),
        (Fraction("0.085"), Fraction("0.09775")),
    ]
    assert rates[2].costs() == (Fraction("0.0625"), Fraction("0.075"), Fraction("0.085"))
    # The agency raises its margin: the freelancer's card, built on it, moves with it at once.
    await rate_cards.set_partner_margin(
        partner_viewer(agency), partner_id=agency.id, kind=MarginKind.FIXED, value="0.02"
    )
    moved = (await rate_cards.table(freelancer.id, "BRL")).rate("BR", "MARKETING", now)
    assert moved is not None and (moved.platform, moved.partner) == (Fraction("0.095"), Fraction("0.10925"))


async def test_usage_of_a_clients_project_debits_every_level_its_parents_rate_in_the_batchs_one_posting() -> None:
    chain = await a_usage_chain()
    master, agency, freelancer = chain["levels"]
    results = await whatsapp.report(PLATFORM, thirteen_messages(chain["project"]))
    assert {r.status for r in results} == {whatsapp.Status.CHARGED}
    # The client pays 0.09775, the freelancer its cost 0.085 a message (exact, in fine units).
    assert (results[0].partner_amount, results[0].platform_amount) == (9_775 * FINE // 1000, 85 * FINE // 10)
    # 13 messages, each running total rounded once, half-up: the client 1.27075 -> 1.27; the freelancer
    # 1.105 -> 1.11 (to the agency); the agency 0.975 -> 0.98 (to the master); the master 0.8125 -> 0.81.
    keys = [f"PROJECT:{chain['project'].id}", *(f"PARTNER:{p.id}" for p in (freelancer, agency, master))]
    assert [await usage_moved(k) for k in keys] == [127, 111, 98, 81]
    postings = {e.posting_id for e in await LedgerEntry.filter(cause="USAGE")}
    assert len(postings) == 1  # every level or none
    again = await whatsapp.report(PLATFORM, thirteen_messages(chain["project"]))
    assert {r.status for r in again} == {whatsapp.Status.DUPLICATE}
    assert [await usage_moved(k) for k in keys] == [127, 111, 98, 81]


async def test_usage_stops_at_a_middle_level_short_of_balance_and_nobody_pays_for_what_is_refused() -> None:
    chain = await a_usage_chain(agency_funds=50)  # the agency holds 0.50 with the master: 6 messages at 0.075
    master, agency, freelancer = chain["levels"]
    results = await whatsapp.report(PLATFORM, thirteen_messages(chain["project"]))
    charged = [r for r in results if r.status is whatsapp.Status.CHARGED]
    refused = [r for r in results if r.status is whatsapp.Status.REFUSED]
    assert len(charged) == 6 and len(refused) == 5
    assert {r.reason for r in refused} == {whatsapp.Reason.PARTNER_BALANCE_INSUFFICIENT}
    keys = [f"PROJECT:{chain['project'].id}", *(f"PARTNER:{p.id}" for p in (freelancer, agency, master))]
    # 6 messages: 0.5865 -> 0.59; 0.51; 0.45; 0.375 -> 0.38.
    assert [await usage_moved(k) for k in keys] == [59, 51, 45, 38]
    await fund(agency, 10_00, "a-more")
    retried = await whatsapp.report(PLATFORM, thirteen_messages(chain["project"]))
    expected = [whatsapp.Status.CHARGED if r in refused else whatsapp.Status.DUPLICATE for r in results]
    assert [r.status for r in retried] == expected  # what was refused was not kept: it is charged now
    assert [await usage_moved(k) for k in keys] == [127, 111, 98, 81]  # as if sent at once


PRICES = """{ plans(first: 5) { nodes { name platformPrice { amount } price { amount } } }
  rateCard { cells(first: 5) { nodes { country platformPrice partnerPrice } } } }"""


async def test_through_the_api_each_level_sees_its_own_cost_and_price_never_the_prices_above_them(server) -> None:
    chain = await a_usage_chain()
    seen = []
    for partner in chain["levels"]:
        api = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
        data = await api.data(PRICES)
        [plan] = data["plans"]["nodes"]
        [cell] = data["rateCard"]["cells"]["nodes"]
        seen.append(
            (plan["platformPrice"]["amount"], plan["price"]["amount"], cell["platformPrice"], cell["partnerPrice"])
        )
    assert seen == [
        ("49.90", "59.88", "0.0625", "0.075"),
        ("59.88", "64.88", "0.075", "0.085"),
        ("64.88", "74.61", "0.085", "0.09775"),
    ]


# --- the platform's packages down the chain ----------------------------------------------------------


async def a_package_chain():
    """The chain, and the platform's 1,000-credit package at 49.90 BRL: the master resells it +15 %, the agency
    +2.50 BRL. By hand: 49.90 x 1.15 = 57.385 → 57.38 (half-even to the cent); 57.38 + 2.50 = 59.88."""
    master, agency, freelancer, _ = await a_chain()
    package = await plans.create_credit_package(
        PLATFORM, name="1,000 credits", unit="MESSAGE_CREDITS", quantity=1000, price=Money(4990, "BRL")
    )
    await plans.set_margin(
        partner_viewer(master), kind=MarginKind.PERCENTAGE, value=Decimal(15), credit_package_id=package.id
    )
    await plans.set_margin(partner_viewer(agency), kind=MarginKind.FIXED, value="2.50", credit_package_id=package.id)
    return master, agency, freelancer, package


async def pool(partner) -> int:
    found = await Wallet.get_or_none(owner_key=f"PARTNER:{partner.id}", unit="MESSAGE_CREDITS")
    return found.balance if found else 0


async def bought_by_hand(buyer, package, quantity: int = 1):
    """``buyer`` buys ``quantity`` of the platform's ``package`` for its pool, by hand (its parent collects)."""
    return await checkout.buy_platform_package(
        partner_viewer(buyer),
        partner_id=buyer.id,
        package_id=package.id,
        quantity=quantity,
        method=PaymentMethodKind.MANUAL,
        idempotency_key=f"buy-{package.id}-{quantity}",
    )


PACKAGES = "{ creditPackages(first: 5) { nodes { price { amount } resalePrice { amount } } } }"


async def test_the_platforms_packages_are_bought_from_the_parent_at_its_price_and_every_level_above_pays_its_own(
    server,
) -> None:
    master, agency, freelancer, package = await a_package_chain()
    assert [(await plans.package_cost(p.id, package)).amount for p in (master, agency, freelancer)] == [
        4990,
        5738,
        5988,
    ]
    seen = []
    for partner in (master, agency, freelancer):  # each level sees its cost and its price to the level below
        api = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
        [node] = (await api.data(PACKAGES))["creditPackages"]["nodes"]
        seen.append((node["price"]["amount"], node["resalePrice"]["amount"]))
    assert seen == [("49.90", "57.38"), ("57.38", "59.88"), ("59.88", "59.88")]

    await fund(master, 200_00, "m")
    await fund(agency, 200_00, "a")
    bought = await bought_by_hand(freelancer, package, 2)
    # Collected by the agency, at its price: only the agency (or the platform) says it was paid.
    assert (bought.amount, bought.status, bought.purpose["collector"]) == (2 * 5988, PaymentStatus.PENDING, agency.id)
    for who in (partner_viewer(freelancer), partner_viewer(master)):
        with pytest.raises(BillingError):
            await purchases.record_payment(who, payment_id=bought.id, note="", idempotency_key="no")
    assert (await pool(freelancer), await balance(agency), await balance(master)) == (0, 200_00, 200_00)
    for key in ("r", "r"):  # recorded twice with one key: one payment, one deduction
        await purchases.record_payment(partner_viewer(agency), payment_id=bought.id, note="pix", idempotency_key=key)

    assert await pool(freelancer) == 2000
    # The agency pays the master its price for both, the master the platform's: in one posting.
    assert (await balance(agency), await balance(master)) == (200_00 - 2 * 5738, 200_00 - 2 * 4990)
    [deduction] = await PlatformDeduction.all()
    assert (deduction.kind, deduction.partner_id, deduction.amount, deduction.workspace_id) == (
        "PACKAGE",
        agency.id,
        2 * 5738,
        None,
    )
    assert deduction.chain == [
        {"partner_id": master.id, "amount": 2 * 4990},
        {"partner_id": agency.id, "amount": 2 * 5738},
    ]
    legs = await LedgerEntry.filter(posting_id=deduction.posting_id).values_list("wallet_id", "amount")
    assert sorted(amount for wallet, amount in legs if wallet is not None) == [-2 * 5738, -2 * 4990]
    invoice = await Document.get(kind=DocumentKind.INVOICE, buyer_key=f"PARTNER:{freelancer.id}")
    assert invoice.partner_id == agency.id  # the agency sold it, so the agency invoices it

    # Each level's package-deductions report lists its own share.
    month = clock.now().strftime("%Y-%m")
    start, end = month_range(month)
    for partner, share in ((master, "99.80"), (agency, "114.76")):
        text = "".join([c async for c in usage_reports.stream("package-deductions", partner.id, start, end)])
        [row] = list(csv.DictReader(io.StringIO(text)))
        assert (row["amount"], row["seller_id"]) == (share, to_global_id("Partner", agency.id))


SET_ITEM_MARGIN = """mutation($input: SetPartnerMarginInput!) { setPartnerMargin(input: $input) {
  margin { kind value currency creditPackageId addOnId planId familyId } errors { code field } } }"""
REMOVE_ITEM_MARGIN = """mutation($input: RemovePartnerMarginInput!) { removePartnerMargin(input: $input) {
  margin { creditPackageId addOnId } errors { code field } } }"""
ITEMS = """{ viewer { partner { margins { kind value planId creditPackageId addOnId } } }
  addOns(first: 5) { nodes { name platformPrice { amount } price { amount } } }
  creditPackages(first: 5) { nodes { name price { amount } resalePrice { amount } } } }"""

CLIENT_ITEMS = """query($package: ID!) { addOns(first: 5) { nodes { platformPrice { amount } price { amount } } }
  creditPackages(first: 5) { nodes { name } } node(id: $package) { ... on CreditPackage { name } } }"""


async def test_margins_on_the_platforms_packages_and_add_ons_are_set_read_stacked_and_removed_through_the_api(
    server,
) -> None:
    master, agency, freelancer, plan = await a_chain()
    package = await plans.create_credit_package(
        PLATFORM, name="Credits", unit="MESSAGE_CREDITS", quantity=1000, price=Money(10_00, "BRL")
    )
    add_on = await plans.create_add_on(
        PLATFORM, name="Chatbot", limit_deltas={"chatbots": 1}, price=Money(10_00, "BRL")
    )
    own = await plans.create_credit_package(
        partner_viewer(agency), name="Own", unit="MESSAGE_CREDITS", quantity=10, price=Money(1_00, "BRL")
    )
    apis = [
        GraphQLClient(server.url, (await api_keys.create_key(partner_id=p.id)).secret)
        for p in (master, agency, freelancer)
    ]
    package_id, add_on_id = to_global_id("CreditPackage", package.id), to_global_id("AddOn", add_on.id)

    async def set_margin(api, **fields) -> dict:
        return (await api.data(SET_ITEM_MARGIN, {"input": fields}))["setPartnerMargin"]

    made = await set_margin(apis[0], kind="PERCENTAGE", value="10", addOnId=add_on_id)
    assert (made["margin"]["addOnId"], made["margin"]["creditPackageId"], made["errors"]) == (add_on_id, None, [])
    await set_margin(apis[0], kind="PERCENTAGE", value="12.5", creditPackageId=package_id)
    await set_margin(apis[2], kind="FIXED", value="1.00", addOnId=add_on_id)
    made = await set_margin(apis[1], kind="FIXED", value="0.75", creditPackageId=package_id)
    assert made["margin"] == {
        "kind": "FIXED", "value": "0.75", "currency": "BRL", "creditPackageId": package_id, "addOnId": None,
        "planId": None, "familyId": None,
    }  # fmt: skip
    # Refused: a partner's own package, two things at once, a fixed margin in another currency.
    for fields, expected in (
        ({"creditPackageId": to_global_id("CreditPackage", own.id)}, ("INVALID_INPUT", "creditPackageId")),
        ({"creditPackageId": package_id, "addOnId": add_on_id}, ("INVALID_INPUT", "addOnId")),
        ({"creditPackageId": package_id, "currency": "USD", "kind": "FIXED"}, ("CURRENCY_MISMATCH", "currency")),
    ):
        refused = await set_margin(apis[1], **{"kind": "PERCENTAGE", "value": "5", **fields})
        assert [(e["code"], e["field"]) for e in refused["errors"]] == [expected]

    seen = []
    for api in apis:
        data = await api.data(ITEMS)
        [bought] = [p for p in data["creditPackages"]["nodes"] if p["name"] == "Credits"]
        [chatbot] = data["addOns"]["nodes"]
        seen.append(
            (
                bought["price"]["amount"], bought["resalePrice"]["amount"],
                chatbot["platformPrice"]["amount"], chatbot["price"]["amount"],
            )
        )  # fmt: skip
    # Package: 10.00 + 12.5 % = 11.25 (the agency's cost), + 0.75 = 12.00 (the freelancer's).
    # Add-on: 10.00 + 10 % = 11.00; the agency adds nothing; + 1.00 = 12.00.
    assert seen == [
        ("10.00", "11.25", "10.00", "11.00"),
        ("11.25", "12.00", "11.00", "11.00"),
        ("12.00", "12.00", "11.00", "12.00"),
    ]
    # A client of the freelancer sees its own price for the add-on, never its partner's cost, and none of the
    # platform's packages.
    client = await a_workspace(freelancer, "Client")
    await a_client_login(freelancer, client, "client@free.example", "a long client password")
    session = await identity.login(
        brand=str(freelancer.id), email="client@free.example", password="a long client password", client_address=None
    )
    seen_by_client = await GraphQLClient(server.url, session.token).data(CLIENT_ITEMS, {"package": package_id})
    assert seen_by_client == {
        "addOns": {"nodes": [{"platformPrice": {"amount": "12.00"}, "price": {"amount": "12.00"}}]},
        "creditPackages": {"nodes": []},
        "node": None,
    }
    margins = (await apis[1].data(ITEMS))["viewer"]["partner"]["margins"]
    assert margins == [  # the plan's margin first (as a_chain set it), then the package's
        {
            "kind": "FIXED",
            "value": "5.00",
            "planId": to_global_id("Plan", plan.id),
            "creditPackageId": None,
            "addOnId": None,
        },
        {"kind": "FIXED", "value": "0.75", "planId": None, "creditPackageId": package_id, "addOnId": None},
    ]
    removed = (await apis[1].data(REMOVE_ITEM_MARGIN, {"input": {"creditPackageId": package_id}}))[
        "removePartnerMargin"
    ]
    assert removed == {"margin": {"creditPackageId": package_id, "addOnId": None}, "errors": []}
    assert (await plans.package_cost(freelancer.id, package)).amount == 11_25  # resold at cost now
    again = (await apis[1].data(REMOVE_ITEM_MARGIN, {"input": {"creditPackageId": package_id}}))["removePartnerMargin"]
    assert again["errors"] == [{"code": "NOT_FOUND", "field": "creditPackageId"}]


async def test_a_short_parent_is_told_the_buyer_gets_its_credits_and_the_parent_pays_once_after_its_top_up() -> None:
    master, agency, freelancer, package = await a_package_chain()
    await fund(master, 200_00, "m")
    await fund(agency, 10_00, "a")  # short: it owes the master 57.38
    bought = await bought_by_hand(freelancer, package)
    await purchases.record_payment(partner_viewer(agency), payment_id=bought.id, note="", idempotency_key="r")
    assert await pool(freelancer) == 1000  # the buyer paid: it is not held back
    pending = await PlatformDeduction.get(kind="PACKAGE")
    assert pending.debited_at is None and (await balance(master), await balance(agency)) == (200_00, 10_00)
    told = await OutboxEvent.filter(event_type="partner.balance_insufficient")
    assert [(e.partner_id, e.payload["amount"], e.payload["kind"]) for e in told] == [(agency.id, 5738, "PACKAGE")]
    await fund(agency, 100_00, "a2")
    await clock.advance(platform_deductions.RETRY_EVERY + timedelta(minutes=1))
    for _ in range(2):  # the retry, and a repeat of it: debited once
        await platform_deductions.retry_job({"deduction_id": pending.id})
    assert (await balance(master), await balance(agency)) == (200_00 - 4990, 110_00 - 5738)


async def test_auto_billing_and_auto_top_ups_of_a_partner_below_another_buy_at_its_cost_from_its_parent() -> None:
    master, agency, _, _ = await a_chain()
    # The platform sells 2,000 credits for 10.00 and 5,000 for 20.00; the master resells the 5,000 at +60 %.
    two = await plans.create_credit_package(
        PLATFORM, name="2,000", unit="MESSAGE_CREDITS", quantity=2000, price=Money(10_00, "BRL")
    )
    five = await plans.create_credit_package(
        PLATFORM, name="5,000", unit="MESSAGE_CREDITS", quantity=5000, price=Money(20_00, "BRL")
    )
    await plans.set_margin(
        partner_viewer(master), kind=MarginKind.PERCENTAGE, value=Decimal(60), credit_package_id=five.id
    )
    await fund(master, 500_00, "m")
    await fund(agency, 500_00, "a")
    await engine.configure(
        partner_viewer(agency), partner_id=agency.id, enabled=True, for_clients=False, client_overdraft=0
    )
    client = await a_workspace(agency, "Client")
    own_plan = await plans.create_plan(
        partner_viewer(agency),
        name="Credits",
        interval=BillingInterval.MONTHLY,
        price=Money(0, "BRL"),
        limits={},
        included_units={"MESSAGE_CREDITS": 4500},
    )
    await lifecycle.assign_plan(
        partner_viewer(agency), workspace_id=client.id, plan_id=own_plan.id, note="", idempotency_key="a"
    )
    await run_worker()
    [payment] = await Payment.filter(payer_key=f"PARTNER:{agency.id}")
    # For the agency, 3 x 2,000 at 10.00 (30.00) is cheaper than one 5,000 at 32.00: it buys what it pays least for.
    assert [(line["package_id"], line["count"]) for line in payment.purpose["packages"]] == [(two.id, 3)]
    # The master has no gateway: it collects by hand, and nothing moves until it says it was paid.
    assert (payment.amount, payment.status, payment.purpose["collector"]) == (30_00, PaymentStatus.PENDING, master.id)
    assert (await pool(agency), await balance(master)) == (0, 500_00)
    await purchases.record_payment(partner_viewer(master), payment_id=payment.id, note="", idempotency_key="r1")
    assert await pool(agency) == 6000 - 4500
    assert await balance(master) == 500_00 - 30_00  # the master owes the platform its price for them

    # An automatic top-up of the agency's pool buys the 5,000 from the master at 32.00.
    wallet = await Wallet.get(owner_key=f"PARTNER:{agency.id}", unit="MESSAGE_CREDITS")
    await top_ups.configure(
        partner_viewer(agency), wallet_id=wallet.id, package_id=five.id, threshold="2000", enabled=True
    )
    await run_worker()
    last = (await Payment.filter(payer_key=f"PARTNER:{agency.id}").order_by("-id"))[0]
    assert (last.amount, last.status, last.purpose["collector"], last.purpose["auto_top_up"]) == (
        32_00,
        PaymentStatus.PENDING,
        master.id,
        True,
    )
    await purchases.record_payment(partner_viewer(master), payment_id=last.id, note="", idempotency_key="r2")
    assert await pool(agency) == 1500 + 5000
    assert await balance(master) == 500_00 - 30_00 - 20_00

    # A package in another currency than the chain's is not bought below the platform's direct partners.
    dollars = await plans.create_credit_package(
        PLATFORM, name="USD", unit="MESSAGE_CREDITS", quantity=100, price=Money(1_00, "USD")
    )
    with pytest.raises(BillingError) as refused:
        await top_ups.configure(
            partner_viewer(agency), wallet_id=wallet.id, package_id=dollars.id, threshold="1", enabled=True
        )
    assert (refused.value.code, refused.value.field) == (ErrorCode.CURRENCY_MISMATCH, "packageId")
    with pytest.raises(BillingError) as refused:
        await checkout.buy_platform_package(
            partner_viewer(agency),
            partner_id=agency.id,
            package_id=dollars.id,
            method=PaymentMethodKind.MANUAL,
            idempotency_key="usd",
        )
    assert (refused.value.code, refused.value.field) == (ErrorCode.CURRENCY_MISMATCH, "packageId")


async def test_what_each_level_owes_for_a_package_is_fixed_when_it_is_bought_and_a_refund_follows_the_seller() -> None:
    master, agency, freelancer, package = await a_package_chain()
    await fund(master, 200_00, "m")
    await fund(agency, 200_00, "a")
    bought = await bought_by_hand(freelancer, package)
    # While it is pending, the agency raises its margin tenfold, and the master drops its own.
    await plans.set_margin(
        partner_viewer(agency), kind=MarginKind.PERCENTAGE, value=Decimal(1000), credit_package_id=package.id
    )
    await plans.remove_margin(partner_viewer(master), partner_id=master.id, credit_package_id=package.id)
    await purchases.record_payment(partner_viewer(agency), payment_id=bought.id, note="", idempotency_key="r")
    # Debited as priced when bought: the agency 57.38, the master 49.90.
    assert (await balance(agency), await balance(master)) == (200_00 - 5738, 200_00 - 4990)

    # The buyer turning off its own take-back does not keep the units: the agency sold them, and takes them back.
    await refunds.set_policy(
        partner_viewer(freelancer),
        partner_id=freelancer.id,
        plan_policy=RefundPlanPolicy.END_NOW,
        take_back_units=False,
    )
    await refunds.refund_payment(
        partner_viewer(agency), payment_id=bought.id, amount=None, reason="", idempotency_key="back"
    )
    assert await pool(freelancer) == 0


async def run_worker() -> None:
    worker = Worker(load_settings())
    while await worker.tick():
        pass


async def test_a_parent_acts_on_the_partners_directly_below_it_only_and_never_on_itself() -> None:
    master, agency, freelancer, _ = await a_chain()
    # Keys and the first admin of a child: yes; of a grandchild: no (the agency provisions its freelancer).
    made = await api_keys.create_key_as(partner_viewer(master), partner_id=agency.id, name="agency's first")
    assert made.key.partner_id == agency.id
    for act in (
        lambda: api_keys.create_key_as(partner_viewer(master), partner_id=freelancer.id, name="x"),
        lambda: identity.invite_partner_user(partner_viewer(master), partner_id=freelancer.id, email="a@b.example"),
        lambda: api_keys.create_key_as(partner_viewer(freelancer), partner_id=agency.id, name="x"),
    ):
        with pytest.raises(BillingError) as refused:
            await act()
        assert (refused.value.code, refused.value.field) == (ErrorCode.NOT_FOUND, "partnerId")
    with pytest.raises(BillingError) as refused:  # funding itself
        await wallets.grant_partner_balance(
            partner_viewer(agency), partner_id=agency.id, currency="BRL", amount=1, note="", idempotency_key="self"
        )
    assert refused.value.code is ErrorCode.FORBIDDEN
    # Credit on a partner's balance comes from whoever it owes.
    await fund(freelancer, 1_00, "f")
    balance_of_freelancer = await Wallet.get(owner_key=f"PARTNER:{freelancer.id}", unit="BRL")
    for who in (PLATFORM, partner_viewer(master), partner_viewer(freelancer)):
        with pytest.raises(BillingError) as refused:
            await wallets.set_credit_limit(who, credit_limit="50.00", wallet_id=balance_of_freelancer.id)
        assert refused.value.code in (ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND)
    changed = await wallets.set_credit_limit(
        partner_viewer(agency), credit_limit="50.00", wallet_id=balance_of_freelancer.id
    )
    assert changed.credit_limit == 50_00
    # One currency down the chain; no partner plan of the platform's below its direct partners.
    with pytest.raises(BillingError) as refused:
        await partners.create_sub_partner(partner_viewer(master), name="Elsewhere", slug="elsewhere", currency="USD")
    assert (refused.value.code, refused.value.field) == (ErrorCode.INVALID_INPUT, "currency")
    partner_plan = await plans.create_plan(
        PLATFORM, name="Agency plan", interval=BillingInterval.MONTHLY, price=Money(300_00, "BRL"), limits={},
        for_partners=True,
    )  # fmt: skip
    with pytest.raises(BillingError) as refused:
        await lifecycle.subscribe_partner_plan(
            partner_viewer(agency), partner_id=agency.id, plan_id=partner_plan.id,
            timing=PlanChangeTiming.NOW, idempotency_key="pp",
        )  # fmt: skip
    assert (refused.value.code, refused.value.field) == (ErrorCode.FORBIDDEN, "planId")


async def test_a_top_up_a_parent_collects_is_invoiced_by_the_parent_and_refunded_by_it() -> None:
    master, agency, _, _ = await a_chain()
    top_up = await partner_balance.top_up(
        partner_viewer(agency),
        partner_id=agency.id,
        amount="20.00",
        method=PaymentMethodKind.MANUAL,
        idempotency_key="t",
    )
    await purchases.record_payment(partner_viewer(master), payment_id=top_up.id, note="", idempotency_key="r")
    invoice = await Document.get(kind=DocumentKind.INVOICE, buyer_key=f"PARTNER:{agency.id}")
    assert invoice.partner_id == master.id  # the master issued it, not the platform
    for who, code in ((partner_viewer(agency), ErrorCode.FORBIDDEN), (await a_partner_viewer(), ErrorCode.NOT_FOUND)):
        with pytest.raises(BillingError) as refused:
            await refunds.refund_payment(who, payment_id=top_up.id, amount=None, reason="", idempotency_key="no")
        assert refused.value.code is code
    refunded, _ = await refunds.refund_payment(
        partner_viewer(master), payment_id=top_up.id, amount=None, reason="", idempotency_key="back"
    )
    assert refunded.id == top_up.id


async def a_partner_viewer():
    return partner_viewer(await a_partner("Stranger"))


async def test_volume_tiers_count_the_whole_chain_below_the_platforms_direct_partner() -> None:
    chain = await a_usage_chain()
    master, agency, freelancer = chain["levels"]
    await rate_cards.set_platform_rates(
        PLATFORM,
        currency="BRL",
        cells=[
            rate_cards.CellInput("BR", MessageCategory.MARKETING, "0.0625", tiers=(rate_cards.TierInput(11, "0.05"),))
        ],
    )
    own_client = await Project.get(workspace_id=(await a_workspace(master, "Master's client")).id)
    await project_credit.assign(
        partner_viewer(master), project_id=own_client.id, amount=10_00, note="", idempotency_key="own"
    )
    await clock.advance(timedelta(minutes=2))  # the new price is in force from the moment it was set
    when = clock.now() - timedelta(minutes=1)
    ten = [whatsapp.UsageIn(own_client.id, f"m{i}", "MARKETING", when, country="BR") for i in range(10)]
    await whatsapp.report(PLATFORM, ten)  # the master's own clients: the month's messages 1 to 10
    three = [whatsapp.UsageIn(chain["project"].id, f"f{i}", "MARKETING", when, country="BR") for i in range(3)]
    results = await whatsapp.report(PLATFORM, three)  # the freelancer's: 11 to 13, at the tier's 0.05
    assert {r.status for r in results} == {whatsapp.Status.CHARGED}
    # 0.05 -> 0.06 -> 0.07 -> 0.0805 a message: the client 0.2415 -> 0.24; the freelancer 0.21 (to the
    # agency), the agency 0.18 (to the master); the master 10 x 0.0625 + 3 x 0.05 = 0.775 -> 0.78.
    keys = [f"PROJECT:{chain['project'].id}", *(f"PARTNER:{p.id}" for p in (freelancer, agency, master))]
    assert [await usage_moved(k) for k in keys] == [24, 21, 18, 78]


async def csv_rows(report: str, partner) -> list[dict[str, str]]:
    start, end = month_range(clock.now().strftime("%Y-%m"))
    text = "".join([line async for line in usage_reports.stream(report, partner.id, start, end)])
    return list(csv.DictReader(io.StringIO(text)))


async def test_every_levels_reports_add_up_to_its_own_ledger_its_clients_and_its_descendants_events() -> None:
    chain = await a_usage_chain()
    master, agency, freelancer = chain["levels"]
    await whatsapp.report(PLATFORM, thirteen_messages(chain["project"]))
    # Each level: what it was paid (its client's charge, or the level below's cost) and what it paid up.
    expected = {master: ("0.975", "0.8125"), agency: ("1.105", "0.975"), freelancer: ("1.27075", "1.105")}
    for partner, (received, paid) in expected.items():
        rows = await csv_rows("wcc-deductions", partner)
        assert len(rows) == 11 and {r["seller_id"] for r in rows} == {to_global_id("Partner", freelancer.id)}
        assert sum(Decimal(r["partner_amount"]) for r in rows) == Decimal(received)
        assert sum(Decimal(r["platform_amount"]) for r in rows) == Decimal(paid)
        wallet = await Wallet.get(owner_key=f"PARTNER:{partner.id}", unit="BRL")
        moved = await usage_moved(f"PARTNER:{partner.id}")
        assert Decimal(paid) * 100 == moved + Fraction(wallet.usage_remainder, FINE)  # the ledger, exactly
    assert await csv_rows("wcc-deductions", await a_partner("Elsewhere")) == []


async def test_a_parents_plan_deduction_report_shows_its_share_of_its_descendants_clients_plans() -> None:
    master, agency, freelancer, plan = await a_chain()
    for n, partner in enumerate((master, agency, freelancer)):
        await fund(partner, 1000_00, f"fund-{n}")
    client = await a_workspace(freelancer, "Client")
    await lifecycle.assign_plan(
        partner_viewer(freelancer), workspace_id=client.id, plan_id=plan.id, note="", idempotency_key="a"
    )
    shares = []
    for partner in (master, agency, freelancer):
        [row] = await csv_rows("plan-deductions", partner)
        assert (row["status"], row["seller_id"]) == ("DEBITED", to_global_id("Partner", freelancer.id))
        shares.append(row["amount"])
    assert shares == ["49.90", "59.88", "64.88"]  # each level its parent's price, as its ledger says
