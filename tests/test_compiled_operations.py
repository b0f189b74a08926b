"""The compiled path answers what the general executor answers (PostgreSQL).

Over random tenants (a reseller chain with margins, platform and own plans, add-ons, wallets, deleted
and other partners' workspaces), random callers (the platform, each partner, a client) and random pages
(sizes in and out of bounds, cursors of any tenant's workspaces, broken cursors), every compiled
operation's JSON is the general executor's, compared with keys sorted; where the general executor
answers with an error, the compiled path hands the request over instead of answering. The operations
are the dashboard frontends register (bench/dashboard.graphql) and one written here, so the compiler
is shown to be generic rather than a dashboard endpoint."""

from __future__ import annotations

import json
import re
import secrets
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.accounts import wallets
from billing.catalog import plans
from billing.core import clock
from billing.core.ids import to_global_id
from billing.core.money import Money
from billing.core.tenancy import Viewer
from billing.subscriptions import entitlements, lifecycle
from billing.tenants import partners
from models.enums import (
    PARTNER_PERMISSIONS,
    BillingInterval,
    LedgerCause,
    MarginKind,
    PaymentMethodKind,
    PaymentPurpose,
    PaymentStatus,
)
from models.payments import Payment
from models.tenancy import Partner, Workspace
from models.wallets import LedgerEntry, Posting, Wallet
from schema.context import Context
from schema.ids import encode_cursor
from tests.factories import PLATFORM, partner_viewer
from whitebill.compiled.compiler import Fallback, NotCompiled, compile_operation
from whitebill.schema import MAX_TOKENS, VALIDATION_RULES, schema

DASHBOARD = open("bench/dashboard.graphql", encoding="utf-8").read()

WRITTEN = """
query Written($n: Int, $from: String) {
  kind: __typename
  page: workspaces(first: $n, after: $from) {
    __typename
    edges { cursor node { ...Card } }
    info: pageInfo { hasNextPage hasPreviousPage startCursor endCursor __typename }
    nodes { id autoRenew createdAt ownerEmail }
  }
  again: workspaces(first: 1) { nodes { name ... on Workspace { id } } }
}

fragment Card on Workspace {
  __typename
  id
  name
  status
  subscription {
    id status currentPeriodStart currentPeriodEnd trialEnd planId cancelAtPeriodEnd renewals failedRenewals
    nextRetryAt endedAt scheduledPlanId paymentMode
    price { amount currency }
    plan {
      id name interval status isPlatformPlan graceDays trialDays trialRequiresPaymentMethod familyId
      validityPeriods maxRenewals
      cost: price { currency amount __typename }
    }
  }
  limits { value name __typename }
  wallets {
    id ownerKind unit updatedAt
    balance { amount unit }
    creditLimit { amount }
    lowBalanceThreshold { amount unit }
  }
}
"""

WALLET = """
query WalletEntries($id: ID!, $n: Int, $from: String, $cause: LedgerCause, $since: DateTime) {
  node(id: $id) {
    __typename
    id
    ... on Wallet {
      unit
      balance { amount unit }
      entries(first: $n, after: $from, cause: $cause, since: $since) {
        edges {
          cursor
          node {
            id amount { amount unit } balanceAfter { amount unit } cause note actor causedBy counterAccount
            postingId createdAt __typename
          }
        }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      }
    }
  }
}
"""

PAYMENTS = """
query Payments($id: ID!, $n: Int, $from: String) {
  node(id: $id) {
    ...Paid
    ... on Node { id }
  }
}

fragment Paid on Workspace {
  name
  payments(first: $n, after: $from) {
    nodes {
      id amount { amount currency } status method provider providerReference purpose note createdAt
      refunded { amount currency } declineReason
    }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""

HISTORY = """
query History($n: Int, $from: String) {
  workspaces(first: 10) {
    nodes {
      id
      planHistory(first: $n, after: $from) {
        edges { cursor node { planId planName status startedAt endedAt note } }
        pageInfo { hasNextPage endCursor }
      }
      newest: payments(first: 1) { nodes { id status } }
    }
  }
  plans(first: $n) { nodes { id name price { amount currency } } pageInfo { hasNextPage } }
}
"""

PORTAL_SOURCES = sorted((Path(__file__).parents[1] / "web" / "portal" / "src").rglob("*.ts"))
# The portal's queries as it sends them: those that compile are compared below.
PORTAL = sorted(
    m.group(1) for f in PORTAL_SOURCES for m in re.finditer(r"`(query\b[^`]*)`", f.read_text(encoding="utf-8"))
)

NAMES = st.text(
    st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")), min_size=1, max_size=12
).filter(lambda name: name.strip() == name and name.strip() != "")
MARGIN = st.one_of(
    st.none(),
    st.tuples(st.just(MarginKind.PERCENTAGE), st.decimals(0, 300, places=2)),
    st.tuples(st.just(MarginKind.FIXED), st.integers(0, 10**6)),
)
WORKSPACE = st.fixed_dictionaries(
    {
        "name": NAMES,
        "plan": st.integers(0, 3),  # 0: none; else one of the plans on offer
        "add_ons": st.lists(st.tuples(st.integers(0, 1), st.integers(1, 3)), max_size=2),
        "points": st.one_of(st.none(), st.integers(1, 10**12)),
        "credits": st.one_of(st.none(), st.integers(1, 10**6)),
        "deleted": st.booleans(),
        "replan": st.booleans(),  # a second plan after the first: two history entries
        "debit": st.booleans(),
        "caused_by": st.sampled_from([None, ("Payment", "12"), ("", "5"), ("UsageEvent", ""), ("Subscription", "7")]),
        "payments": st.lists(
            st.fixed_dictionaries(
                {
                    "status": st.sampled_from(PaymentStatus),
                    "method": st.sampled_from(PaymentMethodKind),
                    "purpose": st.sampled_from(PaymentPurpose),
                    "currency": st.sampled_from(["BRL", "JPY", "USD"]),
                    "amount": st.integers(0, 10**12),
                    "refunded": st.sampled_from([0, 1, 10**6]),
                    "reference": st.one_of(st.none(), NAMES),
                    "decline": st.one_of(st.none(), NAMES),
                    "action": st.one_of(
                        st.none(),
                        st.dictionaries(
                            NAMES, st.one_of(NAMES, st.integers(-(10**15), 10**15), st.booleans()), max_size=3
                        ),
                    ),
                    "own": st.booleans(),  # the workspace's, or its partner's own
                }
            ),
            max_size=3,
        ),
    }
)
WORLD = st.fixed_dictionaries(
    {
        "prices": st.lists(st.integers(0, 10**7), min_size=2, max_size=2),
        "margins": st.lists(MARGIN, min_size=2, max_size=2),  # the master's, then its sub-partner's
        "limits": st.dictionaries(st.sampled_from(["members", "chatbots", "a", "Z", "_x"]), st.integers(0, 10**4)),
        "workspaces": st.lists(st.tuples(st.integers(0, 2), WORKSPACE), min_size=1, max_size=7),
    }
)
PAGES = st.lists(
    st.tuples(st.sampled_from([None, 0, 1, 2, 3, 100, 101, -1]), st.sampled_from(["none", "shown", "other", "broken"])),
    min_size=2,
    max_size=4,
)


@pytest.fixture
def postgres(database):
    if not database.is_postgres:
        pytest.skip("operations are compiled for PostgreSQL only")
    return database


async def a_world(world: dict[str, Any]) -> tuple[list[Partner], list[Workspace]]:
    """A master, its sub-partner and another master; plans, margins, add-ons and workspaces as drawn."""
    tag = secrets.token_hex(4)
    master = await partners.create_partner(PLATFORM, name="Master", slug=f"master-{tag}", currency="BRL")
    sub = await partners.create_sub_partner(partner_viewer(master), name="Sub", slug=f"sub-{tag}")
    other = await partners.create_partner(PLATFORM, name="Other", slug=f"other-{tag}", currency="BRL")
    offered = [
        await plans.create_plan(
            PLATFORM, name=f"Platform {n}", interval=BillingInterval.MONTHLY, price=Money(price, "BRL"),
            limits=world["limits"],
        )
        for n, price in enumerate(world["prices"])
    ]  # fmt: skip
    for partner, margin in zip((master, sub), world["margins"], strict=True):
        if margin is not None:
            kind, value = margin
            currency = {"currency": "BRL"} if kind is MarginKind.FIXED else {}
            await plans.set_margin(partner_viewer(partner), kind=kind, value=Decimal(value), **currency)
    made: list[Workspace] = []
    owners = [master, sub, other]
    for n, (owner_at, drawn) in enumerate(world["workspaces"]):
        owner = owners[owner_at]
        viewer = partner_viewer(owner)
        own = await plans.create_plan(
            viewer, name="Own", interval=BillingInterval.MONTHLY, price=Money(990, "BRL"), limits={"members": 2}
        )
        add_ons = [
            await plans.create_add_on(
                viewer, name=f"Add-on {k}", limit_deltas={"members": k + 1}, price=Money(0, "BRL")
            )
            for k in range(2)
        ]
        workspace = await partners.create_workspace(viewer, name=drawn["name"], owner_email=f"o{n}-{tag}@example.com")
        if drawn["plan"]:
            plan = [*offered, own][drawn["plan"] - 1]
            await lifecycle.assign_plan(
                viewer, workspace_id=workspace.id, plan_id=plan.id, note="", idempotency_key=f"{tag}{n}"
            )
            for which, quantity in drawn["add_ons"]:
                await entitlements.set_add_on(
                    viewer, workspace_id=workspace.id, add_on_id=add_ons[which].id, quantity=quantity, force=True
                )
            if drawn.get("replan"):
                other_plan = [*offered, own][drawn["plan"] % 3]
                await lifecycle.assign_plan(
                    viewer, workspace_id=workspace.id, plan_id=other_plan.id, note="again", idempotency_key=f"{tag}{n}b"
                )
        for unit, amount in (("POINTS", drawn["points"]), ("MESSAGE_CREDITS", drawn["credits"])):
            if amount:
                await wallets.adjust_workspace_balance(
                    viewer,
                    workspace_id=workspace.id,
                    unit=unit,
                    amount=amount,
                    note="",
                    idempotency_key=f"{tag}{n}{unit}",
                )
        if drawn.get("debit") and drawn["points"]:
            await wallets.adjust_workspace_balance(
                viewer, workspace_id=workspace.id, unit="POINTS", amount=1, note="back", idempotency_key=f"{tag}{n}d",
                debit=True,
            )  # fmt: skip
        if drawn.get("caused_by") is not None:
            kind, caused_id = drawn.get("caused_by")
            entries = LedgerEntry.filter(wallet__workspace_id=workspace.id).values_list("posting_id", flat=True)
            await Posting.filter(id__in=list(await entries)).update(caused_by_type=kind, caused_by_id=caused_id)
        for k, paid in enumerate(drawn.get("payments", ())):
            await Payment.create(
                partner_id=owner.id,
                payer_key=f"WORKSPACE:{workspace.id}" if paid["own"] else f"PARTNER:{owner.id}",
                reference=f"{tag}-{n}-{k}",
                provider="manual",
                method=paid["method"],
                amount=paid["amount"],
                currency=paid["currency"],
                status=paid["status"],
                provider_ref=None if paid["reference"] is None else f"{paid['reference']}{tag}{n}{k}",
                purpose={"kind": paid["purpose"].value},
                purpose_kind=paid["purpose"],
                decline_reason=paid["decline"],
                payer_action=paid["action"],
                note=drawn["name"],
                refunded_amount=paid["refunded"],
            )
        if drawn["deleted"]:
            await Workspace.filter(id=workspace.id).update(deleted_at=clock.now())
        made.append(await Workspace.get(id=workspace.id))
    return [master, sub, other], made


def callers(tenants: list[Partner], workspaces: list[Workspace]) -> list[Viewer]:
    found = [PLATFORM, *(partner_viewer(p) for p in tenants)]
    for workspace in workspaces[:2]:
        found.append(
            Viewer(
                kind="WORKSPACE",
                actor="test",
                partner_id=workspace.partner_id,
                workspace_id=workspace.id,
                permissions=PARTNER_PERMISSIONS,
            )
        )
    return found


def cursor(kind: str, workspaces: list[Workspace], viewer: Viewer) -> str | None:
    if kind == "none":
        return None
    if kind == "broken":
        return "not a cursor"
    mine = [w for w in workspaces if w.partner_id == viewer.partner_id or viewer.is_platform]
    theirs = [w for w in workspaces if w not in mine]
    chosen = (mine if kind == "shown" else theirs) or workspaces
    return encode_cursor(chosen[len(chosen) // 2].id)


def sorted_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


async def both_ways(
    document: str, viewer: Viewer | None, variables: dict[str, Any], *, may_hand_over: bool = False
) -> bool:
    """The compiled answer is the general executor's; or, where that is an error, the compiled path hands over.
    ``may_hand_over``: a nested connection's page or cursor is one the general executor refuses; it answers
    with data where no row reaches that connection, and the compiled path hands such a request over whole."""
    compiled = compile_operation(document, schema._schema, VALIDATION_RULES, MAX_TOKENS)
    general = await schema.execute(
        document, variable_values=variables, context_value=Context(viewer=viewer, request_id="t")
    )
    try:
        text, parameters = compiled.prepare(schema._schema, viewer, variables)
        answer = await compiled.run(text, parameters)
    except Fallback:
        assert general.errors or may_hand_over, f"the compiled path handed over a request answered: {variables}"
        return False
    assert not general.errors, f"the compiled path answered where the general executor errs: {general.errors}"
    assert sorted_json(json.loads(answer)) == sorted_json(general.data), (viewer, variables)
    return True


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(WORLD, PAGES)
async def test_compiled_operations_answer_what_the_general_executor_answers(
    postgres, world: dict[str, Any], pages: list[tuple[int | None, str]]
) -> None:
    tenants, workspaces = await a_world(world)
    wallet_ids = (
        await Wallet.filter(workspace_id__in=[w.id for w in workspaces]).order_by("id").values_list("id", flat=True)
    )
    payment_ids = (
        await Payment.filter(partner_id__in=[p.id for p in tenants]).order_by("id").values_list("id", flat=True)
    )
    answered: dict[str, bool] = {}  # each operation: answered on the compiled path at least once

    async def compare(name: str, document: str, variables: dict[str, Any], may_hand_over: bool = False) -> None:
        compiled = await both_ways(document, viewer, variables, may_hand_over=may_hand_over)
        answered[name] = answered.get(name, False) or compiled

    for viewer in callers(tenants, workspaces):
        for n, (first, after) in enumerate(pages):
            at = cursor(after, workspaces, viewer)
            refused = first in (-1, 101) or after == "broken"  # a page the general executor refuses
            await compare("dashboard", DASHBOARD, {"first": first if first is not None else 20, "after": at})
            await compare("written", WRITTEN, {"n": first, "from": at})
            await compare("history", HISTORY, {"n": first, "from": at}, refused)
            workspace = workspaces[n % len(workspaces)]
            shown = {"id": to_global_id("Workspace", workspace.id), "n": first, "from": at}
            await compare("payments", PAYMENTS, shown, refused)
            for portal in PORTAL:
                if compiles(portal):
                    variables = {"first": first if first is not None else 20, "after": at}
                    variables["id"] = to_global_id("Workspace", workspace.id)
                    await compare(portal, portal, variables, refused)
            if wallet_ids:
                wallet = to_global_id("Wallet", wallet_ids[n % len(wallet_ids)])
                cause = [None, LedgerCause.GRANT.value, LedgerCause.ADJUSTMENT.value][n % 3]
                since = [None, "2000-01-01T00:00:00+00:00", "2999-01-01T00:00:00Z"][(n + 1) % 3]
                entries = {"id": wallet, "n": first, "from": at, "cause": cause, "since": since}
                await compare("wallet", WALLET, entries, refused)
            if payment_ids:  # a payment's id where a workspace's is expected: not a Workspace, so its id alone
                await compare("payment", PAYMENTS, {"id": to_global_id("Payment", payment_ids[n % len(payment_ids)])})
    if any(first not in (-1, 101) and after != "broken" for first, after in pages):
        assert all(answered.values()), answered  # a page the general executor answers: so does the compiled path


def compiles(document: str) -> bool:
    try:
        compile_operation(document, schema._schema, VALIDATION_RULES, MAX_TOKENS)
    except NotCompiled:
        return False
    return True


def test_the_portals_workspace_pages_compile() -> None:
    """The staff's dashboard and workspace page (a wallet's entries, plans) compile; the others say why not."""
    named = {re.search(r"query (\w+)", text).group(1): compiles(text) for text in PORTAL}  # type: ignore[union-attr]
    assert named["Dashboard"] and named["StaffWorkspace"], named


async def test_requests_the_general_executor_refuses_are_handed_over(postgres) -> None:
    """No caller, variables of the wrong type or missing, pages out of bounds, a broken cursor."""
    await both_ways(DASHBOARD, None, {"first": 10})
    for variables in (
        {"first": "ten"},
        {},
        {"first": 10, "after": 5},
        {"first": 101},
        {"first": -1},
        {"first": 1, "after": "x"},
    ):
        await both_ways(DASHBOARD, PLATFORM, variables)


async def test_limits_beyond_graphqls_int_are_handed_over(postgres) -> None:
    """A plan's limit plus an add-on's, past 2^31 - 1: the general executor errs, so the compiled path hands over."""
    partner = await partners.create_partner(PLATFORM, name="Big", slug="big-limits", currency="BRL")
    viewer = partner_viewer(partner)
    plan = await plans.create_plan(
        viewer, name="Big", interval=BillingInterval.MONTHLY, price=Money(0, "BRL"), limits={"members": 2**31 - 1}
    )
    add_on = await plans.create_add_on(viewer, name="One more", limit_deltas={"members": 1}, price=Money(0, "BRL"))
    workspace = await partners.create_workspace(viewer, name="Big", owner_email="big@example.com")
    await lifecycle.assign_plan(viewer, workspace_id=workspace.id, plan_id=plan.id, note="", idempotency_key="big")
    await both_ways(DASHBOARD, viewer, {"first": 5})  # 2^31 - 1: answered
    await entitlements.set_add_on(viewer, workspace_id=workspace.id, add_on_id=add_on.id, quantity=1, force=True)
    with pytest.raises(Fallback):
        compiled = compile_operation(DASHBOARD, schema._schema, VALIDATION_RULES)
        text, parameters = compiled.prepare(schema._schema, viewer, {"first": 5})
        await compiled.run(text, parameters)
    await both_ways(DASHBOARD, viewer, {"first": 5})


SHAPES = [
    "{ workspaces { nodes { id name } } }",  # no arguments at all
    "{ workspaces(first: 2) { __typename } }",  # nothing aggregated: still one object, rows or none
    "{ workspaces(first: 0) { pageInfo { hasPreviousPage } } }",
    "query($a: String) { workspaces(after: $a) { pageInfo { startCursor } edges { __typename } } }",
    "{ a: workspaces(first: 1) { nodes { id } } b: workspaces(first: 1) { nodes { id } } }",
    "{ workspaces(first: 3) { nodes { id } nodes { name } } }",  # one key asked twice: merged
]


@pytest.mark.parametrize("document", SHAPES)
async def test_every_shape_of_a_compiled_operation_answers_alike(postgres, document: str) -> None:
    tenants, workspaces = await a_world(
        {
            "prices": [100, 200],
            "margins": [None, None],
            "limits": {},
            "workspaces": [
                (0, {"name": "A", "plan": 1, "add_ons": [], "points": 5, "credits": None, "deleted": False})
            ],
        }
    )
    for viewer in [*callers(tenants, workspaces), partner_viewer(tenants[2])]:  # the last sees no workspace
        await both_ways(document, viewer, {})


def test_a_document_over_the_token_limit_is_not_compiled() -> None:
    """The general executor's parser refuses it (QUERY_TOO_COMPLEX): the compiled path must not answer it."""
    fragments = " ".join(f"fragment F{n} on Workspace {{ id }}" for n in range(300))
    spreads = " ".join(f"...F{n}" for n in range(300))
    document = f"{{ workspaces(first: 1) {{ nodes {{ {spreads} }} }} }} {fragments}"
    compile_operation(document, schema._schema, VALIDATION_RULES)  # compiles, without the limit
    with pytest.raises(NotCompiled, match="does not parse"):
        compile_operation(document, schema._schema, VALIDATION_RULES, MAX_TOKENS)


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ("{ workspaces { nodes { projects { nodes { id } } } } }", "Workspace.projects is not compiled"),
        (
            "{ workspaces { nodes { payments { nodes { refunds { nodes { id } } } } } } }",
            "Payment.refunds is not compiled",
        ),
        ("{ workspaces { nodes { payments(first: 1) { totalCount } } } }", "does not pass validation"),
        ('{ workspaces(ownerEmail: "a@b.c") { nodes { id } } }', "Query.workspaces(ownerEmail:) is not compiled"),
        ("query($s: Boolean!) { workspaces { nodes { id @include(if: $s) } } }", "directives"),
        ("{ partners { nodes { id } } }", "Query.partners is not compiled"),
        ("mutation { logout { ok } }", "only queries are compiled"),
        ("{ workspaces { nodes { nope } } }", "does not pass validation"),
        ('{ node(id: "x") { ... on Partner { id } } }', "Query.node for a Partner is not compiled"),
        ("{ viewer { kind } }", "Query.viewer is not compiled"),
        ("{ workspaces { nodes { payments { nodes { payerAction } } } } }", "Payment.payerAction is not compiled"),
    ],
)
def test_what_does_not_compile_says_why(document: str, reason: str) -> None:
    with pytest.raises(NotCompiled, match=re.escape(reason)):
        compile_operation(document, schema._schema, VALIDATION_RULES)


def test_an_operation_over_the_general_executors_limits_is_not_compiled() -> None:
    """The general executor refuses it (QUERY_TOO_COMPLEX, for its aliases): the compiled path must not answer."""
    aliases = " ".join(f"a{n}: id" for n in range(31))
    with pytest.raises(NotCompiled, match="validation"):
        compile_operation(f"{{ workspaces {{ nodes {{ {aliases} }} }} }}", schema._schema, VALIDATION_RULES)
    compile_operation(f"{{ workspaces {{ nodes {{ {aliases} }} }} }}", schema._schema)  # without the limits, it would
