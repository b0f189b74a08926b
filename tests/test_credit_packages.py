"""Credit packages the platform and partners manage: listed, renamed and repriced (new purchases only),
archived (never bought again by checkout, auto-billing or an auto top-up), and payments that say which
package lines they bought."""

from __future__ import annotations

import pytest

from billing.accounts import top_ups
from billing.catalog import plans
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Money
from billing.tenants import api_keys
from models.enums import PlanStatus
from models.payments import Payment
from models.wallets import AutoTopUp
from schema.ids import to_global_id
from tests.factories import PLATFORM, a_partner, a_workspace, partner_viewer
from tests.graphql import GraphQLClient
from tests.test_auto_billing import (
    CREDITS,
    an_agency,
    auto_billing_payments,
    balance,
    platform_package,
    run_worker,
    sign_up,
    turn_on,
)

pytestmark = pytest.mark.usefixtures("database")

LIST = (
    """query($status: PlanStatus) { creditPackages(status: $status) { nodes { id name status price { amount } } } }"""
)
UPDATE = """mutation($input: UpdateCreditPackageInput!) { updateCreditPackage(input: $input) {
  creditPackage { name price { amount currency } status } errors { code field message } } }"""
STATUS = """mutation($p: ID!, $status: PlanStatus!) { setCreditPackageStatus(input: {packageId: $p, status: $status}) {
  creditPackage { status } errors { code field message } } }"""
CHECKOUT = """mutation($ws: ID!, $p: ID!) { checkout(input: {workspaceId: $ws,
  item: {creditPackageId: $p, quantity: 2}, method: MANUAL, idempotencyKey: "buy-1"}) {
  payment { status amount { amount } packageLines { packageId name quantity count } }
  errors { code field message } } }"""


async def test_an_archived_package_is_never_bought_by_auto_billing_even_when_it_is_the_cheapest_cover() -> None:
    partner = await an_agency()
    workspace = await a_workspace(partner)
    await platform_package(2000, 1000)
    cheapest = await platform_package(5000, 2000)  # one 5,000 for 20.00 covers 4,500 cheapest
    await plans.set_credit_package_status(PLATFORM, package_id=cheapest, status=PlanStatus.ARCHIVED)
    await turn_on(partner)
    await sign_up(partner, workspace, {CREDITS: 4500})

    await run_worker()

    [payment] = await auto_billing_payments(partner)
    lines = [(line["package_id"], line["count"]) for line in payment.purpose["packages"]]
    assert cheapest not in [package for package, _ in lines]
    assert payment.amount == 3000 and [count for _, count in lines] == [3]  # three 2,000s instead
    assert await balance(workspace) == 4500


async def test_a_partner_lists_reprices_and_archives_its_packages_and_checkout_follows(server) -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    agency = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    made = await plans.create_credit_package(
        partner_viewer(partner), name="500 points", unit="POINTS", quantity=500, price=Money(4990, "BRL")
    )
    package = to_global_id("CreditPackage", made.id)
    ws = to_global_id("Workspace", workspace.id)

    bought = (await agency.data(CHECKOUT, {"ws": ws, "p": package}))["checkout"]
    assert bought["errors"] == [], bought
    assert bought["payment"]["amount"] == {"amount": "99.80"}
    assert bought["payment"]["packageLines"] == [
        {"packageId": package, "name": "500 points", "quantity": "500", "count": 2}
    ]

    renamed = await agency.data(
        UPDATE, {"input": {"packageId": package, "name": "500 pontos", "priceAmount": "44.90", "priceCurrency": "BRL"}}
    )
    assert renamed["updateCreditPackage"] == {
        "creditPackage": {"name": "500 pontos", "price": {"amount": "44.90", "currency": "BRL"}, "status": "ACTIVE"},
        "errors": [],
    }
    # The payment made before keeps its amount and its lines as they were sold.
    payment = await Payment.get(payer_key=f"WORKSPACE:{workspace.id}")
    assert payment.amount == 9980 and payment.purpose["packages"][0]["name"] == "500 points"
    half = await agency.data(UPDATE, {"input": {"packageId": package, "priceAmount": "1.00"}})
    assert [(e["code"], e["field"]) for e in half["updateCreditPackage"]["errors"]] == [
        ("INVALID_INPUT", "priceAmount")
    ]
    free = await agency.data(UPDATE, {"input": {"packageId": package, "priceAmount": "0", "priceCurrency": "BRL"}})
    assert [e["code"] for e in free["updateCreditPackage"]["errors"]] == ["INVALID_AMOUNT"]

    archived = await agency.data(STATUS, {"p": package, "status": "ARCHIVED"})
    assert archived["setCreditPackageStatus"] == {"creditPackage": {"status": "ARCHIVED"}, "errors": []}
    hidden = await agency.data(STATUS, {"p": package, "status": "HIDDEN"})
    assert [(e["code"], e["field"]) for e in hidden["setCreditPackageStatus"]["errors"]] == [
        ("INVALID_INPUT", "status")
    ]
    listed = (await agency.data(LIST, {"status": "ARCHIVED"}))["creditPackages"]["nodes"]
    assert [(n["id"], n["status"]) for n in listed] == [(package, "ARCHIVED")]
    assert (await agency.data(LIST, {"status": "ACTIVE"}))["creditPackages"]["nodes"] == []
    again = await agency.data(CHECKOUT.replace("buy-1", "buy-2"), {"ws": ws, "p": package})
    assert [(e["code"], e["field"]) for e in again["checkout"]["errors"]] == [("NOT_FOUND", "item.creditPackageId")]


async def test_only_the_owner_changes_a_package_and_a_workspace_sees_only_its_partners_on_sale(server) -> None:
    partner, other = await a_partner(), await a_partner("Other")
    mine = await plans.create_credit_package(
        partner_viewer(partner), name="Mine", unit="POINTS", quantity=10, price=Money(100, "BRL")
    )
    theirs = await plans.create_credit_package(
        partner_viewer(other), name="Theirs", unit="POINTS", quantity=10, price=Money(100, "BRL")
    )
    platform_one = await plans.create_credit_package(
        PLATFORM, name="Platform", unit="POINTS", quantity=10, price=Money(100, "BRL")
    )
    for package_id, code in ((theirs.id, ErrorCode.NOT_FOUND), (platform_one.id, ErrorCode.FORBIDDEN)):
        with pytest.raises(BillingError) as refused:
            await plans.set_credit_package_status(
                partner_viewer(partner), package_id=package_id, status=PlanStatus.ARCHIVED
            )
        assert refused.value.code is code
    listed = await plans.credit_packages(partner_viewer(partner))
    assert [p.id for p in listed] == [mine.id, platform_one.id]
    await plans.set_credit_package_status(PLATFORM, package_id=platform_one.id, status=PlanStatus.ARCHIVED)
    workspace = await a_workspace(partner)
    client = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    assert client  # the partner's key; the workspace's view is the domain's
    from billing.core.tenancy import Viewer

    viewer = Viewer(kind="WORKSPACE", actor="test", partner_id=partner.id, workspace_id=workspace.id)
    assert [p.id for p in await plans.credit_packages(viewer)] == [mine.id]
    await plans.set_credit_package_status(partner_viewer(partner), package_id=mine.id, status=PlanStatus.ARCHIVED)
    assert await plans.credit_packages(viewer) == []


async def test_archiving_a_package_turns_off_the_auto_top_ups_that_named_it_and_none_buys_it() -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    package = await plans.create_credit_package(
        partner_viewer(partner), name="100", unit="POINTS", quantity=100, price=Money(1000, "BRL")
    )
    rule = await top_ups.configure(
        partner_viewer(partner),
        workspace_id=workspace.id,
        unit="POINTS",
        package_id=package.id,
        threshold="0",
        enabled=True,
    )
    assert rule.enabled
    await plans.set_credit_package_status(partner_viewer(partner), package_id=package.id, status=PlanStatus.ARCHIVED)
    assert (await AutoTopUp.get(id=rule.id)).enabled is False
    # Turned on again by hand with the archived package: refused; and a rule that names it buys nothing.
    with pytest.raises(BillingError) as refused:
        await top_ups.configure(
            partner_viewer(partner),
            workspace_id=workspace.id,
            unit="POINTS",
            package_id=package.id,
            threshold="0",
            enabled=True,
        )
    assert (refused.value.code, refused.value.field) == (ErrorCode.NOT_FOUND, "packageId")
    await AutoTopUp.filter(id=rule.id).update(enabled=True)
    assert await top_ups.top_up_now(rule.wallet_id) is False
    assert await Payment.filter(payer_key=f"WORKSPACE:{workspace.id}").count() == 0


async def test_another_partners_package_is_not_found_on_the_field_that_named_it(server) -> None:
    partner, other = await a_partner(), await a_partner("Other")
    theirs = await plans.create_credit_package(
        partner_viewer(other), name="Theirs", unit="POINTS", quantity=10, price=Money(100, "BRL")
    )
    agency = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    package = to_global_id("CreditPackage", theirs.id)
    for query, variables, name in (
        (UPDATE, {"input": {"packageId": package, "name": "Mine now"}}, "updateCreditPackage"),
        (STATUS, {"p": package, "status": "ARCHIVED"}, "setCreditPackageStatus"),
    ):
        answer = (await agency.data(query, variables))[name]
        assert [(e["code"], e["field"]) for e in answer["errors"]] == [("NOT_FOUND", "packageId")]
    assert (await plans.credit_packages(partner_viewer(other)))[0].name == "Theirs"
