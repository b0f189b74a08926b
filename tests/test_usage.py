"""Flow D (AiSensy): WhatsApp rate cards, project credit, usage ingestion, month report and CSV.

Through a real server: the platform sets its rates, the partner its margin, the partner assigns credit
to a project (the centralised balance does not move), the platform's product reports 1,000 delivered
marketing messages to +55 numbers (GraphQL and the plain JSON endpoint): the project pays the partner
rate, the balance the platform rate, each event rounded once, half-even; the month report and the
CSV add up to the ledger to the cent; a replayed batch charges nothing."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.catalog import rate_cards
from billing.core import clock
from billing.tenants import api_keys
from billing.usage import exact_amounts, whatsapp
from billing.usage.exact_amounts import FINE, HALF
from models.enums import MarginKind, OwnerKind, Permission, UsageCreditPolicy
from models.subscriptions import UsageEvent
from models.tenancy import Partner, Project
from models.wallets import LedgerEntry, Posting, Wallet
from schema.ids import to_global_id
from tests.factories import PLATFORM, a_partner, a_workspace
from tests.graphql import GraphQLClient
from tests.test_realtime import BALANCE, live
from whitebill.settings import configure_domain, load_settings

pytestmark = pytest.mark.usefixtures("database")

RATES = """mutation($cells: [RateCellInput!]!) { setPlatformRates(input: {currency: "BRL", cells: $cells}) {
  rateCard { currency cells(first: 100) { nodes { country category platformPrice partnerPrice } } }
  errors { code field message } } }"""
MARGIN = """mutation($input: SetRateMarginInput!) { setRateMargin(input: $input) {
  rateCard { cells(first: 100) { nodes { country category platformPrice partnerPrice } }
             margins { kind value country category } }
  errors { code field message } } }"""
ASSIGN = """mutation($project: ID!, $amount: String!, $key: String!) {
  assignProjectCredit(input: {projectId: $project, amount: $amount, idempotencyKey: $key}) {
    wallet { unit balance { amount } } errors { code field message } } }"""
POLICY = """mutation($policy: UsageCreditPolicy!) { setUsageCreditPolicy(input: {policy: $policy}) {
  partner { usageCreditPolicy } errors { code } } }"""
REPORT = """mutation($events: [UsageEventInput!]!) { reportUsageEvents(input: {events: $events}) {
  results { eventId status country partnerAmount { amount currency } platformAmount { amount } reason message }
  errors { code field message } } }"""
MONTHS = """query($project: ID!) { node(id: $project) { ... on Project {
  usageByMonth { month category events messages freeMessages partnerAmount { amount currency }
                 platformAmount { amount } } } } }"""
CREDIT_LIMIT = """mutation($wallet: ID!, $limit: String!) {
  setWalletCreditLimit(input: {walletId: $wallet, creditLimit: $limit}) { errors { code message } } }"""

# Brazil, marketing: R$ 0.3125 per message from the platform; the partner adds 20 %: R$ 0.375.
PLATFORM_BR_MARKETING = Decimal("0.3125")
MARGIN_PERCENT = Decimal(20)


async def setup(server) -> dict:
    partner = await a_partner("AiSensy")
    partner.default_currency = "BRL"
    await partner.save(update_fields=["default_currency"])
    workspace = await a_workspace(partner, name="Loja")
    project = await Project.create(partner_id=partner.id, workspace_id=workspace.id, name="WhatsApp", is_default=False)
    platform = GraphQLClient(server.url, (await api_keys.create_key(partner_id=None, name="operator")).secret)
    agency = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    product_key = (
        await api_keys.create_key(partner_id=None, name="product", permissions=frozenset({Permission.REPORT_USAGE}))
    ).secret
    product = GraphQLClient(server.url, product_key)
    rates = await platform.data(
        RATES,
        {
            "cells": [
                {"country": "BR", "category": "MARKETING", "price": str(PLATFORM_BR_MARKETING)},
                {"country": "BR", "category": "UTILITY", "price": "0.0400"},
                {"country": "BR", "category": "AUTHENTICATION", "price": "0.0315"},
                {"country": "*", "category": "MARKETING", "price": "0.6000"},
            ]
        },
    )
    assert rates["setPlatformRates"]["errors"] == []
    margin = await agency.data(MARGIN, {"input": {"kind": "PERCENTAGE", "value": str(MARGIN_PERCENT)}})
    assert margin["setRateMargin"]["errors"] == []
    br = next(
        c
        for c in margin["setRateMargin"]["rateCard"]["cells"]["nodes"]
        if c["country"] == "BR" and c["category"] == "MARKETING"
    )
    assert (br["platformPrice"], br["partnerPrice"]) == ("0.3125", "0.375")
    # The platform funds the partner's centralised balance; the partner gives the project R$ 500 of credit.
    central = await Wallet.create(
        partner_id=partner.id, owner_kind=OwnerKind.PARTNER, owner_key=f"PARTNER:{partner.id}", unit="BRL"
    )
    grant = """mutation($p: ID!, $key: String!) { grantPartnerBalance(input: {partnerId: $p, currency: "BRL",
      amount: "1000.00", note: "prepaid", idempotencyKey: $key}) { errors { code } } }"""
    funded = await platform.data(grant, {"p": to_global_id("Partner", partner.id), "key": f"fund-{partner.id}"})
    assert funded["grantPartnerBalance"]["errors"] == []
    return {
        "partner": partner,
        "project": project,
        "gid": to_global_id("Project", project.id),
        "platform": platform,
        "agency": agency,
        "product": product,
        "product_key": product_key,
        "central": central,
        "server": server,
    }


async def test_a_refused_cell_is_named_by_its_place_in_the_input(server) -> None:
    platform = GraphQLClient(server.url, (await api_keys.create_key(partner_id=None, name="operator")).secret)
    good = {"country": "BR", "category": "MARKETING", "price": "0.0125"}
    too_precise = await platform.data(RATES, {"cells": [good, good, good, {**good, "price": "0.123456789"}]})
    assert too_precise["setPlatformRates"]["rateCard"] is None
    assert [(e["code"], e["field"]) for e in too_precise["setPlatformRates"]["errors"]] == [
        ("INVALID_AMOUNT", "cells[3].price")
    ]
    unknown = await platform.data(RATES, {"cells": [good, {**good, "country": "XX"}]})
    assert [(e["code"], e["field"]) for e in unknown["setPlatformRates"]["errors"]] == [
        ("INVALID_INPUT", "cells[1].country")
    ]
    # Nothing of a refused call is kept.
    card = await platform.data('{ rateCard(currency: "BRL") { cells { nodes { country } } } }')
    assert card["rateCard"]["cells"]["nodes"] == []


CARD = """query($first: Int, $after: String) { rateCard {
  cells(first: $first, after: $after) { nodes { country category partnerPrice } pageInfo { hasNextPage endCursor } }
  margins { kind value country category } } }"""


async def test_rate_margins_read_back_and_the_cells_page(server) -> None:
    flow = await setup(server)
    agency = flow["agency"]
    bulk = {"kind": "PERCENTAGE", "value": "20", "country": None, "category": None}
    cell = {"kind": "FIXED", "value": "0.05", "country": "BR", "category": "MARKETING"}
    set_cell = await agency.data(
        MARGIN, {"input": {"kind": "FIXED", "value": "0.05", "country": "BR", "category": "MARKETING"}}
    )
    assert set_cell["setRateMargin"]["rateCard"]["margins"] == [bulk, cell]
    # Four cells, two per page, in country and category order; the cell margin wins over the bulk one.
    first = (await agency.data(CARD, {"first": 2}))["rateCard"]
    assert first["margins"] == [bulk, cell]
    assert first["cells"]["pageInfo"]["hasNextPage"] is True
    rest = (await agency.data(CARD, {"first": 2, "after": first["cells"]["pageInfo"]["endCursor"]}))["rateCard"]
    assert rest["cells"]["pageInfo"]["hasNextPage"] is False
    assert [
        (c["country"], c["category"], c["partnerPrice"]) for c in first["cells"]["nodes"] + rest["cells"]["nodes"]
    ] == [
        ("*", "MARKETING", "0.72"),
        ("BR", "AUTHENTICATION", "0.0378"),
        ("BR", "MARKETING", "0.3625"),  # 0.3125 + 0.05
        ("BR", "UTILITY", "0.048"),
    ]
    # Removing a margin (no kind) removes it from the read-back too: the cell's, then the bulk one.
    removed = await agency.data(MARGIN, {"input": {"kind": None, "country": "BR", "category": "MARKETING"}})
    assert removed["setRateMargin"]["rateCard"]["margins"] == [bulk]
    await agency.data(MARGIN, {"input": {"kind": None}})
    assert (await agency.data(CARD))["rateCard"]["margins"] == []
    # The platform's own card has no margins.
    platform_card = await flow["platform"].data('{ rateCard(currency: "BRL") { margins { kind } } }')
    assert platform_card["rateCard"]["margins"] == []


async def test_the_usage_credit_policy_reads_back_as_its_enum(server) -> None:
    flow = await setup(server)
    read = "{ viewer { partner { usageCreditPolicy } } }"
    assert (await flow["agency"].data(read))["viewer"]["partner"] == {"usageCreditPolicy": "REFUSE"}
    allowed = await flow["agency"].data(POLICY, {"policy": "ALLOW_TO_CREDIT_LIMIT"})
    assert allowed["setUsageCreditPolicy"] == {
        "partner": {"usageCreditPolicy": "ALLOW_TO_CREDIT_LIMIT"},
        "errors": [],
    }
    assert (await flow["agency"].data(read))["viewer"]["partner"] == {"usageCreditPolicy": "ALLOW_TO_CREDIT_LIMIT"}
    row = await Partner.get(id=flow["partner"].id)
    assert row.usage_credit_policy is UsageCreditPolicy.ALLOW_TO_CREDIT_LIMIT
    # The platform names the partner.
    by_platform = await flow["platform"].data(
        """mutation($p: ID!) { setUsageCreditPolicy(input: {policy: REFUSE, partnerId: $p}) {
          partner { usageCreditPolicy } errors { code } } }""",
        {"p": to_global_id("Partner", flow["partner"].id)},
    )
    assert by_platform["setUsageCreditPolicy"]["partner"] == {"usageCreditPolicy": "REFUSE"}
    assert (await Partner.get(id=flow["partner"].id)).usage_credit_policy is UsageCreditPolicy.REFUSE


async def balance(wallet_id: int) -> int:
    return (await Wallet.get(id=wallet_id)).balance


def events(gid: str, n: int, *, prefix: str, when: datetime, **extra) -> list[dict]:
    return [
        {
            "projectId": gid,
            "eventId": f"{prefix}-{i}",
            "category": "MARKETING",
            "occurredAt": when.isoformat(),
            "recipient": f"+55 11 9{i:08d}",
            **extra,
        }
        for i in range(n)
    ]


def exact(row: UsageEvent, which: str) -> int:
    """A stored event's exact amount in fine units."""
    return getattr(row, f"{which}_amount") * FINE + getattr(row, f"{which}_fraction")


async def usage_adds_up(wallet_id: int) -> None:
    """The wallet's usage entries and its usage remainder add up to its charged events' exact amounts, and
    the remainder is under half a minor unit."""
    wallet = await Wallet.get(id=wallet_id)
    moved = -sum(e.amount for e in await LedgerEntry.filter(wallet_id=wallet_id, cause="USAGE"))
    column = "platform" if wallet.owner_kind == "PARTNER" else "charged"
    events = (
        UsageEvent.filter(project_id=wallet.project_id)
        if wallet.project_id
        else UsageEvent.filter(partner_id=wallet.partner_id, currency=wallet.unit)
    )
    total = sum(exact(row, column) for row in await events)
    assert total == moved * FINE + wallet.usage_remainder
    assert -HALF <= wallet.usage_remainder < HALF


def expected(count: int, rate: Fraction) -> int:
    """The slow exact reference: count x rate in centavos, rounded half-even."""
    return round(Fraction(count) * rate * 100)  # Fraction rounds half to even


async def test_aisensy_flow_through_graphql_and_http(server) -> None:
    flow = await setup(server)
    gid, agency, product = flow["gid"], flow["agency"], flow["product"]
    central_before = await balance(flow["central"].id)

    assigned = await agency.data(ASSIGN, {"project": gid, "amount": "500.00", "key": "wcc-1"})
    assert assigned["assignProjectCredit"]["errors"] == []
    assert assigned["assignProjectCredit"]["wallet"]["balance"]["amount"] == "500.00"
    assert await balance(flow["central"].id) == central_before, "assigning credit leaves the balance untouched"
    project_wallet = await Wallet.get(owner_key=f"PROJECT:{flow['project'].id}", unit="BRL")

    when = clock.now()
    month = when.strftime("%Y-%m")
    # 500 through GraphQL, 500 through the JSON endpoint.
    first = await product.data(REPORT, {"events": events(gid, 500, prefix="g", when=when)})
    results = first["reportUsageEvents"]["results"]
    assert {r["status"] for r in results} == {"CHARGED"} and {r["country"] for r in results} == {"BR"}
    partner_rate = Fraction(PLATFORM_BR_MARKETING) * (1 + Fraction(MARGIN_PERCENT) / 100)
    assert results[0]["partnerAmount"] == {"amount": "0.375", "currency": "BRL"}  # exact, not rounded alone
    assert results[0]["platformAmount"] == {"amount": "0.3125"}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        answer = await http.post(
            "/usage",
            json={"events": events(gid, 500, prefix="h", when=when)},
            headers={"Authorization": f"Bearer {flow['product_key']}"},
        )
        assert answer.status_code == 200, answer.text
        assert {r["status"] for r in answer.json()["results"]} == {"CHARGED"}
        # Replaying either batch charges nothing: every event is a duplicate.
        replay = await http.post(
            "/usage",
            json={"events": events(gid, 500, prefix="g", when=when)},
            headers={"Authorization": f"Bearer {flow['product_key']}"},
        )
        assert {r["status"] for r in replay.json()["results"]} == {"DUPLICATE"}
        assert {r["partnerAmount"] for r in replay.json()["results"]} == {"0.00"}

    # 1,000 x 0.375 and 1,000 x 0.3125, exactly: the running totals are rounded once, not each event.
    assert expected(1000, partner_rate) == 375_00
    assert await balance(project_wallet.id) == 500_00 - 375_00
    assert await balance(flow["central"].id) == central_before - 312_50

    # The ledger: every event points at a posting, whose entry on each wallet moves its events' exact sum
    # to within a minor unit; each wallet's usage entries and remainder add up to its events exactly.
    rows = await UsageEvent.filter(project_id=flow["project"].id)
    assert len(rows) == 1000
    for posting_id in {r.posting_id for r in rows}:
        assert posting_id is not None
        mine = [r for r in rows if r.posting_id == posting_id]
        entries = {e.wallet_id: e.amount for e in await LedgerEntry.filter(posting_id=posting_id)}
        assert abs(entries[project_wallet.id] * FINE + sum(exact(r, "charged") for r in mine)) < FINE
        assert abs(entries[flow["central"].id] * FINE + sum(exact(r, "platform") for r in mine)) < FINE
        assert (await Posting.get(id=posting_id)).cause == "USAGE"
    await usage_adds_up(project_wallet.id)
    await usage_adds_up(flow["central"].id)

    # The month report and the CSV agree with the ledger to the cent.
    months = (await agency.data(MONTHS, {"project": gid}))["node"]["usageByMonth"]
    assert months == [
        {
            "month": month,
            "category": "MARKETING",
            "events": 1000,
            "messages": "1000",
            "freeMessages": "0",
            "partnerAmount": {"amount": "375.00", "currency": "BRL"},
            "platformAmount": {"amount": "312.50"},
        }
    ]
    usage_entries = await LedgerEntry.filter(wallet_id=flow["central"].id, cause="USAGE")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        download = await http.get(
            "/reports/wcc-deductions.csv",
            params={"month": month},
            headers={"Authorization": f"Bearer {agency.token}"},
        )
    assert download.status_code == 200, download.text
    lines = list(csv.DictReader(io.StringIO(download.text)))
    assert len(lines) == 1000
    assert sum(Decimal(line["platform_amount"]) for line in lines) * 100 == -sum(e.amount for e in usage_entries)
    assert sum(Decimal(line["partner_amount"]) for line in lines) == Decimal("375.00")


async def test_free_windows_are_recorded_not_charged(server) -> None:
    flow = await setup(server)
    await flow["agency"].data(ASSIGN, {"project": flow["gid"], "amount": "10.00", "key": "k"})
    when = clock.now()
    batch = [
        {"projectId": flow["gid"], "eventId": "svc", "category": "SERVICE", "occurredAt": when.isoformat(),
         "country": "BR"},
        {"projectId": flow["gid"], "eventId": "util-in", "category": "UTILITY", "occurredAt": when.isoformat(),
         "country": "BR", "window": "CUSTOMER_SERVICE"},
        {"projectId": flow["gid"], "eventId": "entry", "category": "MARKETING", "occurredAt": when.isoformat(),
         "country": "BR", "window": "FREE_ENTRY"},
        {"projectId": flow["gid"], "eventId": "util-out", "category": "UTILITY", "occurredAt": when.isoformat(),
         "country": "BR", "count": 3},
        {"projectId": flow["gid"], "eventId": "ar", "category": "MARKETING", "occurredAt": when.isoformat(),
         "recipient": "+54 9 11 5555 0000"},
        {"projectId": flow["gid"], "eventId": "no-rate", "category": "AUTHENTICATION_INTERNATIONAL",
         "occurredAt": when.isoformat(), "country": "BR"},
        {"projectId": flow["gid"], "eventId": "svc", "category": "SERVICE", "occurredAt": when.isoformat(),
         "country": "BR"},
    ]  # fmt: skip
    results = (await flow["product"].data(REPORT, {"events": batch}))["reportUsageEvents"]["results"]
    got = [
        (r["eventId"], r["status"], r["partnerAmount"] and r["partnerAmount"]["amount"], r["reason"]) for r in results
    ]
    assert got == [
        ("svc", "FREE", "0.00", None),
        ("util-in", "FREE", "0.00", None),
        ("entry", "FREE", "0.00", None),
        ("util-out", "CHARGED", "0.144", None),  # 3 x 0.048, exact
        ("ar", "CHARGED", "0.72", None),  # Argentina: the rest-of-world cell, 0.60 + 20 %
        ("no-rate", "REFUSED", None, "NO_RATE"),
        ("svc", "DUPLICATE", None, None),
    ]
    stored = {e.event_id: e for e in await UsageEvent.filter(partner_id=flow["partner"].id)}
    assert set(stored) == {"svc", "util-in", "entry", "util-out", "ar"}
    assert stored["svc"].free and stored["svc"].charged_amount == 0
    assert stored["ar"].country == "AR"


async def test_credit_runs_out_refuse_or_allow_to_credit_limit(server) -> None:
    flow = await setup(server)
    gid = flow["gid"]
    await flow["agency"].data(ASSIGN, {"project": gid, "amount": "1.00", "key": "k1"})
    when = clock.now()
    # 0.375 each: the running total 0.375, 0.75 (0.38 then 0.75 moved) fits in R$ 1.00; at 1.125 the third
    # and fourth are refused (hard stop, the default).
    results = (await flow["product"].data(REPORT, {"events": events(gid, 4, prefix="a", when=when)}))[
        "reportUsageEvents"
    ]["results"]
    assert [r["status"] for r in results] == ["CHARGED", "CHARGED", "REFUSED", "REFUSED"]
    assert results[2]["reason"] == "INSUFFICIENT_CREDIT"
    wallet = await Wallet.get(owner_key=f"PROJECT:{flow['project'].id}")
    assert (wallet.balance, wallet.usage_remainder) == (25, 0)
    # Refused events are not kept: sent again once there is credit, they are charged.
    await flow["agency"].data(POLICY, {"policy": "ALLOW_TO_CREDIT_LIMIT"})
    limit = await flow["agency"].data(CREDIT_LIMIT, {"wallet": to_global_id("Wallet", wallet.id), "limit": "0.40"})
    assert limit["setWalletCreditLimit"]["errors"] == []
    again = (await flow["product"].data(REPORT, {"events": events(gid, 4, prefix="a", when=when)}))[
        "reportUsageEvents"
    ]["results"]
    assert [r["status"] for r in again] == ["DUPLICATE", "DUPLICATE", "CHARGED", "REFUSED"]
    # 1.125 moves 1.13 in all: -0.13, within the limit of 0.40; at 1.50 the fourth would be -0.50.
    assert (await Wallet.get(id=wallet.id)).balance == 25 - 38
    # The partner's own balance has a limit too, set by the platform.
    central = flow["central"]
    assert (await Wallet.get(id=central.id)).balance == 1000_00 - 94  # 3 x 0.3125 = 0.9375


async def test_partner_balance_at_its_limit_refuses_usage(server) -> None:
    flow = await setup(server)
    gid = flow["gid"]
    await flow["agency"].data(ASSIGN, {"project": gid, "amount": "100.00", "key": "k1"})
    # Leave R$ 0.63 in the centralised balance: two messages at 0.3125 (0.625, moved as 0.63).
    central = flow["central"]
    debit = await Wallet.get(id=central.id)
    from billing.accounts import ledger
    from billing.accounts.ledger import Leg
    from models.enums import ExternalAccount, LedgerCause

    await ledger.post(
        [Leg(debit.balance - 63, "BRL", central.id, ExternalAccount.PLATFORM_REVENUE)], cause=LedgerCause.ADJUSTMENT
    )
    results = (await flow["product"].data(REPORT, {"events": events(gid, 3, prefix="b", when=clock.now())}))[
        "reportUsageEvents"
    ]["results"]
    assert [r["status"] for r in results] == ["CHARGED", "CHARGED", "REFUSED"]
    assert results[2]["reason"] == "PARTNER_BALANCE_INSUFFICIENT"
    assert (await Wallet.get(id=central.id)).balance == 0


async def test_concurrent_senders_and_replays_charge_each_event_once(server) -> None:
    flow = await setup(server)
    gid = flow["gid"]
    await flow["agency"].data(ASSIGN, {"project": gid, "amount": "900.00", "key": "k1"})
    when = clock.now()
    batches = [events(gid, 200, prefix=f"c{i % 3}", when=when) for i in range(9)]  # each batch three times
    for i in range(0, 9, 2):  # some in the opposite order: senders that wait on each other's events
        batches[i] = batches[i][::-1]

    async def send(batch: list[dict]) -> list[dict]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            answer = await http.post(
                "/usage", json={"events": batch}, headers={"Authorization": f"Bearer {flow['product_key']}"}
            )
            assert answer.status_code == 200, answer.text
            return answer.json()["results"]

    answers = await asyncio.gather(*(send(b) for b in batches))
    charged = sum(1 for a in answers for r in a if r["status"] == "CHARGED")
    assert charged == 600
    assert await UsageEvent.filter(project_id=flow["project"].id).count() == 600
    wallet = await Wallet.get(owner_key=f"PROJECT:{flow['project'].id}")
    assert wallet.balance == 900_00 - 225_00  # 600 x 0.375
    entries = await LedgerEntry.filter(wallet_id=wallet.id)
    assert sum(e.amount for e in entries) == wallet.balance


async def test_only_the_platforms_product_reports_usage_and_bad_input_is_typed(server) -> None:
    flow = await setup(server)
    body = {"events": events(flow["gid"], 1, prefix="x", when=clock.now())}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await http.post("/usage", json=body)).status_code == 401
        as_partner = await http.post("/usage", json=body, headers={"Authorization": f"Bearer {flow['agency'].token}"})
        assert as_partner.status_code == 403
        auth = {"Authorization": f"Bearer {flow['product_key']}"}
        bad = await http.post("/usage", json={"events": [{**body["events"][0], "count": "1"}]}, headers=auth)
        assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "events[0].count"
        zero = await http.post("/usage", json={"events": [{**body["events"][0], "count": 0}]}, headers=auth)
        assert zero.json()["results"][0]["reason"] == "INVALID_EVENT"  # that event alone, as GraphQL does
        unknown = await http.post("/usage", json={"events": [{**body["events"][0], "extra": 1}]}, headers=auth)
        assert unknown.status_code == 400
        naive = await http.post(
            "/usage", json={"events": [{**body["events"][0], "occurredAt": "2026-12-02T10:00:00"}]}, headers=auth
        )
        assert naive.status_code == 400
        too_many = await http.post("/usage", json={"events": body["events"] * 1001}, headers=auth)
        assert too_many.status_code == 400
        not_json = await http.post("/usage", content=b"{", headers=auth)
        assert not_json.status_code == 400
        other = await http.post(
            "/usage",
            json={"events": [{**body["events"][0], "projectId": to_global_id("Workspace", 1)}]},
            headers=auth,
        )
        assert other.json()["results"][0]["reason"] == "PROJECT_NOT_FOUND"
        csv_as_product = await http.get("/reports/wcc-deductions.csv", params={"month": "2026-13"}, headers=auth)
        assert csv_as_product.status_code == 400
    as_partner_gql = await flow["agency"].data(REPORT, {"events": body["events"]})
    assert as_partner_gql["reportUsageEvents"]["errors"][0]["code"] == "FORBIDDEN"


async def test_an_event_id_with_a_control_character_is_refused_alone_the_same_on_both_backends(server) -> None:
    flow = await setup(server)
    assigned = await flow["agency"].data(ASSIGN, {"project": flow["gid"], "amount": "10.00", "key": "ctl"})
    assert assigned["assignProjectCredit"]["errors"] == []
    batch = events(flow["gid"], 4, prefix="ctl", when=clock.now())
    batch[1]["eventId"] = "nul\x00id"
    batch[2]["eventId"] = "line\nbreak"
    auth = {"Authorization": f"Bearer {flow['product_key']}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        # NUL, which no database stores, refuses the request at the boundary, as /graphql does.
        refused = await http.post("/usage", json={"events": batch}, headers=auth)
        assert refused.status_code == 400, refused.text
        assert refused.json()["errors"] == [
            {
                "code": "INVALID_INPUT",
                "message": "Strings must not contain NUL characters",
                "field": "events[1].eventId",
            }
        ]
        batch[1]["eventId"] = "tab\tid"
        answer = await http.post("/usage", json={"events": batch}, headers=auth)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [(r["status"], r["reason"]) for r in results] == [
        ("CHARGED", None),
        ("REFUSED", "INVALID_EVENT"),
        ("REFUSED", "INVALID_EVENT"),
        ("CHARGED", None),
    ]
    # Past the boundary, the domain still refuses a NUL alone: it would fail the whole batch's statement on
    # PostgreSQL (SQLite stores it).
    [alone, fine] = await whatsapp.report(
        PLATFORM,
        [
            whatsapp.UsageIn(flow["project"].id, "nul\x00", "MARKETING", clock.now(), country="BR"),
            whatsapp.UsageIn(flow["project"].id, "ctl-4", "MARKETING", clock.now(), country="BR"),
        ],
    )
    assert (alone.status, alone.reason, fine.status) == (
        whatsapp.Status.REFUSED,
        whatsapp.Reason.INVALID_EVENT,
        whatsapp.Status.CHARGED,
    )
    stored = await UsageEvent.filter(project_id=flow["project"].id).order_by("id").values_list("event_id", flat=True)
    assert stored == ["ctl-0", "ctl-3", "ctl-4"]


def test_usage_amounts_are_exact_in_fine_units_and_written_with_every_decimal_they_have() -> None:
    rate = Fraction(Decimal("0.0785"))
    for count in (1, 2, 3, 7, 10, 333, 1000, 999_999):
        assert exact_amounts.charge_fine(count, rate, "BRL") == count * 785 * 10**8  # 7.85 minor units
    assert (
        exact_amounts.format_fine(exact_amounts.charge_fine(1, Fraction(Decimal("0.0625")), "BRL"), "BRL") == "0.0625"
    )
    assert exact_amounts.format_fine(exact_amounts.charge_fine(2, Fraction(Decimal("0.4")), "BRL"), "BRL") == "0.80"
    assert (
        exact_amounts.format_fine(exact_amounts.charge_fine(3, Fraction(Decimal("0.0125")), "JPY"), "JPY") == "0.0375"
    )
    assert exact_amounts.format_fine(exact_amounts.charge_fine(7, Fraction(5), "JPY"), "JPY") == "35"
    assert (
        exact_amounts.format_fine(exact_amounts.charge_fine(1, Fraction(Decimal("0.0001")), "KWD"), "KWD") == "0.0001"
    )
    assert exact_amounts.format_fine(-FINE, "BRL") == "-0.01"
    with pytest.raises(ValueError, match="more than 10 decimals"):
        exact_amounts.charge_fine(1, Fraction(1, 3), "BRL")


def test_a_running_total_moves_whole_minor_units_rounded_half_up_once() -> None:
    # 0.375 a message: 37.5 minor units moves 38 (half up), then 37, 38, 37...; the remainder stays in [-1/2, 1/2).
    step = 375 * FINE // 10
    remainder, moved = 0, []
    for _ in range(4):
        whole, remainder = exact_amounts.carry(remainder, step)
        moved.append(whole)
        assert -HALF <= remainder < HALF
    assert moved == [38, 37, 38, 37] and remainder == 0
    assert exact_amounts.carry(0, HALF - 1) == (0, HALF - 1)
    assert exact_amounts.carry(-HALF, 0) == (0, -HALF)


@settings(max_examples=300, deadline=None)
@given(
    rate=st.decimals(min_value=0, max_value=100, places=8, allow_nan=False, allow_infinity=False),
    margin=st.one_of(
        st.none(),
        st.tuples(st.just(MarginKind.PERCENTAGE), st.decimals(min_value=0, max_value=1000, places=8)),
        st.tuples(st.just(MarginKind.FIXED), st.decimals(min_value=0, max_value=10, places=8)),
    ),
    count=st.integers(min_value=1, max_value=1_000_000),
    currency=st.sampled_from(["BRL", "JPY", "KWD"]),
)
def test_rate_card_charges_match_a_slow_exact_decimal_reference(rate, margin, count, currency) -> None:
    """A partner's rate is the platform's with its margin, rounded once to 10 decimals, half-even; an
    event's amount is count x that rate, exactly."""
    kind, value = margin if margin else (None, None)
    partner_rate = rate_cards.kept(rate_cards.with_margin(Fraction(rate), kind, value))
    exact = localcontext()
    with exact as ctx:
        ctx.prec = 100
        if kind is MarginKind.PERCENTAGE:
            reference_rate = rate * (1 + value / 100)
        elif kind is MarginKind.FIXED:
            reference_rate = rate + value
        else:
            reference_rate = rate
        reference_rate = reference_rate.quantize(Decimal(1).scaleb(-10), rounding=ROUND_HALF_EVEN)
        digits = {"JPY": 0, "KWD": 3}.get(currency, 2)
        reference = (count * reference_rate).scaleb(digits + 10)
    assert reference == reference.to_integral_value()
    assert exact_amounts.charge_fine(count, partner_rate, currency) == int(reference)


async def test_a_subscriber_to_the_project_credit_hears_each_batch(server) -> None:
    flow = await setup(server)
    assigned = await flow["agency"].data(ASSIGN, {"project": flow["gid"], "amount": "10.00", "key": "k"})
    assert assigned["assignProjectCredit"]["errors"] == []
    wallet = await Wallet.get(owner_key=f"PROJECT:{flow['project'].id}")
    async with live(server, BALANCE, {"w": to_global_id("Wallet", wallet.id)}, token=flow["agency"].token) as sees:
        assert (await sees.next())["walletBalanceChanged"]["balance"]["amount"] == "10.00"
        sent = await flow["product"].data(REPORT, {"events": events(flow["gid"], 2, prefix="rt", when=clock.now())})
        assert [r["status"] for r in sent["reportUsageEvents"]["results"]] == ["CHARGED", "CHARGED"]
        assert (await sees.next())["walletBalanceChanged"]["balance"]["amount"] == "9.25"  # 2 x 0.375


REPORT_CHECKED = """mutation($events: [UsageEventInput!]!) { reportUsageEvents(input: {events: $events}) {
  results { eventId status } errors { code field } } }"""


async def test_usage_dated_outside_the_reported_months_is_refused_before_any_charge(server) -> None:
    """Events dated 0001-01-01 or 9999-12-31 were charged, and no month report or CSV (years 2000 to
    9998) ever showed them. occurredAt lies from the start of the previous UTC month to 5 minutes past
    now; otherwise the whole batch is refused with INVALID_EVENT naming the event, in GraphQL and /usage."""
    flow = await setup(server)
    gid, product = flow["gid"], flow["product"]
    await flow["agency"].data(ASSIGN, {"project": gid, "amount": "500.00", "key": "wcc-window"})
    project_wallet = await Wallet.get(owner_key=f"PROJECT:{flow['project'].id}", unit="BRL")
    central_before = await balance(flow["central"].id)
    now = clock.now().astimezone(UTC)
    previous_month = datetime(now.year - (now.month == 1), (now.month - 2) % 12 + 1, 1, tzinfo=UTC)

    def batch(prefix: str, odd_one: datetime) -> list[dict]:
        good = events(gid, 1, prefix=prefix, when=now)
        odd = events(gid, 1, prefix=prefix + "-odd", when=odd_one)
        return good + odd

    auth = {"Authorization": f"Bearer {flow['product_key']}"}
    for prefix, odd_one in (
        ("ancient", datetime(1, 1, 1, tzinfo=UTC)),
        ("far-future", datetime(9999, 12, 31, 23, 59, tzinfo=UTC)),
        ("just-before", previous_month - timedelta(microseconds=1)),
        ("too-soon", now + timedelta(minutes=6)),
    ):
        refused = (await product.data(REPORT_CHECKED, {"events": batch(prefix, odd_one)}))["reportUsageEvents"]
        assert refused == {"results": [], "errors": [{"code": "INVALID_EVENT", "field": "events[1].occurredAt"}]}
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            answer = await http.post("/usage", json={"events": batch(prefix, odd_one)}, headers=auth)
        assert answer.status_code == 400, prefix
        assert [(e["code"], e["field"]) for e in answer.json()["errors"]] == [("INVALID_EVENT", "events[1].occurredAt")]
    assert await UsageEvent.filter(project_id=flow["project"].id).count() == 0
    assert await balance(project_wallet.id) == 500_00
    assert await balance(flow["central"].id) == central_before

    # The window's edges are in: the first instant of the previous month, and a clock 4 minutes fast.
    inside = (await product.data(REPORT_CHECKED, {"events": batch("edges", previous_month)}))["reportUsageEvents"]
    assert [r["status"] for r in inside["results"]] == ["CHARGED", "CHARGED"] and inside["errors"] == []
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        fast = await http.post("/usage", json={"events": batch("fast", now + timedelta(minutes=4))}, headers=auth)
    assert [r["status"] for r in fast.json()["results"]] == ["CHARGED", "CHARGED"]


def test_the_usage_window_is_set_by_the_environment(monkeypatch) -> None:
    """WHITEBILL_USAGE_MONTHS_BACK and WHITEBILL_USAGE_MAX_AHEAD_SECONDS reach the domain through the settings."""
    monkeypatch.setenv("WHITEBILL_USAGE_MONTHS_BACK", "0")
    monkeypatch.setenv("WHITEBILL_USAGE_MAX_AHEAD_SECONDS", "60")
    configure_domain(load_settings())
    now = datetime(2027, 3, 1, 0, 30, tzinfo=UTC)
    assert whatsapp.occurred_window(now) == (datetime(2027, 3, 1, tzinfo=UTC), now + timedelta(seconds=60))
    monkeypatch.setenv("WHITEBILL_USAGE_MONTHS_BACK", "2")
    configure_domain(load_settings())
    assert whatsapp.occurred_window(now)[0] == datetime(2027, 1, 1, tzinfo=UTC)
    january = datetime(2027, 1, 15, tzinfo=UTC)
    assert whatsapp.occurred_window(january)[0] == datetime(2026, 11, 1, tzinfo=UTC)  # across the year
    monkeypatch.setenv("WHITEBILL_USAGE_MONTHS_BACK", "-1")
    with pytest.raises(ValueError, match="WHITEBILL_USAGE_MONTHS_BACK"):
        load_settings()


async def both_paths(flow: dict, batch: list[dict], http_batch: list[dict] | None = None) -> tuple[dict, dict]:
    """The same batch through reportUsageEvents and POST /usage (``http_batch`` if given: the same events
    under other ids): each answer reduced to what it decided, per event (status, reason) or for the whole
    batch (code, field)."""
    graphql = await flow["product"].post(REPORT, {"events": batch})
    body = graphql.json()
    if body.get("data") and body["data"]["reportUsageEvents"]["results"]:
        by_graphql = {"events": [(r["status"], r["reason"]) for r in body["data"]["reportUsageEvents"]["results"]]}
    elif body.get("data"):
        by_graphql = {"batch": [(e["code"], e["field"]) for e in body["data"]["reportUsageEvents"]["errors"]]}
    else:  # refused before execution: a variable of the wrong shape
        by_graphql = {"batch": [("INVALID_INPUT", None)]}
    async with httpx.AsyncClient(base_url=flow["server"].url, timeout=30) as http:
        answer = await http.post(
            "/usage",
            json={"events": batch if http_batch is None else http_batch},
            headers={"Authorization": f"Bearer {flow['product_key']}"},
        )
    if answer.status_code == 200:
        by_http = {"events": [(r["status"], r["reason"]) for r in answer.json()["results"]]}
    else:
        assert answer.status_code == 400, answer.text
        by_http = {"batch": [(e["code"], e["field"]) for e in answer.json()["errors"]]}
    return by_graphql, by_http


async def test_the_same_bad_batch_gets_the_same_answer_through_graphql_and_http(server) -> None:
    flow = await setup(server)
    await flow["agency"].data(ASSIGN, {"project": flow["gid"], "amount": "10.00", "key": "bad"})
    when = clock.now()
    one = events(flow["gid"], 1, prefix="x", when=when)[0]
    per_event = [
        {"count": 0},
        {"count": whatsapp.MAX_COUNT + 1},
        {"eventId": ""},
        {"eventId": "i" * (whatsapp.MAX_EVENT_ID + 1)},
        {"projectId": "not-an-id"},
        {"projectId": to_global_id("Workspace", 1)},
        {"recipient": None, "country": "XX"},
        {"recipient": None, "country": "B" * 5000},
        {"recipient": "call me"},
        {"recipient": "+54 9 11 5555 0000", "country": "BR"},
        {},  # a good one
        {},  # the same id again in the batch
    ]
    batches = {}
    for path in ("graphql", "http"):
        batches[path] = [{**one, "eventId": f"{path}-{i}", **change} for i, change in enumerate(per_event)]
        batches[path][-1]["eventId"] = batches[path][-2]["eventId"]
    for good in ("CHARGED", "DUPLICATE"):  # twice: the second time the good one is a duplicate on both paths
        by_graphql, by_http = await both_paths(flow, batches["graphql"], batches["http"])
        assert by_graphql == by_http
        statuses = by_graphql["events"]
        assert [status for status, _ in statuses[:10]] == ["REFUSED"] * 10
        assert [reason for _, reason in statuses[:10]] == ["INVALID_EVENT"] * 4 + ["PROJECT_NOT_FOUND"] * 2 + [
            "INVALID_EVENT"
        ] * 4
        assert statuses[10:] == [(good, None), ("DUPLICATE", None)]
    whole = {
        "too many": ([one] * (whatsapp.MAX_BATCH + 1), [("INVALID_INPUT", "events")]),
        "no time zone": ([{**one, "occurredAt": "2026-12-02T10:00:00"}], [("INVALID_EVENT", "events[0].occurredAt")]),
        "long ago": ([{**one, "occurredAt": "1999-01-01T00:00:00Z"}], [("INVALID_EVENT", "events[0].occurredAt")]),
        "in the future": (
            [one, {**one, "occurredAt": (when + timedelta(days=3)).isoformat()}],
            [("INVALID_EVENT", "events[1].occurredAt")],
        ),
    }
    for name, (batch, expected) in whole.items():
        graphql, http = await both_paths(flow, batch)
        assert graphql == http == {"batch": expected}, name
    shape = {
        "count as text": [{**one, "count": "3"}],
        "count past a 32-bit integer": [{**one, "count": 2**31}],
        "an unknown category": [{**one, "category": "SPAM"}],
        "an unknown field": [{**one, "price": "0"}],
        "no event id": [{key: value for key, value in one.items() if key != "eventId"}],
        "a NUL in an event id": [{**one, "eventId": "nul\x00"}],
    }
    for name, batch in shape.items():
        graphql, http = await both_paths(flow, batch)
        assert graphql == {"batch": [("INVALID_INPUT", None)]}, name
        [(code, field)] = http["batch"]
        assert code == "INVALID_INPUT" and field is not None and field.startswith("events[0]"), (name, field)
    # The good ones, one per path (and the other path's half of each pair): 2 x 0.375.
    assert (await Wallet.get(owner_key=f"PROJECT:{flow['project'].id}")).balance == 10_00 - 75


SCHEDULE = """mutation($at: DateTime) { setPlatformRates(input: {currency: "BRL", effectiveFrom: $at,
  cells: [{country: "BR", category: MARKETING, price: "0.25"}]}) { errors { code field message } } }"""
CARD_AT = """query($at: DateTime) { rateCard(at: $at) { at changes
  cells(first: 10) { nodes { country category platformPrice partnerPrice effectiveFrom } } } }"""


async def test_a_price_change_is_scheduled_and_the_card_reads_as_it_was_is_and_will_be(server) -> None:
    flow = await setup(server)
    tomorrow = (clock.now() + timedelta(days=1)).replace(microsecond=0)
    scheduled = await flow["platform"].data(SCHEDULE, {"at": tomorrow.isoformat()})
    assert scheduled["setPlatformRates"]["errors"] == []

    def marketing_br(card: dict) -> dict:
        return next(c for c in card["cells"]["nodes"] if (c["country"], c["category"]) == ("BR", "MARKETING"))

    now = (await flow["agency"].data(CARD_AT))["rateCard"]
    assert [datetime.fromisoformat(at) for at in now["changes"]] == [tomorrow]
    assert marketing_br(now) == {
        "country": "BR",
        "category": "MARKETING",
        "platformPrice": "0.3125",
        "partnerPrice": "0.375",
        "effectiveFrom": None,
    }
    then = (await flow["agency"].data(CARD_AT, {"at": tomorrow.isoformat()}))["rateCard"]
    assert marketing_br(then)["platformPrice"] == "0.25" and marketing_br(then)["partnerPrice"] == "0.3"
    assert datetime.fromisoformat(marketing_br(then)["effectiveFrom"]) == tomorrow
    # Usage now is priced by today's card; a change is never scheduled in the past.
    await flow["agency"].data(ASSIGN, {"project": flow["gid"], "amount": "1.00", "key": "sched"})
    sent = await flow["product"].data(REPORT, {"events": events(flow["gid"], 1, prefix="s", when=clock.now())})
    assert sent["reportUsageEvents"]["results"][0]["partnerAmount"]["amount"] == "0.375"
    past = await flow["platform"].data(SCHEDULE, {"at": (clock.now() - timedelta(hours=1)).isoformat()})
    assert [(e["code"], e["field"]) for e in past["setPlatformRates"]["errors"]] == [("INVALID_INPUT", "effectiveFrom")]


def decided_by_graphql(body: dict) -> dict:
    if body.get("data") and body["data"]["reportUsageEvents"]["results"]:
        return {"events": [(r["status"], r["reason"]) for r in body["data"]["reportUsageEvents"]["results"]]}
    if body.get("data"):
        return {"batch": [(e["code"], e["field"]) for e in body["data"]["reportUsageEvents"]["errors"]]}
    return {"batch": [("INVALID_INPUT", None)]}  # refused before execution: a request of the wrong shape


def decided_by_http(answer: httpx.Response) -> dict:
    if answer.status_code == 200:
        return {"events": [(r["status"], r["reason"]) for r in answer.json()["results"]]}
    assert answer.status_code == 400, answer.text
    [(code, field)] = [(e["code"], e["field"]) for e in answer.json()["errors"]]
    # A body of the wrong shape names its path on /usage; GraphQL refuses such a request before running it.
    return {"batch": [(code, None if code == "INVALID_INPUT" and field != "events" else field)]}


@pytest.fixture
async def twin_partners(server) -> tuple[dict, dict]:
    """Two partners set up alike: the same batch goes to one through GraphQL, to the other through /usage,
    with the same event ids."""
    flows = (await setup(server), await setup(server))
    for flow in flows:
        await flow["agency"].data(ASSIGN, {"project": flow["gid"], "amount": "100000.00", "key": "twin"})
    return flows


text_ids = st.text(max_size=140)
bad_events = st.fixed_dictionaries(
    {},
    optional={
        "count": st.one_of(st.integers(-3, 3), st.integers(999_999, 1_000_002), st.just(2**31), st.just("2")),
        "eventId": text_ids,
        "country": st.one_of(
            st.none(), st.sampled_from(["BR", "br", " BR ", "XX", "*", "", "BRA"]), st.text(max_size=4)
        ),
        "recipient": st.one_of(st.none(), st.sampled_from(["+5511999990000", "+54 9 11 5555 0000", "call me", ""])),
        "category": st.sampled_from(["MARKETING", "UTILITY", "SERVICE", "SPAM"]),
        "window": st.sampled_from(["NONE", "FREE_ENTRY", "NEVER"]),
        "occurredAt": st.sampled_from(["now", "naive", "long ago", "tomorrow"]),
        "projectId": st.sampled_from(["own", "garbage", "workspace"]),
    },
)


@settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(bad_events, min_size=1, max_size=6), size=st.sampled_from([None, whatsapp.MAX_BATCH + 1]))
def test_any_batch_gets_the_same_answer_through_graphql_and_http(twin_partners, batch, size) -> None:
    now = clock.now()
    times = {
        "now": now.isoformat(),
        "naive": now.replace(tzinfo=None).isoformat(),
        "long ago": "1999-01-01T00:00:00Z",
        "tomorrow": (now + timedelta(days=1)).isoformat(),
    }
    tag = uuid.uuid4().hex[:8]

    def events_for(flow: dict) -> list[dict]:
        built = []
        for index, changes in enumerate(batch):
            event = {**events(flow["gid"], 1, prefix=f"{tag}-{index}", when=now)[0], **changes}
            event["occurredAt"] = times[changes.get("occurredAt", "now")]
            event["projectId"] = {
                "own": flow["gid"],
                "garbage": "not-an-id",
                "workspace": to_global_id("Workspace", 1),
            }[changes.get("projectId", "own")]
            built.append(event)
        return built * (size // len(built) + 1) if size else built

    graphql_flow, http_flow = twin_partners
    with httpx.Client(base_url=graphql_flow["server"].url, timeout=30) as http:
        graphql = http.post(
            "/graphql",
            json={"query": REPORT, "variables": {"events": events_for(graphql_flow)}},
            headers={"Authorization": f"Bearer {graphql_flow['product_key']}"},
        )
        assert graphql.status_code in (200, 400), graphql.text
        plain = http.post(
            "/usage",
            json={"events": events_for(http_flow)},
            headers={"Authorization": f"Bearer {http_flow['product_key']}"},
        )
    assert decided_by_graphql(graphql.json()) == decided_by_http(plain)
