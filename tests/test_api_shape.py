"""One consistent API, checked on the schema itself (introspected in process), so a new field or
mutation that breaks a rule fails here before a client sees it:

- every mutation takes one ``input`` object (or nothing);
- ids are global ids: no argument, input field or output field carries a database id;
- a closed set of values is an enum, never a String whose description lists the values;
- a list that can grow is a cursor connection (the bounded lists are named below, each with why);
- every setting a mutation writes can be read back from a field named below.
"""

from __future__ import annotations

import re

import pytest
from graphql import (
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    is_object_type,
)

from whitebill.schema import schema

SCHEMA = schema._schema

# Lists of objects that cannot grow without bound, and why.
BOUNDED_LISTS = {
    "AddOn.limitDeltas": "one per limited metric",
    "Plan.limits": "one per limited metric",
    "Plan.includedUnits": "one per unit",
    "ChangePreview.limits": "one per limited metric",
    "ChangePreview.excesses": "one per limited metric",
    "Workspace.limits": "one per limited metric",
    "Workspace.usage": "one per limited metric",
    "Workspace.statusReasons": "one per reason that applies",
    "Workspace.addOns": "one per add-on of the catalog the workspace holds",
    "Workspace.wallets": "one per unit",
    "Partner.wallets": "one per unit",
    "Project.wallets": "one per unit",
    "AutoBilling.pools": "one per unit",
    "RenewalForecast.totals": "one per currency",
    "Workspace.savedPaymentMethods": "the current card of each gateway configuration (a new card replaces the old)",
    "Project.usageByMonth": "a report over the months asked for (since, until)",
    "Partner.margins": "one per plan, family or the bulk one",
    "RateCard.margins": "the bulk margin and one per country and category",
}

# Closed sets that must be enums, named by the issue that asked for them; the description rule below
# catches new ones.
MUST_BE_ENUMS = [
    "Viewer.kind",
    "Viewer.via",
    "Payment.purpose",
    "StatusReason.kind",
    "Subscription.paymentMode",
    "Partner.usageCreditPolicy",
]

# Each mutation that writes a setting, and the field that reads it back.
READ_BACK = {
    "setDunningPolicy": "Partner.dunningPolicy",
    "setPartnerMargin": "Partner.margins",
    "removePartnerMargin": "Partner.margins",
    "setCreditBilling": "Partner.creditBillingEnabled",
    "setUsageCreditPolicy": "Partner.usageCreditPolicy",
    "setRefundPolicy": "Partner.refundPlanPolicy",
    "setAutoTopUp": "Wallet.autoTopUp",
    "setLowBalanceThreshold": "Wallet.lowBalanceThreshold",
    "setWalletCreditLimit": "Wallet.creditLimit",
    "setRateMargin": "RateCard.margins",
    "setPlatformRates": "RateCard.cells",
    "setAutoBilling": "AutoBilling.enabled",
    "setAutoRenew": "Workspace.autoRenew",
    "setPlanStatus": "Plan.status",
    "setWorkspaceAddOn": "Workspace.addOns",
    "setPartnerUserPermissions": "PartnerUser.permissions",
    "updateBranding": "Partner.branding",
    "configureGateway": "Partner.gatewayConfigs",
}
WRITES_A_SETTING = re.compile(r"^(set|update|configure|remove)[A-Z]")
# "PLATFORM, PARTNER or WORKSPACE.", "REFUSE or ALLOW_TO_CREDIT_LIMIT": a String listing its values.
LISTED_VALUES = re.compile(r"\b[A-Z][A-Z_]{3,}(, [A-Z][A-Z_]{3,})* or [A-Z][A-Z_]{3,}\b")


def _unwrap(graphql_type):
    while isinstance(graphql_type, GraphQLNonNull | GraphQLList):
        graphql_type = graphql_type.of_type
    return graphql_type


def _list_of(graphql_type):
    while isinstance(graphql_type, GraphQLNonNull):
        graphql_type = graphql_type.of_type
    return _unwrap(graphql_type.of_type) if isinstance(graphql_type, GraphQLList) else None


def _object_types() -> dict[str, GraphQLObjectType]:
    return {n: t for n, t in SCHEMA.type_map.items() if is_object_type(t) and not n.startswith("__")}


def _field(path: str):
    type_name, field_name = path.split(".")
    graphql_type = SCHEMA.type_map.get(type_name)
    return graphql_type.fields.get(field_name) if graphql_type is not None else None


def test_every_mutation_takes_one_input_object() -> None:
    wrong = {
        name: sorted(field.args)
        for name, field in SCHEMA.mutation_type.fields.items()
        if set(field.args) - {"input"}
        or ("input" in field.args and not isinstance(_unwrap(field.args["input"].type), GraphQLInputObjectType))
    }
    assert wrong == {}


def _database_ids() -> list[str]:
    found = []
    for type_name, graphql_type in SCHEMA.type_map.items():
        if type_name.startswith("__") or not hasattr(graphql_type, "fields"):
            continue
        for field_name, field in graphql_type.fields.items():
            named = [(f"{type_name}.{field_name}", field.type)]
            named += [(f"{type_name}.{field_name}({a})", arg.type) for a, arg in getattr(field, "args", {}).items()]
            for path, graphql_type_of in named:
                name = re.split(r"[.(]", path.rstrip(")"))[-1]
                leaf = _unwrap(graphql_type_of)
                if re.search(r"db_?id", name, re.IGNORECASE) or (
                    re.search(r"Ids?$", name) and isinstance(leaf, GraphQLScalarType) and leaf.name == "Int"
                ):
                    found.append(path)
    return found


def test_no_database_id_is_exposed() -> None:
    assert _database_ids() == []


def test_closed_sets_are_enums() -> None:
    strings = []
    for path in MUST_BE_ENUMS:
        field = _field(path)
        assert field is not None, f"{path} is gone: update this list"
        if isinstance(_unwrap(field.type), GraphQLScalarType):
            strings.append(path)
    for type_name, graphql_type in SCHEMA.type_map.items():
        if type_name.startswith("__") or not hasattr(graphql_type, "fields"):
            continue
        for field_name, field in graphql_type.fields.items():
            leaf = _unwrap(field.type)
            if isinstance(leaf, GraphQLScalarType) and leaf.name == "String":
                if LISTED_VALUES.search(field.description or ""):
                    strings.append(f"{type_name}.{field_name}")
    assert sorted(set(strings)) == []


def test_lists_that_can_grow_are_connections() -> None:
    plain = []
    for type_name, graphql_type in _object_types().items():
        if type_name.endswith(("Connection", "Edge", "Payload")):
            continue
        for field_name, field in graphql_type.fields.items():
            item = _list_of(field.type)
            if item is not None and is_object_type(item) and f"{type_name}.{field_name}" not in BOUNDED_LISTS:
                plain.append(f"{type_name}.{field_name}")
    assert sorted(plain) == []


def test_the_bounded_lists_named_here_exist() -> None:
    assert [path for path in BOUNDED_LISTS if _field(path) is None] == []


def test_every_setting_can_be_read_back() -> None:
    writes = sorted(name for name in SCHEMA.mutation_type.fields if WRITES_A_SETTING.match(name))
    assert [name for name in writes if name not in READ_BACK] == []
    assert [name for name in READ_BACK if name not in SCHEMA.mutation_type.fields] == []
    assert [path for path in READ_BACK.values() if _field(path) is None] == []


@pytest.mark.parametrize(
    ("broken", "rule"),
    [
        ("type Mutation { setThing(value: Int!): Int }", test_every_mutation_takes_one_input_object),
    ],
)
def test_the_rules_catch_what_they_name(broken: str, rule) -> None:
    """Each rule fails on a schema that breaks it (here: a bare argument on a mutation)."""
    from graphql import build_schema

    global SCHEMA
    kept = SCHEMA
    SCHEMA = build_schema(broken + " type Query { ok: Int }")
    try:
        with pytest.raises(AssertionError):
            rule()
    finally:
        SCHEMA = kept
