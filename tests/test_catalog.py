"""The catalog's settings read back: a partner sets a margin on a plan, on a family and in bulk, reads
them on Partner.margins exactly as it gave them, removes them one by one, and its clients' prices
fall back to the next margin that applies, then to the platform price."""

from __future__ import annotations

import importlib
import logging

import pytest
from tortoise import Tortoise

from billing.catalog import plans, rate_cards
from billing.core import clock, sql
from billing.core.money import Money
from billing.tenants import api_keys, identity
from models.catalog import PartnerMargin
from models.enums import BillingInterval, MarginKind
from models.operations import AuditLog
from schema.ids import to_global_id
from tests.factories import PLATFORM, a_partner, a_workspace, partner_viewer
from tests.graphql import GraphQLClient
from tests.test_identity import PASSWORD, login_over_api, mailed_token

pytestmark = pytest.mark.usefixtures("database")

CREATE_PLAN = """mutation($name: String!, $family: ID) {
  createPlan(input: {name: $name, interval: MONTHLY, priceAmount: "100.00", priceCurrency: "BRL", familyId: $family}) {
    plan { id } errors { code message } } }"""
SET_MARGIN = """mutation($kind: MarginKind!, $value: String!, $plan: ID, $family: ID, $currency: String! = "BRL") {
  setPartnerMargin(input: {kind: $kind, value: $value, planId: $plan, familyId: $family, currency: $currency}) {
    ok margin { kind value currency planId familyId } errors { code field } } }"""
REMOVE_MARGIN = """mutation($input: RemovePartnerMarginInput!) { removePartnerMargin(input: $input) {
  margin { kind value planId familyId } errors { code field } } }"""
MARGINS = "{ viewer { partner { margins { kind value currency planId familyId } } } }"
PRICE = "query($id: ID!) { node(id: $id) { ... on Plan { price { amount } } } }"


@pytest.fixture
async def catalog(server) -> dict:
    partner = await a_partner()
    platform = GraphQLClient(server.url, (await api_keys.create_key(partner_id=None)).secret)
    family = (await platform.data('mutation { createPlanFamily(input: {name: "Chatbot"}) { family { id } } }'))[
        "createPlanFamily"
    ]["family"]["id"]
    plan = (await platform.data(CREATE_PLAN, {"name": "Pro", "family": family}))["createPlan"]["plan"]["id"]
    return {
        "partner": partner,
        "partner_id": to_global_id("Partner", partner.id),
        "agency": GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret),
        "platform": platform,
        "family": family,
        "plan": plan,
    }


async def test_margins_read_back_as_set_and_removing_them_falls_back(catalog) -> None:
    agency, plan, family = catalog["agency"], catalog["plan"], catalog["family"]
    assert (await agency.data(MARGINS))["viewer"]["partner"]["margins"] == []
    set_plan = await agency.data(SET_MARGIN, {"kind": "PERCENTAGE", "value": "12.5", "plan": plan})
    assert set_plan["setPartnerMargin"] == {
        "ok": True,
        "margin": {"kind": "PERCENTAGE", "value": "12.5", "currency": None, "planId": plan, "familyId": None},
        "errors": [],
    }
    await agency.data(SET_MARGIN, {"kind": "FIXED", "value": "5.00", "family": family})
    await agency.data(SET_MARGIN, {"kind": "FIXED", "value": "7.5", "currency": "BRL"})
    bulk = {"kind": "FIXED", "value": "7.50", "currency": "BRL", "planId": None, "familyId": None}
    on_family = {"kind": "FIXED", "value": "5.00", "currency": "BRL", "planId": None, "familyId": family}
    on_plan = {"kind": "PERCENTAGE", "value": "12.5", "currency": None, "planId": plan, "familyId": None}
    # The bulk margin first, then the family's, then the plan's.
    assert (await agency.data(MARGINS))["viewer"]["partner"]["margins"] == [bulk, on_family, on_plan]
    assert (await agency.data(PRICE, {"id": plan}))["node"]["price"]["amount"] == "112.50"  # the plan's wins

    removed = await agency.data(REMOVE_MARGIN, {"input": {"planId": plan}})
    assert removed["removePartnerMargin"] == {
        "margin": {"kind": "PERCENTAGE", "value": "12.5", "planId": plan, "familyId": None},
        "errors": [],
    }
    assert (await agency.data(MARGINS))["viewer"]["partner"]["margins"] == [bulk, on_family]
    assert (await agency.data(PRICE, {"id": plan}))["node"]["price"]["amount"] == "105.00"  # now the family's

    await agency.data(REMOVE_MARGIN, {"input": {"familyId": family}})
    assert (await agency.data(MARGINS))["viewer"]["partner"]["margins"] == [bulk]
    assert (await agency.data(PRICE, {"id": plan}))["node"]["price"]["amount"] == "107.50"  # the bulk one

    await agency.data(REMOVE_MARGIN, {"input": {"currency": "BRL"}})  # the bulk fixed margin in BRL
    assert (await agency.data(MARGINS))["viewer"]["partner"]["margins"] == []
    assert (await agency.data(PRICE, {"id": plan}))["node"]["price"]["amount"] == "100.00"  # the platform price
    assert await AuditLog.filter(action="margin.remove", partner_id=catalog["partner"].id).count() == 3


async def test_removing_a_margin_that_is_not_there_names_the_field(catalog) -> None:
    agency = catalog["agency"]
    missing = await agency.data(REMOVE_MARGIN, {"input": {"planId": catalog["plan"]}})
    assert missing["removePartnerMargin"] == {"margin": None, "errors": [{"code": "NOT_FOUND", "field": "planId"}]}
    both = await agency.data(REMOVE_MARGIN, {"input": {"planId": catalog["plan"], "familyId": catalog["family"]}})
    assert both["removePartnerMargin"]["errors"] == [{"code": "INVALID_INPUT", "field": "familyId"}]


async def test_the_platform_removes_a_partners_margin_and_others_cannot(catalog, server) -> None:
    agency, platform = catalog["agency"], catalog["platform"]
    await agency.data(SET_MARGIN, {"kind": "PERCENTAGE", "value": "20"})
    other = GraphQLClient(server.url, (await api_keys.create_key(partner_id=(await a_partner()).id)).secret)
    refused = await other.data(REMOVE_MARGIN, {"input": {"partnerId": catalog["partner_id"]}})
    assert refused["removePartnerMargin"]["errors"] == [{"code": "NOT_FOUND", "field": "partnerId"}]
    assert len((await agency.data(MARGINS))["viewer"]["partner"]["margins"]) == 1
    by_platform = await platform.data(REMOVE_MARGIN, {"input": {"partnerId": catalog["partner_id"]}})
    assert by_platform["removePartnerMargin"]["errors"] == []
    assert (await agency.data(MARGINS))["viewer"]["partner"]["margins"] == []


async def test_a_client_sees_no_margins_of_its_partner(catalog, server) -> None:
    """Its prices, yes; how its partner made them, no: plan margins and WhatsApp rate margins alike."""
    partner = catalog["partner"]
    await catalog["agency"].data(SET_MARGIN, {"kind": "PERCENTAGE", "value": "20"})
    await rate_cards.set_partner_margin(
        partner_viewer(partner), partner_id=partner.id, kind=MarginKind.PERCENTAGE, value="10"
    )
    workspace = await a_workspace(partner)
    await identity.create_workspace_user(partner_viewer(partner), workspace_id=workspace.id, email="c@client.example")
    await identity.reset_password(token=await mailed_token("c@client.example"), new_password=PASSWORD)
    client = await login_over_api(GraphQLClient(server.url), partner.slug, "c@client.example", PASSWORD)
    seen = await client.data("{ viewer { partner { margins { kind } } } rateCard { margins { kind } } }")
    assert seen == {"viewer": {"partner": {"margins": []}}, "rateCard": {"margins": []}}
    agency_sees = await catalog["agency"].data(
        "{ viewer { partner { margins { kind } } } rateCard { margins { kind } } }"
    )
    assert agency_sees == {
        "viewer": {"partner": {"margins": [{"kind": "PERCENTAGE"}]}},
        "rateCard": {"margins": [{"kind": "PERCENTAGE"}]},
    }


# --- a fixed margin is money: an amount of one currency, added only to plans in it ----------------------

PLAN_IN = """mutation($name: String!, $amount: String!, $currency: String!, $family: ID) {
  createPlan(input: {name: $name, interval: MONTHLY, priceAmount: $amount, priceCurrency: $currency,
                     familyId: $family}) { plan { id } errors { code field } } }"""
SET_FIXED = """mutation($value: String!, $plan: ID, $family: ID, $currency: String) {
  setPartnerMargin(input: {kind: FIXED, value: $value, planId: $plan, familyId: $family, currency: $currency}) {
    ok margin { value currency } errors { code field } } }"""
PRICE_OF = "query($id: ID!) { node(id: $id) { ... on Plan { price { amount currency } } } }"


async def _plan_in(platform: GraphQLClient, name: str, amount: str, currency: str, family: str | None = None) -> str:
    made = await platform.data(PLAN_IN, {"name": name, "amount": amount, "currency": currency, "family": family})
    return made["createPlan"]["plan"]["id"]


async def _price(client: GraphQLClient, plan: str) -> dict:
    return (await client.data(PRICE_OF, {"id": plan}))["node"]["price"]


async def test_fixed_margin_applies_only_to_plans_in_its_currency(catalog) -> None:
    """A 30.00 USD plan with a 5.00 KWD margin was sold at 80.00 USD, and a bulk 5.00 USD margin made a
    1,000 JPY plan 1,500 JPY: a fixed margin was bare minor units added to any currency."""
    agency, platform = catalog["agency"], catalog["platform"]
    dollars = await _plan_in(platform, "Dollars", "30.00", "USD")
    yen = await _plan_in(platform, "Yen", "1000", "JPY")
    dinars = await _plan_in(platform, "Dinars", "10.000", "KWD")

    kwd_on_usd = await agency.data(SET_FIXED, {"value": "5.00", "currency": "KWD", "plan": dollars})
    assert kwd_on_usd["setPartnerMargin"] == {
        "ok": False,
        "margin": None,
        "errors": [{"code": "CURRENCY_MISMATCH", "field": "currency"}],
    }
    assert await _price(agency, dollars) == {"amount": "30.00", "currency": "USD"}
    # On a plan the margin is in the plan's currency, named or not.
    on_plan = await agency.data(SET_FIXED, {"value": "5.00", "plan": dollars})
    assert on_plan["setPartnerMargin"]["margin"] == {"value": "5.00", "currency": "USD"}
    assert await _price(agency, dollars) == {"amount": "35.00", "currency": "USD"}

    # In bulk there is one fixed margin per currency, and it must be named.
    unnamed = await agency.data(SET_FIXED, {"value": "5.00"})
    assert unnamed["setPartnerMargin"]["errors"] == [{"code": "INVALID_INPUT", "field": "currency"}]
    await agency.data(SET_FIXED, {"value": "5.00", "currency": "USD"})
    assert await _price(agency, yen) == {"amount": "1000", "currency": "JPY"}  # a USD margin is not 500 yen
    assert await _price(agency, dinars) == {"amount": "10.000", "currency": "KWD"}

    # Amounts are read in the margin's currency: JPY has no decimals, KWD three.
    fractional_yen = await agency.data(SET_FIXED, {"value": "5.5", "currency": "JPY"})
    assert fractional_yen["setPartnerMargin"]["errors"] == [{"code": "INVALID_AMOUNT", "field": "value"}]
    await agency.data(SET_FIXED, {"value": "500", "currency": "JPY"})
    await agency.data(SET_FIXED, {"value": "0.125", "currency": "KWD"})
    assert await _price(agency, yen) == {"amount": "1500", "currency": "JPY"}
    assert await _price(agency, dinars) == {"amount": "10.125", "currency": "KWD"}
    assert await _price(agency, dollars) == {"amount": "35.00", "currency": "USD"}  # the plan's own still wins
    bulk = [m for m in (await agency.data(MARGINS))["viewer"]["partner"]["margins"] if m["planId"] is None]
    assert [(m["value"], m["currency"]) for m in bulk] == [("500", "JPY"), ("0.125", "KWD"), ("5.00", "USD")]

    # Removing the JPY one leaves the other currencies' as they were.
    await agency.data(REMOVE_MARGIN, {"input": {"currency": "JPY"}})
    assert await _price(agency, yen) == {"amount": "1000", "currency": "JPY"}
    assert await _price(agency, dinars) == {"amount": "10.125", "currency": "KWD"}


async def test_fixed_margin_on_a_family_is_in_its_plans_currency(catalog) -> None:
    """A family of BRL plans takes a fixed BRL margin; a family that also has USD plans refuses one (a
    percentage fits every currency), and a fixed margin never reaches a plan in another currency."""
    agency, platform, family, plan = catalog["agency"], catalog["platform"], catalog["family"], catalog["plan"]
    usd = await agency.data(SET_FIXED, {"value": "5.00", "currency": "USD", "family": family})
    assert usd["setPartnerMargin"]["errors"] == [{"code": "CURRENCY_MISMATCH", "field": "currency"}]
    brl = await agency.data(SET_FIXED, {"value": "5.00", "family": family})
    assert brl["setPartnerMargin"]["margin"] == {"value": "5.00", "currency": "BRL"}
    assert await _price(agency, plan) == {"amount": "105.00", "currency": "BRL"}

    dollars = await _plan_in(platform, "Dollars", "30.00", "USD", family)  # the platform adds a USD plan later
    assert await _price(agency, dollars) == {"amount": "30.00", "currency": "USD"}
    mixed = await agency.data(SET_FIXED, {"value": "6.00", "family": family})
    assert mixed["setPartnerMargin"]["errors"] == [{"code": "INVALID_INPUT", "field": "currency"}]
    assert await _price(agency, plan) == {"amount": "105.00", "currency": "BRL"}


async def test_fixed_margins_stored_before_their_currency_counted_get_one_and_stop_crossing_currencies(caplog) -> None:
    """Migration 0010, on margins as they were stored before: a fixed margin on a plan takes the plan's
    currency and keeps what its clients were charged; one on a one-currency family takes that currency;
    a bulk one without a currency becomes the bulk USD margin (the input's old default) and no longer
    reaches plans in other currencies. Each change is logged."""
    partner = await a_partner()
    family = await plans.create_plan_family(PLATFORM, name="Chatbot")
    monthly = BillingInterval.MONTHLY
    dollars = await plans.create_plan(PLATFORM, name="Dollars", interval=monthly, price=Money(3000, "USD"), limits={})
    yen = await plans.create_plan(PLATFORM, name="Yen", interval=monthly, price=Money(1000, "JPY"), limits={})
    brl = await plans.create_plan(
        PLATFORM, name="Reais", interval=monthly, price=Money(10000, "BRL"), limits={}, family_id=family.id
    )
    legacy = (
        "INSERT INTO partner_margin (created_at, partner_id, plan_id, family_id, scope, kind, fixed_amount, currency)"
        " VALUES ($1, $2, $3, $4, $5, 'FIXED', $6, $7)"
    )
    await sql.execute(legacy, clock.now(), partner.id, dollars.id, None, f"PLAN:{dollars.id}", 5000, "KWD")
    await sql.execute(legacy, clock.now(), partner.id, None, family.id, f"FAMILY:{family.id}", 700, None)
    await sql.execute(legacy, clock.now(), partner.id, None, None, "BULK", 500, None)

    migration = importlib.import_module("models.migrations.0010_fixed_margin_currency")
    with caplog.at_level(logging.WARNING, logger="whitebill.migrations"):
        done = await migration.settle_fixed_margin_currencies(Tortoise.get_connection("default"))

    stored = {m.scope: (m.fixed_amount, m.currency) for m in await PartnerMargin.filter(partner_id=partner.id)}
    assert stored == {
        f"PLAN:{dollars.id}": (5000, "USD"),  # 80.00 USD before, 80.00 USD still: what its clients were charged
        f"FAMILY:{family.id}": (700, "BRL"),
        "BULK:USD": (500, "USD"),
    }
    assert (await plans.price_for(partner.id, dollars)) == Money(8000, "USD")
    assert (await plans.price_for(partner.id, brl)) == Money(10700, "BRL")
    assert (await plans.price_for(partner.id, yen)) == Money(1000, "JPY")  # was 1,500 JPY
    assert len(done) == 3 and all(line in caplog.text for line in done)
    assert "currency none -> USD, scope BULK:USD" in caplog.text
    assert await migration.settle_fixed_margin_currencies(Tortoise.get_connection("default")) == []  # once is all
