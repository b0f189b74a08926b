"""The partner's monthly statement after a month of mixed activity (the platform funds its balance before and
during the month, clients buy platform plans it resells, one of them with a coupon and later a partial
refund, a renewal falls in the next month): its lines are its ledger entries added up, the month's movement
is the ledger's, and the same statement reads the same through GraphQL, the CSV (entry by entry) and the PDF."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from pypdf import PdfReader

from billing.accounts import statements, wallets
from billing.catalog import plans
from billing.core import clock, sql
from billing.core.money import Money
from billing.documents import coupons
from billing.sales import checkout, purchases, refunds
from billing.subscriptions import lifecycle, renewals
from billing.tenants import api_keys
from models.enums import BillingInterval, CouponDuration, CouponKind, MarginKind, PaymentMethodKind
from models.wallets import Wallet
from tests.factories import PLATFORM, a_partner, a_workspace, partner_viewer
from tests.graphql import GraphQLClient

pytestmark = pytest.mark.usefixtures("database")

STATEMENT = """query($month: String!) { partnerStatement(month: $month) { month currency reconciled
  openingBalance { amount } closingBalance { amount } movement { amount }
  lines { cause direction amount { amount } entryCount entries(first: 50) { nodes { id amount { amount } } } }
  clientMoney { paid { amount currency } payments refunded { amount } refunds } } }"""


async def at(moment: datetime) -> None:
    await clock.advance(moment - clock.now())


async def ledger_sum(wallet_id: int, start: datetime, end: datetime) -> int:
    rows = await sql.fetch(
        "SELECT COALESCE(SUM(amount), 0) AS total FROM ledger_entry WHERE wallet_id = $1 AND created_at >= $2"
        " AND created_at < $3",
        wallet_id,
        start,
        end,
    )
    return int(rows[0]["total"])


async def a_month_of_activity():
    partner = await a_partner("AiSensy")
    partner.default_currency = "BRL"
    await partner.save(update_fields=["default_currency"])
    viewer = partner_viewer(partner)
    family = await plans.create_plan_family(PLATFORM, name="Basic")
    plan = await plans.create_plan(
        PLATFORM, name="Basic Monthly", interval=BillingInterval.MONTHLY, price=Money(100_00, "BRL"), limits={},
        family_id=family.id,
    )  # fmt: skip
    await plans.set_margin(viewer, kind=MarginKind.PERCENTAGE, value=Decimal(20), family_id=family.id)
    await coupons.create(
        partner.id, code="HALF", name="half", kind=CouponKind.PERCENTAGE, percentage=Decimal(50),
        duration=CouponDuration.ONCE,
    )  # fmt: skip
    await at(datetime(2027, 2, 20, 12, tzinfo=UTC))
    await wallets.grant_partner_balance(
        PLATFORM, partner_id=partner.id, currency="BRL", amount=1000_00, note="February", idempotency_key="feb"
    )
    await at(datetime(2027, 3, 2, 9, tzinfo=UTC))
    first = await a_workspace(partner, "Loja")
    await lifecycle.assign_plan(viewer, workspace_id=first.id, plan_id=plan.id, note="", idempotency_key="assign")
    await at(datetime(2027, 3, 5, 9, tzinfo=UTC))
    second = await a_workspace(partner, "Padaria")
    bought = await checkout.checkout(
        viewer,
        workspace_id=second.id,
        item=checkout.Item(plan_id=plan.id),
        method=PaymentMethodKind.MANUAL,
        idempotency_key="buy",
        coupon_codes=["HALF"],
    )
    assert bought.payment is not None and bought.payment.amount == 60_00  # 120.00 with half off
    await purchases.record_payment(viewer, payment_id=bought.payment.id, note="pix", idempotency_key="paid")
    await at(datetime(2027, 3, 10, 9, tzinfo=UTC))
    await wallets.grant_partner_balance(
        PLATFORM, partner_id=partner.id, currency="BRL", amount=50_00, note="March", idempotency_key="mar"
    )
    await at(datetime(2027, 3, 20, 9, tzinfo=UTC))
    await refunds.refund_payment(
        viewer, payment_id=bought.payment.id, amount="10.00", reason="late", idempotency_key="refund"
    )
    await at(datetime(2027, 4, 2, 10, tzinfo=UTC))
    assert await renewals.run_due() >= 1  # the first client's renewal: April's
    return partner


async def test_the_statement_of_a_month_is_its_ledger_entries(server) -> None:
    partner = await a_month_of_activity()
    wallet = await Wallet.get(owner_key=f"PARTNER:{partner.id}", unit="BRL")
    march = await statements.monthly(PLATFORM, partner_id=partner.id, month="2027-03")
    start, end = datetime(2027, 3, 1, tzinfo=UTC), datetime(2027, 4, 1, tzinfo=UTC)
    # Funded 1,000.00 in February; in March the platform took its price of both plans (100.00 each, whatever
    # the partner charged or took off) and funded 50.00 more.
    assert (march.opening, march.closing) == (1000_00, 850_00)
    assert [(line.cause.value, line.credit, line.amount, line.entries) for line in march.lines] == [
        ("GRANT", True, 50_00, 1),
        ("PURCHASE", False, -200_00, 2),
    ]
    assert march.reconciled and march.movement == await ledger_sum(wallet.id, start, end) == -150_00
    assert [(c.currency, c.paid, c.payments, c.refunded, c.refunds) for c in march.client_money] == [
        ("BRL", 120_00 + 60_00, 2, 10_00, 1)  # the plan assigned by hand is recorded as paid by hand, in full
    ]
    april = await statements.monthly(PLATFORM, partner_id=partner.id, month="2027-04")
    assert april.opening == march.closing and april.reconciled
    assert april.movement == await ledger_sum(wallet.id, end, datetime(2027, 5, 1, tzinfo=UTC))

    key = (await api_keys.create_key(partner_id=partner.id)).secret
    shown = (await GraphQLClient(server.url, key).data(STATEMENT, {"month": "2027-03"}))["partnerStatement"]
    assert (shown["openingBalance"], shown["closingBalance"], shown["movement"], shown["reconciled"]) == (
        {"amount": "1000.00"},
        {"amount": "850.00"},
        {"amount": "-150.00"},
        True,
    )
    for line in shown["lines"]:  # each line is traceable: its entries add up to it
        entries = line["entries"]["nodes"]
        assert len(entries) == line["entryCount"]
        assert sum(Decimal(e["amount"]["amount"]) for e in entries) == Decimal(line["amount"]["amount"])

    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as http:
        got = await http.get("/reports/statement.csv", params={"month": "2027-03"})
        assert got.status_code == 200, got.text
        rows = list(csv.DictReader(io.StringIO(got.text)))
        entries = [row for row in rows if row["section"] == "entry"]
        ids = await sql.fetch(
            "SELECT id FROM ledger_entry WHERE wallet_id = $1 AND created_at >= $2 AND created_at < $3 ORDER BY id",
            wallet.id,
            start,
            end,
        )
        assert [int(row["entry_id"]) for row in entries] == [r["id"] for r in ids]
        opening, closing = (Decimal(row["balance_after"]) for row in rows if row["section"] in ("opening", "closing"))
        assert opening + sum(Decimal(row["amount"]) for row in entries) == closing == Decimal("850.00")
        assert entries[-1]["balance_after"] == "850.00"

        printed = await http.get("/reports/statement.pdf", params={"month": "2027-03", "language": "en"})
        assert printed.status_code == 200 and printed.headers["content-type"] == "application/pdf"
        text = PdfReader(io.BytesIO(printed.content)).pages[0].extract_text()
        for expected in ("AiSensy", "Statement 2027-03 (BRL)", "Opening balance BRL 1,000.00", "Grants (in, 1 entries)",
                         "Purchases (out, 2 entries) -BRL 200.00", "Closing balance BRL 850.00",
                         "Reconciled with the ledger"):  # fmt: skip
            assert expected in text, (expected, text)
        refused = await http.get("/reports/statement.pdf", params={"month": "2027-13"})
        assert refused.status_code == 400
