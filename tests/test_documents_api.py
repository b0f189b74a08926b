"""Documents through the API: a partner sets its taxes, numbering and coupons, careless or hostile input
comes back as typed errors naming the field, a client checks out with a code, and each caller reads only
the documents it issued or was issued."""

from __future__ import annotations

import pytest

from billing.catalog import plans
from billing.core.money import Money
from billing.sales import purchases
from billing.tenants import api_keys
from models.enums import BillingInterval
from schema.ids import from_global_id, to_global_id
from tests.factories import a_client_login, a_partner, a_workspace, partner_viewer
from tests.graphql import GraphQLClient

pytestmark = pytest.mark.usefixtures("database")

TAX = """mutation($name: String!, $pct: String!, $incl: Boolean!) { createTaxRate(input: {name: $name,
  percentage: $pct, inclusive: $incl}) { taxRate { id name percentage inclusive active } errors { code field } } }"""
SERIES = """mutation($kind: DocumentKind!, $prefix: String!, $digits: Int!) { setDocumentSeries(input: {kind: $kind,
  prefix: $prefix, digits: $digits}) { series { kind prefix digits reset nextNumber } errors { code field } } }"""
COUPON = """mutation($input: CreateCouponInput!) { createCoupon(input: $input) {
  coupon { id code kind percentage amount { amount currency } duration periods planIds redeemed active }
  errors { code field } } }"""
CHECKOUT = """mutation($ws: ID!, $plan: ID!, $codes: [String!]!, $key: String!) { checkout(input: {workspaceId: $ws,
  item: {planId: $plan}, method: MANUAL, idempotencyKey: $key, couponCodes: $codes}) {
  payment { id amount { amount } } errors { code field } } }"""
DOCUMENTS = "{ documents(first: 20) { nodes { kind number total { amount } buyerId } } }"
LOGIN = """mutation($email: String!, $password: String!, $brand: String!) { login(input: {email: $email,
  password: $password, brand: $brand}) { token errors { code } } }"""


async def test_taxes_numbering_and_coupons_through_the_api_with_typed_errors(server) -> None:
    partner = await a_partner("Sol")
    other = await a_partner("Other")
    plan = await plans.create_plan(
        partner_viewer(partner), name="Pro", interval=BillingInterval.MONTHLY, price=Money(10000, "BRL"), limits={}
    )
    foreign_plan = await plans.create_plan(
        partner_viewer(other), name="Theirs", interval=BillingInterval.MONTHLY, price=Money(100, "BRL"), limits={}
    )
    agency = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)

    made = (await agency.data(TAX, {"name": "ISS", "pct": "5", "incl": True}))["createTaxRate"]
    assert made["taxRate"] | {"id": None} == {
        "id": None,
        "name": "ISS",
        "percentage": "5",
        "inclusive": True,
        "active": True,
    }
    refused_rates = [
        ("ISS", "2", "name"),  # the name is taken
        ("PIS", "0", "percentage"),
        ("PIS", "101", "percentage"),
        ("PIS", "1.23456", "percentage"),
        ("PIS", " 2", "percentage"),
        ("PIS", "NaN", "percentage"),
        (" ", "2", "name"),
        ("P\x07S", "2", "name"),
    ]
    for name, pct, field in refused_rates:
        refused = (await agency.data(TAX, {"name": name, "pct": pct, "incl": False}))["createTaxRate"]
        assert refused["taxRate"] is None and [e["field"] for e in refused["errors"]] == [field], (name, pct)

    series = (await agency.data(SERIES, {"kind": "INVOICE", "prefix": "SOL-{year}-", "digits": 5}))["setDocumentSeries"]
    assert series["series"] == {
        "kind": "INVOICE",
        "prefix": "SOL-{year}-",
        "digits": 5,
        "reset": "NEVER",
        "nextNumber": 1,
    }
    for prefix, digits, field in ((" SOL-", 5, "prefix"), ("SOL-{month}-", 5, "prefix"), ("SOL-", 0, "digits"),
                                  ("SOL-", 13, "digits"), ("x" * 41, 5, "prefix")):  # fmt: skip
        refused = await agency.data(SERIES, {"kind": "INVOICE", "prefix": prefix, "digits": digits})
        assert [e["field"] for e in refused["setDocumentSeries"]["errors"]] == [field], prefix

    plan_id = to_global_id("Plan", plan.id)
    coupon = {"code": "bem-vindo", "name": "Welcome", "kind": "PERCENTAGE", "duration": "REPEATING", "periods": 3,
              "percentage": "10", "planIds": [plan_id]}  # fmt: skip
    created = (await agency.data(COUPON, {"input": coupon}))["createCoupon"]
    assert created["errors"] == [] and created["coupon"]["code"] == "BEM-VINDO"
    assert (created["coupon"]["percentage"], created["coupon"]["planIds"]) == ("10", [plan_id])
    refusals = [
        ({"code": "BEM-VINDO"}, "ALREADY_EXISTS", "code"),  # any case: the same code
        ({"code": " PAD"}, "INVALID_INPUT", "code"),
        ({"code": "ab"}, "INVALID_INPUT", "code"),
        ({"duration": "ONCE"}, "INVALID_INPUT", "periods"),  # a period count without REPEATING
        ({"periods": 0}, "INVALID_INPUT", "periods"),
        ({"kind": "FIXED"}, "INVALID_INPUT", "amount"),  # a percentage on a fixed coupon
        ({"kind": "FIXED", "percentage": None, "amount": "5.00"}, "INVALID_INPUT", "amount"),  # no currency
        ({"kind": "FIXED", "percentage": None, "amount": "5.001", "currency": "BRL"}, "INVALID_AMOUNT", "amount"),
        ({"kind": "FIXED", "percentage": None, "amount": "5", "currency": "XXX"}, "INVALID_INPUT", "currency"),
        ({"planIds": [to_global_id("Plan", foreign_plan.id)]}, "NOT_FOUND", "planIds"),  # another tenant's plan
        ({"maxRedemptions": 0}, "INVALID_INPUT", "maxRedemptions"),
        ({"expiresAt": "2001-01-01T00:00:00+00:00"}, "INVALID_INPUT", "expiresAt"),
    ]
    for n, (change, code, field) in enumerate(refusals):
        attempt = {**coupon, "code": f"TRY{n}", **change}
        refused = (await agency.data(COUPON, {"input": attempt}))["createCoupon"]
        assert [(e["code"], e["field"]) for e in refused["errors"]] == [(code, field)], change

    # A client checks out with the code, and sees its invoice and receipt only; the partner sees its own.
    workspace = await a_workspace(partner, "Padaria")
    neighbour = await a_workspace(partner, "Vizinho")
    await a_client_login(partner, workspace, "dono@padaria.example", "a long client password")
    client_token = (
        await agency.data(
            LOGIN, {"email": "dono@padaria.example", "password": "a long client password", "brand": partner.slug}
        )
    )["login"]["token"]
    client = GraphQLClient(server.url, client_token)
    variables = {"ws": to_global_id("Workspace", workspace.id), "plan": plan_id, "codes": ["Bem-Vindo"], "key": "k1"}
    paid = (await client.data(CHECKOUT, variables))["checkout"]
    assert paid["errors"] == [] and paid["payment"]["amount"] == {"amount": "90.00"}
    payment_id = from_global_id(paid["payment"]["id"])[1]
    await purchases.record_payment(partner_viewer(partner), payment_id=payment_id, note="", idempotency_key="rec")
    theirs = {**variables, "ws": to_global_id("Workspace", neighbour.id), "key": "k2"}
    assert (await client.data(CHECKOUT, theirs))["checkout"]["errors"][0]["code"] == "NOT_FOUND"
    seen = (await client.data(DOCUMENTS))["documents"]["nodes"]
    assert sorted((d["kind"], d["total"]["amount"]) for d in seen) == [("INVOICE", "90.00"), ("RECEIPT", "90.00")]
    assert {d["buyerId"] for d in seen} == {to_global_id("Workspace", workspace.id)}
    assert len((await agency.data(DOCUMENTS))["documents"]["nodes"]) == 2
    stranger = GraphQLClient(server.url, (await api_keys.create_key(partner_id=other.id)).secret)
    assert (await stranger.data(DOCUMENTS))["documents"]["nodes"] == []
    listed = await client.execute("{ coupons(first: 5) { nodes { code } } }")  # a client is shown no codes
    assert listed["data"] is None or not (listed["data"].get("coupons") or {}).get("nodes")
