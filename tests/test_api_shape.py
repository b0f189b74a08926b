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

from graphql import (
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    GraphQLSchema,
    build_schema,
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
    "Workspace.wallets": "one per unit",
    "Partner.wallets": "one per unit",
    "Project.wallets": "one per unit",
    "AutoBilling.pools": "one per unit",
    "Payment.packageLines": "one per package of the seller's catalogue it bought",
    "RateCell.tiers": "at most 20 volume tiers",
    "RenewalForecast.totals": "one per currency",
    "Workspace.savedPaymentMethods": "the current card of each gateway configuration (a new card replaces the old)",
    "Project.usageByMonth": "a report over the months asked for (since, until)",
    "Partner.margins": "one per plan, family or the bulk one",
    "RateCard.margins": "the bulk margin and one per country and category",
    "Document.lines": "at most 200 lines (invoices.MAX_LINES)",
    "Document.taxes": "one per tax rate the document applied",
    "DocumentLine.taxes": "one per tax rate the issuer applies (at most 20)",
    "DocumentLine.discounts": "one per coupon on the line (at most 5)",
    "Query.taxRates": "at most 20 per issuer (manage.MAX_RATES)",
    "Query.documentSeries": "one per kind of document",
    "PartnerStatement.lines": "one per ledger cause and direction (at most 22)",
    "PartnerStatement.clientMoney": "one per currency",
}

# String fields named like ids that are not database ids, and what they are.
NOT_DATABASE_IDS = {
    "AuditEntry.requestId": "the id of the request that acted, as logged",
    "CheckoutInput.taxId": "the payer's CPF or CNPJ",
    "ConsumeUnitsInput.eventId": "the product's own id for its report",
    "UsageEventInput.eventId": "the product's own id for its event",
    "UsageEventResult.eventId": "the product's own id, echoed",
    "WebhookDelivery.eventId": "the event's id as its receivers see it in every delivery's body (evt_...)",
    "SendTestWebhookPayload.eventId": "the test event's id as the receiver sees it (evt_...)",
    "IgnoredProviderEvent.providerEventId": "the provider's id of the event it sent (Asaas evt_..., Stripe evt_...)",
    "IgnoredProviderEvent.providerPaymentId": "the provider's id of the payment the event names (pay_..., pi_...)",
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
    "LedgerEntry.counterAccount",
]

# Each mutation that writes a setting, and the field that reads it back.
READ_BACK = {
    "setWebhookPayloadVersion": "WebhookEndpoint.payloadVersion",
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
    "setCreditPackageStatus": "CreditPackage.status",
    "updateCreditPackage": "CreditPackage.price",
    "setWorkspaceAddOn": "Workspace.addOns",
    "setPartnerUserPermissions": "PartnerUser.permissions",
    "updateBranding": "Partner.branding",
    "configureGateway": "Partner.gatewayConfigs",
    "setTaxRateActive": "TaxRate.active",
    "setDocumentSeries": "Query.documentSeries",
    "setCouponActive": "Coupon.active",
    "setCouponStacking": "Partner.couponsStack",
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


def _field(schema: GraphQLSchema, path: str):
    type_name, field_name = path.split(".")
    graphql_type = schema.type_map.get(type_name)
    return graphql_type.fields.get(field_name) if graphql_type is not None else None


def _fields(schema: GraphQLSchema):
    for type_name, graphql_type in schema.type_map.items():
        if not type_name.startswith("__") and hasattr(graphql_type, "fields"):
            for field_name, field in graphql_type.fields.items():
                yield type_name, field_name, field


def mutations_with_other_arguments(schema: GraphQLSchema) -> dict[str, list[str]]:
    mutations = schema.mutation_type.fields if schema.mutation_type else {}
    return {
        name: sorted(field.args)
        for name, field in mutations.items()
        if set(field.args) - {"input"}
        or ("input" in field.args and not isinstance(_unwrap(field.args["input"].type), GraphQLInputObjectType))
    }


def database_ids(schema: GraphQLSchema) -> list[str]:
    found = []
    for type_name, field_name, field in _fields(schema):
        named = [(field_name, f"{type_name}.{field_name}", field.type)]
        named += [(a, f"{type_name}.{field_name}({a})", arg.type) for a, arg in getattr(field, "args", {}).items()]
        for name, path, graphql_type in named:
            leaf = _unwrap(graphql_type)
            if re.search(r"db_?id", name, re.IGNORECASE) or (
                re.search(r"Ids?$", name)
                and isinstance(leaf, GraphQLScalarType)
                and leaf.name in ("Int", "String")
                and path not in NOT_DATABASE_IDS
            ):
                found.append(path)
    return found


def closed_sets_as_strings(schema: GraphQLSchema, named: list[str]) -> list[str]:
    strings = [path for path in named if isinstance(_unwrap(_field(schema, path).type), GraphQLScalarType)]
    for type_name, field_name, field in _fields(schema):
        leaf = _unwrap(field.type)
        if isinstance(leaf, GraphQLScalarType) and leaf.name == "String":
            if LISTED_VALUES.search(field.description or ""):
                strings.append(f"{type_name}.{field_name}")
    return sorted(set(strings))


def plain_lists(schema: GraphQLSchema) -> list[str]:
    plain = []
    for type_name, field_name, field in _fields(schema):
        if not is_object_type(schema.type_map[type_name]) or type_name.endswith(("Connection", "Edge", "Payload")):
            continue
        item = _list_of(field.type)
        if item is not None and is_object_type(item) and f"{type_name}.{field_name}" not in BOUNDED_LISTS:
            plain.append(f"{type_name}.{field_name}")
    return sorted(plain)


def settings_not_read_back(schema: GraphQLSchema) -> list[str]:
    mutations = schema.mutation_type.fields if schema.mutation_type else {}
    unnamed = [name for name in sorted(mutations) if WRITES_A_SETTING.match(name) and name not in READ_BACK]
    unreadable = [f"{m} -> {path}" for m, path in READ_BACK.items() if m in mutations and _field(schema, path) is None]
    return unnamed + unreadable


def test_every_mutation_takes_one_input_object() -> None:
    assert mutations_with_other_arguments(SCHEMA) == {}


def test_no_database_id_is_exposed() -> None:
    assert database_ids(SCHEMA) == []


def test_closed_sets_are_enums() -> None:
    assert [path for path in MUST_BE_ENUMS if _field(SCHEMA, path) is None] == []  # still there
    assert closed_sets_as_strings(SCHEMA, MUST_BE_ENUMS) == []


def test_lists_that_can_grow_are_connections() -> None:
    assert plain_lists(SCHEMA) == []


def test_the_lists_named_here_exist() -> None:
    assert [path for path in BOUNDED_LISTS if _field(SCHEMA, path) is None] == []
    assert [path for path in NOT_DATABASE_IDS if _field(SCHEMA, path) is None] == []
    assert [name for name in READ_BACK if name not in SCHEMA.mutation_type.fields] == []


def test_every_setting_can_be_read_back() -> None:
    assert settings_not_read_back(SCHEMA) == []


BROKEN = """
type Query { viewer: Viewer, workspaces(partnerDbId: Int, first: Int): [Workspace!]! }
type Viewer { kind: String, "PLATFORM, PARTNER or WORKSPACE." via: String }
type Workspace { id: ID!, payments: [Payment!]!, limits: [Limit!]!, dbId: Int, postingId: String }
type Payment { id: ID! }
type Limit { name: String }
type Mutation { setThing(value: Int!): Int, setDunningPolicy(input: In!): Int, createOk(input: In!): Int }
input In { value: Int }
"""


def test_each_rule_catches_what_it_names() -> None:
    broken = build_schema(BROKEN)
    assert mutations_with_other_arguments(broken) == {"setThing": ["value"]}
    assert database_ids(broken) == ["Query.workspaces(partnerDbId)", "Workspace.dbId", "Workspace.postingId"]
    assert closed_sets_as_strings(broken, ["Viewer.kind"]) == ["Viewer.kind", "Viewer.via"]
    assert plain_lists(broken) == ["Query.workspaces", "Workspace.payments"]
    assert settings_not_read_back(broken) == ["setThing", "setDunningPolicy -> Partner.dunningPolicy"]
