"""The audit log speaks as the API does. A grant of BRL 12.34 reads {"amount": "12.34", "unit": "BRL"}, as
Wallet.balance shows it, not 1234; a price reads as Money ({"amount": "49.90", "currency": "BRL"}); a plan,
a wallet, a workspace are named by the global ids the API gives them, not "4". Every privileged action
the domain audits is taken once below, and no row it leaves holds minor units or a database id."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from tortoise.transactions import in_transaction

from billing.accounts import top_ups, wallets
from billing.auto_billing import engine
from billing.catalog import plans, rate_cards
from billing.charges import gateway_configs
from billing.core.errors import BillingError
from billing.core.money import Money, decimal_places, is_currency
from billing.core.tenancy import Viewer
from billing.documents import issuing, manage
from billing.outbox import partner_webhooks
from billing.sales import checkout, purchases, refunds
from billing.subscriptions import credit_billing, entitlements, lifecycle, renewals
from billing.tenants import api_keys, branding, identity
from billing.usage import project_credit
from models.enums import (
    BillingInterval,
    CouponDuration,
    CouponKind,
    DocumentKind,
    GatewayMode,
    MarginKind,
    MessageCategory,
    PaymentMethodKind,
    Permission,
    PlanChangeTiming,
    PlanStatus,
    RefundPlanPolicy,
    SeriesReset,
    UsageCreditPolicy,
)
from models.operations import AuditLog
from models.tenancy import Partner, Project, Workspace
from schema.ids import from_global_id, to_global_id
from tests.counting import count_statements
from tests.factories import PLATFORM, a_partner, a_workspace, partner_viewer
from tests.graphql import GraphQLClient

pytestmark = pytest.mark.usefixtures("database")

AUDIT = "query($action: String) { auditLog(first: 100, action: $action) { nodes { action target before after } } }"
ADJUST = """mutation($ws: ID!, $amount: String!, $key: String!) {
  %s(input: {workspaceId: $ws, unit: "BRL", amount: $amount, note: "by hand", idempotencyKey: $key}) {
    wallet { id balance { amount unit } } errors { code } } }"""
CREDIT_LIMIT = """mutation($ws: ID!) {
  setWalletCreditLimit(input: {workspaceId: $ws, unit: "BRL", creditLimit: "5.00"}) {
    wallet { creditLimit { amount unit } } errors { code } } }"""
DUNNING = """mutation($plan: ID!) { setDunningPolicy(input: {retryDays: [1, 3, 5], restrictAfter: 2, suspendAfter: 3,
  fallbackAfter: 3, fallbackPlanId: $plan}) { policy { fallbackPlanId } errors { code } } }"""


def brl(amount: str) -> dict[str, str]:
    return {"amount": amount, "unit": "BRL"}


async def test_a_brl_wallet_and_a_setting_read_in_the_log_as_the_api_shows_them(server) -> None:
    partner = await a_partner()  # in BRL
    workspace = await a_workspace(partner)
    fallback = await plans.create_plan(
        partner_viewer(partner), name="Basic", interval=BillingInterval.MONTHLY, price=Money(4990, "BRL"), limits={}
    )
    agency = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    ws = to_global_id("Workspace", workspace.id)

    # The first grant opens the wallet (on PostgreSQL the next ones are one statement each).
    for mutation, amount, key in (
        ("grantUnits", "12.34", "g1"),
        ("grantUnits", "0.66", "g2"),
        ("debitUnits", "2.30", "d1"),
    ):
        made = (await agency.data(ADJUST % mutation, {"ws": ws, "amount": amount, "key": key}))[mutation]
        assert made["errors"] == []
    wallet = made["wallet"]
    assert wallet["balance"] == brl("10.70")
    assert (await agency.data(CREDIT_LIMIT, {"ws": ws}))["setWalletCreditLimit"]["wallet"]["creditLimit"] == brl("5.00")
    shown = (await agency.data(DUNNING, {"plan": to_global_id("Plan", fallback.id)}))["setDunningPolicy"]
    fallback_id = shown["policy"]["fallbackPlanId"]

    log = (await agency.data(AUDIT))["auditLog"]["nodes"]
    wanted = ("wallet.grant", "wallet.debit", "wallet.credit_limit", "partner.dunning_policy")
    assert [entry for entry in log if entry["action"] in wanted] == [
        {
            "action": "wallet.grant",
            "target": wallet["id"],
            "before": {"balance": brl("0.00")},
            "after": {"balance": brl("12.34"), "note": "by hand"},
        },
        {
            "action": "wallet.grant",
            "target": wallet["id"],
            "before": {"balance": brl("12.34")},
            "after": {"balance": brl("13.00"), "note": "by hand"},
        },
        {
            "action": "wallet.debit",
            "target": wallet["id"],
            "before": {"balance": brl("13.00")},
            "after": {"balance": brl("10.70"), "note": "by hand"},
        },
        {
            "action": "wallet.credit_limit",
            "target": wallet["id"],
            "before": {"credit_limit": brl("0.00")},
            "after": {"credit_limit": brl("5.00")},
        },
        {
            "action": "partner.dunning_policy",
            "target": to_global_id("Partner", partner.id),
            "before": {
                "retry_days": [1, 3, 9, 15, 21],
                "restrict_after": 3,
                "suspend_after": 5,
                "fallback_after": None,
                "fallback_plan_id": None,
            },
            "after": {
                "retry_days": [1, 3, 5],
                "restrict_after": 2,
                "suspend_after": 3,
                "fallback_after": 3,
                "fallback_plan_id": fallback_id,
            },
        },
    ]


@pytest.mark.parametrize("unit", ["KWD", "JPY", "POINTS"])
@pytest.mark.parametrize("careful", [False, True], ids=["one statement", "careful"])
async def test_a_balance_is_written_in_its_units_decimals_on_either_path(
    database, monkeypatch, unit: str, careful: bool
) -> None:
    """On PostgreSQL a grant or debit outside a transaction is one SQL statement that writes its own audit
    row; inside one, the careful path writes it. Both write a balance as ``Quantity`` does, a negative one too."""
    partner = await a_partner()
    viewer = partner_viewer(partner)
    workspace = await a_workspace(partner)
    await adjust_in(viewer, workspace, unit, 1_005, "open", debit=False, careful=careful)  # opens the wallet
    await wallets.set_credit_limit(viewer, credit_limit=1_000, workspace_id=workspace.id, unit=unit)
    counts = count_statements(monkeypatch)
    await adjust_in(viewer, workspace, unit, 2_000, "debit", debit=True, careful=careful)
    await adjust_in(viewer, workspace, unit, 7, "grant", debit=False, careful=careful)
    monkeypatch.undo()
    if database.is_postgres and not careful:
        assert counts["statements"] == 2  # one each: the statement wrote the audit rows
    rows = await AuditLog.filter(action__in=["wallet.grant", "wallet.debit"]).order_by("id")
    shown = {"KWD": ["0.000", "1.005", "-0.995", "-0.988"], "JPY": ["0", "1005", "-995", "-988"]}
    amounts = shown.get(unit, shown["JPY"])
    assert [(r.before, r.after) for r in rows] == [
        ({"balance": {"amount": before, "unit": unit}}, {"balance": {"amount": after, "unit": unit}, "note": note})
        for before, after, note in zip(
            amounts[:-1], amounts[1:], ("note open", "note debit", "note grant"), strict=True
        )
    ]


async def adjust_in(
    viewer: Viewer, workspace: Workspace, unit: str, amount: int, key: str, *, debit: bool, careful: bool
) -> None:
    async def call() -> None:
        await wallets.adjust_workspace_balance(
            viewer,
            workspace_id=workspace.id,
            unit=unit,
            amount=amount,
            note=f"note {key}",
            idempotency_key=key,
            debit=debit,
        )

    if not careful:
        await call()
        return
    async with in_transaction("default"):  # inside a transaction, always the careful path
        await call()


# ------------------------------------------------------------------ every audited action, once


async def everything_audited() -> Partner:
    """One partner doing each privileged action the domain audits."""
    partner = await a_partner()  # partner.create
    viewer = partner_viewer(partner)
    workspace = await a_workspace(partner)  # workspace.create
    key = await api_keys.create_key(partner_id=partner.id, name="ops")  # api_key.create
    await api_keys.revoke_key(viewer, key.key.id)  # api_key.revoke
    await branding.update_branding(viewer, partner_id=partner.id, change=branding.BrandingChange(display_name="Sol"))
    await identity.invite_partner_user(PLATFORM, partner_id=partner.id, email="owner@agency.example")
    member = await identity.invite_partner_user(viewer, partner_id=partner.id, email="member@agency.example")
    await identity.set_permissions(viewer, user_id=member.user.id, permissions=frozenset({Permission.READ_REPORTS}))
    await identity.create_workspace_user(viewer, workspace_id=workspace.id, email="owner@client.example")

    # The catalog: the platform's plans and rates, the partner's margins, plans, add-ons and packages.
    family = await plans.create_plan_family(PLATFORM, name="Chatbots")
    monthly = BillingInterval.MONTHLY
    platform_plan = await plans.create_plan(
        PLATFORM,
        name="Platform Pro",
        interval=monthly,
        price=Money(4990, "BRL"),
        limits={"members": 5},
        family_id=family.id,
    )
    await plans.set_margin(viewer, kind=MarginKind.FIXED, value="5.00", plan_id=platform_plan.id)
    await plans.set_margin(viewer, kind=MarginKind.FIXED, value="7.50", plan_id=platform_plan.id)
    await plans.set_margin(viewer, kind=MarginKind.PERCENTAGE, value="12.50", family_id=family.id)
    await plans.remove_margin(viewer, partner_id=partner.id, plan_id=platform_plan.id)
    basic = await plans.create_plan(viewer, name="Basic", interval=monthly, price=Money(2990, "BRL"), limits={})
    pro = await plans.create_plan(viewer, name="Pro", interval=monthly, price=Money(5990, "BRL"), limits={})
    old = await plans.create_plan(viewer, name="Old", interval=monthly, price=Money(1990, "BRL"), limits={})
    await plans.set_plan_status(viewer, plan_id=old.id, status=PlanStatus.ARCHIVED)
    add_on = await plans.create_add_on(
        viewer, name="Extra bot", limit_deltas={"chatbots": 1}, price=Money(1000, "BRL"), points_cost=100
    )
    retired = await plans.create_credit_package(
        viewer, name="100 points", unit="POINTS", quantity=100, price=Money(1500, "BRL")
    )
    await plans.update_credit_package(viewer, package_id=retired.id, price=Money(1200, "BRL"))
    await plans.set_credit_package_status(viewer, package_id=retired.id, status=PlanStatus.ARCHIVED)
    package = await plans.create_credit_package(
        viewer, name="500 points", unit="POINTS", quantity=500, price=Money(5000, "BRL")
    )
    cell = rate_cards.CellInput("BR", MessageCategory.MARKETING, "0.0625")
    await rate_cards.set_platform_rates(PLATFORM, currency="BRL", cells=[cell])
    await rate_cards.set_partner_margin(viewer, partner_id=partner.id, kind=MarginKind.FIXED, value="0.0100")
    await rate_cards.set_partner_margin(
        viewer, partner_id=partner.id, kind=MarginKind.PERCENTAGE, value="20", country="BR", category=cell.category
    )

    # The partner's settings.
    await refunds.set_policy(
        viewer, partner_id=partner.id, plan_policy=RefundPlanPolicy.KEEP_TO_PERIOD_END, take_back_units=True
    )
    await project_credit.set_policy(viewer, partner_id=partner.id, policy=UsageCreditPolicy.ALLOW_TO_CREDIT_LIMIT)
    endpoint, _ = await partner_webhooks.create_endpoint(
        viewer, partner_id=partner.id, url="https://8.8.8.8/in", events=[]
    )
    await partner_webhooks.set_payload_version(viewer, endpoint_id=endpoint.id, version=1)
    await engine.configure(viewer, partner_id=partner.id, enabled=False, for_clients=False, client_overdraft=50)
    await renewals.set_dunning_policy(
        viewer,
        partner_id=partner.id,
        retry_days=[1, 3, 5],
        restrict_after=2,
        suspend_after=3,
        fallback_after=3,
        fallback_plan_id=basic.id,
    )
    await credit_billing.set_credit_billing(viewer, partner_id=partner.id, enabled=True)
    for _ in range(2):  # the second names the first in its "before"
        await gateway_configs.configure(
            viewer,
            partner_id=partner.id,
            provider=gateway_configs.MANUAL,
            methods=[PaymentMethodKind.MANUAL],
            mode=GatewayMode.TEST,
            api_key=None,
            webhook_secret=None,
        )

    # Wallets.
    for amount, key, debit in ((1_000, "g1", False), (500, "g2", False), (200, "d1", True)):
        await wallets.adjust_workspace_balance(
            viewer, workspace_id=workspace.id, unit="POINTS", amount=amount, note="", idempotency_key=key, debit=debit
        )
    await wallets.set_credit_limit(viewer, credit_limit="100", workspace_id=workspace.id, unit="POINTS")
    await wallets.transfer_units(
        viewer, workspace_id=workspace.id, unit="POINTS", amount=10, to_workspace=False, note="", idempotency_key="t1"
    )
    await top_ups.configure(
        viewer, package_id=package.id, threshold="50", enabled=False, workspace_id=workspace.id, unit="POINTS"
    )
    project = await Project.get(workspace_id=workspace.id, is_default=True)
    await project_credit.assign(viewer, project_id=project.id, amount="150.00", note="", idempotency_key="pc1")

    # Sales.
    bought = await purchases.record_manual_purchase(
        viewer,
        workspace_id=workspace.id,
        unit="POINTS",
        quantity=300,
        price=Money(3000, "BRL"),
        note="cash",
        idempotency_key="m1",
    )
    await refunds.refund_payment(
        viewer, payment_id=bought.payment_id, amount="10.00", reason="asked", idempotency_key="r1"
    )
    sold = await checkout.checkout(
        viewer,
        workspace_id=workspace.id,
        item=checkout.Item(credit_package_id=package.id),
        method=PaymentMethodKind.MANUAL,
        idempotency_key="c1",
    )
    assert sold.payment is not None
    await purchases.record_payment(viewer, payment_id=sold.payment.id, note="paid", idempotency_key="p1")

    # Documents: the partner's taxes and numbering, its coupons, and a correction by credit note.
    rate = await manage.create_tax_rate(viewer, name="ISS", percentage=Decimal(5), inclusive=True)
    await manage.set_tax_rate_active(viewer, rate_id=rate.id, active=False)
    await manage.set_document_series(
        viewer, kind=DocumentKind.INVOICE, prefix="SOL-{year}-", digits=6, reset=SeriesReset.NEVER
    )
    coupon = await manage.create_coupon(
        viewer,
        code="WELCOME",
        name="welcome",
        kind=CouponKind.FIXED,
        duration=CouponDuration.REPEATING,
        percentage=None,
        amount=Money(500, "BRL"),
        periods=2,
        plan_ids=[basic.id],
        add_on_ids=[],
        package_ids=[],
        max_redemptions=10,
        max_per_workspace=1,
        expires_at=None,
    )
    await manage.set_coupon_stacking(viewer, stack=True)
    await manage.apply_coupon(viewer, workspace_id=workspace.id, code="welcome")
    await manage.set_coupon_active(viewer, coupon_id=coupon.id, active=False)
    invoice = await issuing.invoice_of(sold.payment.id)
    assert invoice is not None
    await manage.credit_invoice(viewer, invoice_id=invoice.id, amounts=None, reason="goodwill")

    # Subscriptions and add-ons.
    await lifecycle.assign_plan(viewer, workspace_id=workspace.id, plan_id=basic.id, note="", idempotency_key="a1")
    await lifecycle.change_plan(
        viewer,
        workspace_id=workspace.id,
        plan_id=pro.id,
        timing=PlanChangeTiming.PERIOD_END,
        note="",
        idempotency_key="ch1",
    )
    await entitlements.set_add_on(viewer, workspace_id=workspace.id, add_on_id=add_on.id, quantity=2)
    await credit_billing.buy_add_on_with_points(
        viewer, workspace_id=workspace.id, add_on_id=add_on.id, quantity=1, idempotency_key="ap1"
    )
    await lifecycle.set_auto_renew(viewer, workspace_id=workspace.id, enabled=False)
    await lifecycle.cancel(viewer, workspace_id=workspace.id, at_period_end=True)
    partner_plan = await plans.create_plan(
        PLATFORM, name="Agency", interval=monthly, price=Money(30_000, "BRL"), limits={}, for_partners=True
    )
    await wallets.grant_partner_balance(
        PLATFORM, partner_id=partner.id, currency="BRL", amount=100_000, note="", idempotency_key="pb1"
    )
    await lifecycle.subscribe_partner_plan(
        viewer, partner_id=partner.id, plan_id=partner_plan.id, timing=PlanChangeTiming.AUTO, idempotency_key="pp1"
    )
    return partner


def audited_actions() -> set[str]:
    """Every action named where the domain audits (``action="..."``), and the two a wallet adjustment names."""
    source = Path(__file__).parent.parent / "billing"
    found = {"wallet.grant", "wallet.debit"}
    for path in source.rglob("*.py"):
        found |= set(re.findall(r'\baction="([a-z_.]+)"', path.read_text()))
    return found


# A key naming an amount holds Money or a Quantity; one naming a row holds its global id, of this type.
AMOUNT_KEYS = {"balance", "amount", "price", "quantity", "threshold", "credit_limit", "points", "overdraft"}
ID_TYPES = {
    "plan_id": {"Plan"},
    "fallback_plan_id": {"Plan"},
    "family_id": {"PlanFamily"},
    "add_on_id": {"AddOn"},
    "package_id": {"CreditPackage"},
    "config_id": {"GatewayConfig"},
    "wallet_id": {"Wallet"},
    "workspace_id": {"Workspace"},
    "from": {"Wallet"},
    "to": {"Wallet"},
    "payer": {"Workspace", "Partner"},
}
# Whole numbers the API shows as Int: counts of days and failures, limit values, add-on quantities, a webhook
# endpoint's payload version.
COUNTS = {
    "retry_days",
    "restrict_after",
    "suspend_after",
    "fallback_after",
    "limits",
    "limit_deltas",
    "payload_version",
}
COUNTED = {
    ("add_on.set", "quantity"),
    ("add_on.points", "quantity"),
    ("credit_package.status", "auto_top_ups_turned_off"),
    ("coupon.create", "periods"),
    ("document_series.set", "digits"),
}


def shape_problems(action: str, value: Any, path: str = "", key: str = "") -> list[str]:
    """What in one audit value is not as the API shows it, each named by its path."""
    where = f"{action} {path or '.'}"
    counted = key in COUNTS or (action, key) in COUNTED
    looks_like_amount = isinstance(value, dict) and not isinstance(value.get("amount", {}), dict)
    if value is not None and (looks_like_amount or (key in AMOUNT_KEYS and not counted)):
        return [] if _is_amount(value) else [f"{where}: {value!r} is not Money or a Quantity"]
    if key in ID_TYPES or key == "id" or key.endswith("_id"):
        types = ID_TYPES.get(key, {"?"})
        wrong = value is not None and _global_id_type(value) not in types
        return [f"{where}: {value!r} is not a global id of {sorted(types)}"] if wrong else []
    if isinstance(value, dict):  # a limit's name is no key of ours: its value is counted like the limits
        inner = [(k, key if key in COUNTS else k, v) for k, v in value.items()]
        return [p for k, named, v in inner for p in shape_problems(action, v, f"{path}.{k}", named)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in shape_problems(action, v, f"{path}[{i}]", key)]
    if isinstance(value, int) and not isinstance(value, bool) and not counted:
        return [f"{where}: the bare number {value!r}"]
    if isinstance(value, str) and re.fullmatch(r"[A-Z_]+:[0-9]+", value):
        return [f"{where}: {value!r} names a row by its database id"]
    return []


def _is_amount(value: Any) -> bool:
    if not isinstance(value, dict) or set(value) not in ({"amount", "currency"}, {"amount", "unit"}):
        return False
    unit, amount = value.get("currency") or value.get("unit"), value["amount"]
    if not isinstance(amount, str) or not isinstance(unit, str) or ("currency" in value and not is_currency(unit)):
        return False
    places = decimal_places(unit)
    return re.fullmatch(r"-?(0|[1-9][0-9]*)" + (rf"\.[0-9]{{{places}}}" if places else ""), amount) is not None


def _global_id_type(value: Any) -> str | None:
    try:
        return from_global_id(value)[0] if isinstance(value, str) else None
    except BillingError:
        return None


async def test_no_audit_row_holds_minor_units_or_database_ids() -> None:
    partner = await everything_audited()
    rows = await AuditLog.all().order_by("id")
    missing = audited_actions() - {row.action for row in rows}
    assert not missing, f"add these actions to everything_audited(): {sorted(missing)}"
    problems = [
        problem for row in rows for side in (row.before, row.after) for problem in shape_problems(row.action, side)
    ]
    assert problems == []
    # Spot checks of what the rules above let through.
    by_action = {row.action: row for row in rows}
    assert by_action["credit_package.create"].after == {
        "name": "500 points",
        "quantity": {"amount": "500", "unit": "POINTS"},
        "price": {"amount": "50.00", "currency": "BRL"},
    }
    assert by_action["credit_package.update"].after["price"] == {"amount": "12.00", "currency": "BRL"}
    assert by_action["credit_package.status"].after == {"status": "ARCHIVED", "auto_top_ups_turned_off": 0}
    assert by_action["margin.remove"].before["value"] == "7.50"
    assert by_action["checkout"].after["payer"] == to_global_id(
        "Workspace", (await Workspace.get(partner_id=partner.id)).id
    )


def test_the_shape_check_finds_what_the_old_rows_held() -> None:
    """Rows as they were written before: each is caught."""
    old = {
        "wallet.grant": {"balance": 1234, "note": ""},
        "plan.create": {"name": "Pro", "price": 4990, "limits": {"members": 5}},
        "wallet.transfer": {"from": 4, "to": 5, "unit": "POINTS", "amount": 10, "note": ""},
        "checkout": {"purpose": "PLAN_PURCHASE", "method": "PIX", "amount": 4990, "payer": "WORKSPACE:4"},
        "plan.assign": {"plan_id": 7, "note": "", "forced": False, "charge_from": "None"},
        "margin.remove": {"kind": "FIXED", "percentage": "None", "fixed": 500, "currency": "BRL", "plan_id": 3},
        "add_on.set": {"add_on_id": 2, "quantity": 2, "forced": False},
    }
    for action, after in old.items():
        assert shape_problems(action, after), action
    assert shape_problems("add_on.set", {"add_on_id": to_global_id("AddOn", 2), "quantity": 2}) == []
    assert shape_problems("wallet.grant", {"balance": {"amount": "12.3", "unit": "BRL"}})  # BRL has two places
