"""A typed error's ``field`` is the path inside ``input`` as the client sent it: ``priceAmount`` (not the
service's ``price``), ``value`` (not ``margin``), ``item.planId`` inside a checkout's item, ``packageId``
on a top-up. Every test in the suite also fails when a mutation answers an error about a field its input
does not have (tests/conftest.py), and a mutation that declares a rename to a missing field does not build."""

from __future__ import annotations

import pytest
import strawberry
from strawberry.types import Info

from billing.core.errors import BillingError, ErrorCode
from billing.tenants import api_keys
from schema.errors import UserError
from schema.ids import to_global_id
from schema.mutations import input_has_path, mutation
from tests.factories import a_partner, a_workspace
from tests.graphql import GraphQLClient
from tests.shop import CHECKOUT
from tests.test_wallet_top_ups import points_shop

pytestmark = pytest.mark.usefixtures("database")

CREATE_PLAN = """mutation($amount: String!, $currency: String!) {
  createPlan(input: {name: "Pro", interval: MONTHLY, priceAmount: $amount, priceCurrency: $currency}) {
    plan { id } errors { code field } } }"""
CREATE_ADD_ON = """mutation($amount: String!, $currency: String!) {
  createAddOn(input: {name: "Seats", limitDeltas: [{name: "members", value: 5}], priceAmount: $amount,
                      priceCurrency: $currency}) { addOn { id } errors { code field } } }"""
CREATE_PACKAGE = """mutation($amount: String!) { createCreditPackage(input: {name: "Points", unit: "POINTS",
  quantity: 100, priceAmount: $amount, priceCurrency: "BRL"}) { creditPackage { id } errors { code field } } }"""
SET_MARGIN = """mutation($value: String!) { setPartnerMargin(input: {kind: PERCENTAGE, value: $value}) {
  ok errors { code field } } }"""
TOP_UP = """mutation($w: ID!, $p: ID!) { topUpWallet(input: {walletId: $w, packageId: $p, idempotencyKey: "k"}) {
  payment { id } errors { code field } } }"""


def _errors(result: dict, name: str) -> list[tuple[str, str]]:
    return [(e["code"], e["field"]) for e in result[name]["errors"]]


async def test_a_price_refused_names_price_amount_or_price_currency(server) -> None:
    partner = await a_partner()
    agency = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    free_package = await agency.data(CREATE_PACKAGE, {"amount": "0"})
    assert _errors(free_package, "createCreditPackage") == [("INVALID_AMOUNT", "priceAmount")]
    bad_currency = await agency.data(CREATE_PLAN, {"amount": "10.00", "currency": "ZZZ"})
    assert [field for _, field in _errors(bad_currency, "createPlan")] == ["priceCurrency"]
    negative = await agency.data(CREATE_PLAN, {"amount": "-10.00", "currency": "BRL"})
    assert [field for _, field in _errors(negative, "createPlan")] == ["priceAmount"]


async def test_a_margin_out_of_range_names_value(server) -> None:
    partner = await a_partner()
    agency = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    refused = await agency.data(SET_MARGIN, {"value": "5000"})
    assert refused["setPartnerMargin"] == {"ok": False, "errors": [{"code": "INVALID_AMOUNT", "field": "value"}]}


async def test_checkout_errors_name_the_path_inside_item(server) -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    agency = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    base = {"ws": to_global_id("Workspace", workspace.id), "method": "MANUAL", "key": "k1"}
    missing_plan = await agency.data(CHECKOUT, {**base, "item": {"planId": to_global_id("Plan", 999999)}})
    assert _errors(missing_plan, "checkout") == [("NOT_FOUND", "item.planId")]
    wrong_kind = await agency.data(CHECKOUT, {**base, "item": {"addOnId": to_global_id("Plan", 1)}})
    assert [field for _, field in _errors(wrong_kind, "checkout")] == ["item.addOnId"]
    none_chosen = await agency.data(CHECKOUT, {**base, "item": {}})
    assert _errors(none_chosen, "checkout") == [("INVALID_INPUT", "item")]
    add_on = await agency.data(CREATE_ADD_ON, {"amount": "5.00", "currency": "BRL"})
    add_on_id = add_on["createAddOn"]["addOn"]["id"]
    too_many = await agency.data(CHECKOUT, {**base, "item": {"addOnId": add_on_id, "quantity": 0}})
    assert _errors(too_many, "checkout") == [("INVALID_INPUT", "item.quantity")]


async def test_a_top_up_of_another_partners_package_names_package_id(server) -> None:
    partner, _, wallet, _ = await points_shop()
    _, _, _, foreign = await points_shop()
    agency = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    variables = {"w": to_global_id("Wallet", wallet.id), "p": to_global_id("CreditPackage", foreign.id)}
    assert _errors(await agency.data(TOP_UP, variables), "topUpWallet") == [("NOT_FOUND", "packageId")]


@strawberry.input
class _Item:
    plan_id: strawberry.ID | None = None


@strawberry.input
class _Input:
    item: _Item
    cells: list[_Item]
    price_amount: str = ""


@strawberry.type
class _Payload:
    errors: list[UserError]


def test_input_paths_are_checked_against_the_input_type() -> None:
    for path in ("priceAmount", "item", "item.planId", "cells[3].planId"):
        assert input_has_path(_Input, path), path
    for path in ("price", "item.price", "cells.planId", "item[0].planId", "priceAmount.x", "cells[1]x"):
        assert not input_has_path(_Input, path), path


def test_a_rename_to_a_field_the_input_lacks_does_not_build() -> None:
    def declare(fields: dict[str, str]) -> None:
        @strawberry.type
        class Mutation:
            @mutation(fields=fields)
            async def change(self, info: Info, input: _Input) -> _Payload:
                raise BillingError(ErrorCode.INVALID_INPUT, "no", field="price")

        @strawberry.type
        class Query:
            ok: bool = True

        strawberry.Schema(query=Query, mutation=Mutation)

    declare({"price": "priceAmount"})
    with pytest.raises(TypeError, match="not a field of its input"):
        declare({"price": "amount"})


@pytest.mark.parametrize(
    "variables",
    [{"first": "one"}, {"first": 2**40}, {"first": 1.5}, {}, {"first": None}],
)
async def test_a_variable_the_schema_cannot_take_is_invalid_input_not_an_internal_error(server, variables) -> None:
    """Checked before anything runs: its message says which variable and why, with INVALID_INPUT (it was
    answered "Unexpected error." with INTERNAL_ERROR, and logged as a fault of the server)."""
    key = (await api_keys.create_key(partner_id=(await a_partner("Variables")).id)).secret
    body = await GraphQLClient(server.url, key).execute(
        "query($first: Int!) { workspaces(first: $first) { nodes { id } } }", variables
    )
    assert body.get("data") is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "INVALID_INPUT", error
    assert "$first" in error["message"]
