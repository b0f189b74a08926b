"""Flow A (credit billing off): the partner assigns plans and add-ons by hand; changes below usage
are refused with every excess, or forced and the workspace pauses; margins give exact partner prices."""

from __future__ import annotations

import pytest

from billing.tenants import api_keys
from schema.ids import to_global_id
from tests.factories import a_partner, a_workspace
from tests.graphql import GraphQLClient

pytestmark = pytest.mark.usefixtures("database")

CREATE_PLAN = """mutation($name: String!, $amount: String!, $currency: String!, $limits: [LimitInput!]!, $family: ID) {
  createPlan(input: {name: $name, interval: MONTHLY, priceAmount: $amount, priceCurrency: $currency,
                     limits: $limits, familyId: $family}) { plan { id } errors { code message } } }"""
ASSIGN = """mutation($ws: ID!, $plan: ID!, $key: String!, $force: Boolean! = false) {
  assignPlan(input: {workspaceId: $ws, planId: $plan, note: "paid by bank transfer", idempotencyKey: $key,
                     force: $force}) {
    workspace { status } excesses { limit usage max } errors { code message } } }"""
SET_ADD_ON = """mutation($ws: ID!, $addOn: ID!, $quantity: Int!, $force: Boolean! = false) {
  setWorkspaceAddOn(input: {workspaceId: $ws, addOnId: $addOn, quantity: $quantity, force: $force}) {
    workspace { status statusReasons { kind limit usage max } } limits { name value }
    excesses { limit usage max } errors { code message } } }"""
ADD_ONS = """query($ws: ID!) { node(id: $ws) { ... on Workspace {
  addOns { nodes { addOn { id name } quantity active pointsPerPeriod { amount } paidThrough } } } } }"""
USAGE = """mutation($ws: ID!, $value: Int!) { reportUsage(input: {workspaceId: $ws, metric: "members", value: $value}) {
  workspace { status } errors { code } } }"""


@pytest.fixture
async def agency(server) -> tuple[GraphQLClient, GraphQLClient, str]:
    """The partner's client, the platform's product (it reports usage), and a workspace."""
    partner = await a_partner()
    workspace = await a_workspace(partner)
    partner_key = (await api_keys.create_key(partner_id=partner.id)).secret
    product_key = (await api_keys.create_key(partner_id=None, name="product")).secret
    return (
        GraphQLClient(server.url, partner_key),
        GraphQLClient(server.url, product_key),
        to_global_id("Workspace", workspace.id),
    )


async def test_flow_a_members_above_the_limit_refuse_then_pause_then_resume(agency) -> None:
    partner, product, workspace = agency
    plan = (
        await partner.data(
            CREATE_PLAN,
            {"name": "Team 5", "amount": "99.00", "currency": "BRL", "limits": [{"name": "members", "value": 5}]},
        )
    )["createPlan"]["plan"]
    add_on = (
        await partner.data(
            'mutation { createAddOn(input: {name: "3 more members", limitDeltas: [{name: "members", value: 3}],'
            ' priceAmount: "15.00", priceCurrency: "BRL"}) { addOn { id } errors { code } } }'
        )
    )["createAddOn"]["addOn"]
    assigned = await partner.data(ASSIGN, {"ws": workspace, "plan": plan["id"], "key": "plan-1"})
    assert assigned["assignPlan"]["workspace"] == {"status": "ACTIVE"}  # no longer RESTRICTED
    unknown = (
        "mutation($ws: ID!, $addOn: ID!) { setWorkspaceAddOn(input: {workspaceId: $ws, addOnId: $addOn,"
        " quantity: 1}) { errors { code field } } }"
    )
    refused_add_on = await partner.data(unknown, {"ws": workspace, "addOn": to_global_id("AddOn", 10**9)})
    assert refused_add_on["setWorkspaceAddOn"]["errors"] == [{"code": "NOT_FOUND", "field": "addOnId"}]
    added = await partner.data(SET_ADD_ON, {"ws": workspace, "addOn": add_on["id"], "quantity": 1})
    assert {"name": "members", "value": 8} in added["setWorkspaceAddOn"]["limits"]
    held = {"id": add_on["id"], "name": "3 more members"}
    assert (await partner.data(ADD_ONS, {"ws": workspace}))["node"]["addOns"]["nodes"] == [
        {"addOn": held, "quantity": 1, "active": True, "pointsPerPeriod": None, "paidThrough": None}
    ]
    assert (await product.data(USAGE, {"ws": workspace, "value": 7}))["reportUsage"]["workspace"]["status"] == "ACTIVE"

    preview = await partner.data(
        "query($ws: ID!, $addOn: ID!) { previewChange(workspaceId: $ws, addOns: [{addOnId: $addOn, quantity: 0}]) {"
        " wouldPause excesses { limit usage max } price { amount currency } } }",
        {"ws": workspace, "addOn": add_on["id"]},
    )
    assert preview["previewChange"] == {
        "wouldPause": True,
        "excesses": [{"limit": "members", "usage": 7, "max": 5}],
        "price": {"amount": "99.00", "currency": "BRL"},
    }
    refused = (await partner.data(SET_ADD_ON, {"ws": workspace, "addOn": add_on["id"], "quantity": 0}))[
        "setWorkspaceAddOn"
    ]
    assert refused["errors"][0]["code"] == "LIMIT_BELOW_USAGE" and "members 7 > 5" in refused["errors"][0]["message"]
    assert refused["excesses"] == [{"limit": "members", "usage": 7, "max": 5}]

    forced = (await partner.data(SET_ADD_ON, {"ws": workspace, "addOn": add_on["id"], "quantity": 0, "force": True}))[
        "setWorkspaceAddOn"
    ]
    assert forced["workspace"] == {
        "status": "PAUSED",
        "statusReasons": [{"kind": "LIMIT_EXCEEDED", "limit": "members", "usage": 7, "max": 5}],
    }
    assert (await partner.data(ADD_ONS, {"ws": workspace}))["node"]["addOns"]["nodes"] == [
        {"addOn": held, "quantity": 0, "active": False, "pointsPerPeriod": None, "paidThrough": None}
    ]
    resumed = await product.data(USAGE, {"ws": workspace, "value": 5})
    assert resumed["reportUsage"]["workspace"]["status"] == "ACTIVE"


async def test_a_partner_cannot_report_its_own_usage(agency) -> None:
    partner, _, workspace = agency
    refused = await partner.data(USAGE, {"ws": workspace, "value": 1})
    assert refused["reportUsage"]["errors"] == [{"code": "FORBIDDEN"}]


async def test_margins_give_exact_partner_prices(server, agency) -> None:
    partner, _, _ = agency
    platform = GraphQLClient(server.url, (await api_keys.create_key(partner_id=None)).secret)
    family = (await platform.data('mutation { createPlanFamily(input: {name: "Chatbot"}) { family { id } } }'))[
        "createPlanFamily"
    ]["family"]
    plans = {}
    for name, amount in (("Basic", "49.90"), ("Pro", "99.00")):
        made = await platform.data(
            CREATE_PLAN, {"name": name, "amount": amount, "currency": "BRL", "limits": [], "family": family["id"]}
        )
        plans[name] = made["createPlan"]["plan"]["id"]
    margin = (
        "mutation($kind: MarginKind!, $value: String!, $plan: ID, $family: ID) { setPartnerMargin(input:"
        ' {kind: $kind, value: $value, planId: $plan, familyId: $family, currency: "BRL"}) { ok errors { code } } }'
    )
    price = "query($id: ID!) { node(id: $id) { ... on Plan { price { amount currency } platformPrice { amount } } } }"

    await partner.data(margin, {"kind": "PERCENTAGE", "value": "20", "plan": plans["Basic"]})
    basic = (await partner.data(price, {"id": plans["Basic"]}))["node"]
    assert basic == {"price": {"amount": "59.88", "currency": "BRL"}, "platformPrice": {"amount": "49.90"}}

    await partner.data(margin, {"kind": "PERCENTAGE", "value": "12.5", "family": family["id"]})
    assert (await partner.data(price, {"id": plans["Pro"]}))["node"]["price"][
        "amount"
    ] == "111.38"  # 111.375, half-even
    assert (await partner.data(price, {"id": plans["Basic"]}))["node"]["price"]["amount"] == "59.88"  # the plan's wins

    await partner.data(margin, {"kind": "FIXED", "value": "5.00", "family": family["id"]})
    assert (await partner.data(price, {"id": plans["Pro"]}))["node"]["price"]["amount"] == "104.00"
    # The platform itself sees platform prices.
    assert (await platform.data(price, {"id": plans["Pro"]}))["node"]["price"]["amount"] == "99.00"


DUNNING = (
    "{ viewer { partner { dunningPolicy { retryDays restrictAfter suspendAfter fallbackAfter fallbackPlanId } } } }"
)


async def test_the_dunning_policy_set_is_the_one_read_back(agency) -> None:
    partner, _, _ = agency
    assert (await partner.data(DUNNING))["viewer"]["partner"]["dunningPolicy"] == {
        "retryDays": [1, 3, 9, 15, 21],
        "restrictAfter": 3,
        "suspendAfter": 5,
        "fallbackAfter": None,
        "fallbackPlanId": None,
    }
    free = (await partner.data(CREATE_PLAN, {"name": "Free", "amount": "0", "currency": "BRL", "limits": []}))[
        "createPlan"
    ]["plan"]["id"]
    # UChat: 3 daily retries, then the free plan.
    uchat = (
        "mutation($free: ID!) { setDunningPolicy(input: {retryDays: [1, 2, 3], restrictAfter: 0, suspendAfter: 0,"
        " fallbackAfter: 3, fallbackPlanId: $free}) { policy { retryDays fallbackAfter } errors { code } } }"
    )
    assert (await partner.data(uchat, {"free": free}))["setDunningPolicy"] == {
        "policy": {"retryDays": [1, 2, 3], "fallbackAfter": 3},
        "errors": [],
    }
    unknown = (
        "mutation($plan: ID!) { setDunningPolicy(input: {retryDays: [1], fallbackAfter: 2, fallbackPlanId: $plan})"
        " { errors { code field } } }"
    )
    assert (await partner.data(unknown, {"plan": to_global_id("Plan", 10**9)}))["setDunningPolicy"]["errors"] == [
        {"code": "NOT_FOUND", "field": "fallbackPlanId"}
    ]
    assert (await partner.data(DUNNING))["viewer"]["partner"]["dunningPolicy"] == {
        "retryDays": [1, 2, 3],
        "restrictAfter": 0,
        "suspendAfter": 0,
        "fallbackAfter": 3,
        "fallbackPlanId": free,
    }


async def test_dunning_thresholds_beyond_the_retry_days_are_refused(agency) -> None:
    """Only retry days count failures: with retry days 1, 2, 3 a fallback after 4 never came, and the
    workspace sat PAST_DUE on its paid plan for ever, billed nothing and never retried. Each threshold
    must be reachable within the retry days (or 0, off); the policy in force stays as it was."""
    partner, _, _ = agency
    free = (await partner.data(CREATE_PLAN, {"name": "Free", "amount": "0", "currency": "BRL", "limits": []}))[
        "createPlan"
    ]["plan"]["id"]
    policy = (
        "mutation($days: [Int!]!, $restrict: Int!, $suspend: Int!, $fallback: Int, $free: ID) {"
        " setDunningPolicy(input: {retryDays: $days, restrictAfter: $restrict, suspendAfter: $suspend,"
        " fallbackAfter: $fallback, fallbackPlanId: $free}) { policy { fallbackAfter } errors { code field } } }"
    )
    before = (await partner.data(DUNNING))["viewer"]["partner"]["dunningPolicy"]
    for days, restrict, suspend, fallback, field in (
        ([1, 2, 3], 0, 0, 4, "fallbackAfter"),
        ([1, 3], 3, 0, None, "restrictAfter"),
        ([1, 3, 9, 15], 3, 5, None, "suspendAfter"),
        ([], 1, 0, None, "restrictAfter"),
    ):
        refused = await partner.data(
            policy, {"days": days, "restrict": restrict, "suspend": suspend, "fallback": fallback, "free": free}
        )
        assert refused["setDunningPolicy"] == {"policy": None, "errors": [{"code": "INVALID_INPUT", "field": field}]}
    assert (await partner.data(DUNNING))["viewer"]["partner"]["dunningPolicy"] == before
    # At the edge each is reached on the last retry day.
    edge = await partner.data(policy, {"days": [1, 2, 3], "restrict": 2, "suspend": 3, "fallback": 3, "free": free})
    assert edge["setDunningPolicy"] == {"policy": {"fallbackAfter": 3}, "errors": []}
