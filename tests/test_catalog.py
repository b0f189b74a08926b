"""The catalog's settings read back: a partner sets a margin on a plan, on a family and in bulk, reads
them on Partner.margins exactly as it gave them, removes them one by one, and its clients' prices
fall back to the next margin that applies, then to the platform price."""

from __future__ import annotations

import pytest

from billing.catalog import rate_cards
from billing.tenants import api_keys, identity
from models.enums import MarginKind
from models.operations import AuditLog
from schema.ids import to_global_id
from tests.factories import a_partner, a_workspace, partner_viewer
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
    await agency.data(SET_MARGIN, {"kind": "FIXED", "value": "7.5", "currency": "USD"})
    bulk = {"kind": "FIXED", "value": "7.50", "currency": "USD", "planId": None, "familyId": None}
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

    await agency.data(REMOVE_MARGIN, {"input": {}})
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
