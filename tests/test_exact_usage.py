"""Usage priced exactly: a wallet is charged the exact sum of its events' ``count x rate``, rounded once
(half-up, on its running total), whatever the split of those events into reports and batches; its balance
is within half a minor unit of the exact figure after every batch. Both databases: the PostgreSQL fast
path and the careful path (SQLite, and PostgreSQL when a balance runs short) keep the same remainder."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tortoise import Tortoise
from tortoise.backends.base import executor

from billing.accounts import opening, wallets
from billing.catalog import rate_cards
from billing.core import clock
from billing.core.errors import BillingError, ErrorCode
from billing.tenants import partners
from billing.usage import project_credit, whatsapp
from billing.usage.exact_amounts import FINE, HALF
from models.enums import MarginKind, MessageCategory, OwnerKind
from models.subscriptions import UsageEvent
from models.tenancy import Project
from models.wallets import LedgerEntry, Wallet
from tests.conftest import Backend, _wipe
from tests.factories import PLATFORM, a_workspace, partner_viewer
from whitebill import db


async def a_priced_project(rates: dict[str, str], margin: str = "20", credit: int = 1_000_000_00) -> dict:
    """A BRL partner with the platform's ``rates`` (BR, by category) and a percentage ``margin``, a project
    with ``credit``, and the centralised balance funded with as much."""
    partner = await partners.create_partner(PLATFORM, name="Exact", slug=f"x-{secrets.token_hex(4)}", currency="BRL")
    cells = [rate_cards.CellInput("BR", MessageCategory(category), price) for category, price in rates.items()]
    await rate_cards.set_platform_rates(PLATFORM, currency="BRL", cells=cells)
    await rate_cards.set_partner_margin(
        partner_viewer(partner), partner_id=partner.id, kind=MarginKind.PERCENTAGE, value=margin
    )
    workspace = await a_workspace(partner)
    project = await Project.create(partner_id=partner.id, workspace_id=workspace.id, name="WA", is_default=False)
    await project_credit.assign(
        partner_viewer(partner), project_id=project.id, amount=credit, note="", idempotency_key="credit"
    )
    await wallets.grant_partner_balance(
        PLATFORM, partner_id=partner.id, currency="BRL", amount=credit, note="", idempotency_key=f"fund-{partner.id}"
    )
    project_wallet = await Wallet.get(owner_key=f"PROJECT:{project.id}", unit="BRL")
    central = await opening.open_wallet(
        partner_id=partner.id, owner_kind=OwnerKind.PARTNER, owner_id=partner.id, unit="BRL"
    )
    return {
        "partner": partner,
        "project": project,
        "wallet": project_wallet.id,
        "central": central.id,
        "credit": credit,
    }


def one_message_events(project: Project, n: int, prefix: str, category: str = "MARKETING") -> list[whatsapp.UsageIn]:
    when = clock.now() - timedelta(minutes=1)
    return [whatsapp.UsageIn(project.id, f"{prefix}-{i}", category, when, count=1, country="BR") for i in range(n)]


async def report_in_batches(events: list[whatsapp.UsageIn], size: int) -> list[whatsapp.UsageResult]:
    results = []
    for start in range(0, len(events), size):
        results += await whatsapp.report(PLATFORM, events[start : start + size])
    return results


async def moved(wallet_id: int) -> int:
    return -sum(e.amount for e in await LedgerEntry.filter(wallet_id=wallet_id, cause="USAGE"))


@pytest.mark.usefixtures("database")
@pytest.mark.parametrize("size", [1, 7, 1000])
async def test_a_thousand_messages_at_0_0625_with_20_percent_charge_75_and_62_50_in_batches_of_any_size(
    size: int,
) -> None:
    shop = await a_priced_project({"MARKETING": "0.0625"})
    results = await report_in_batches(one_message_events(shop["project"], 1000, f"m{size}"), size)
    assert {r.status for r in results} == {whatsapp.Status.CHARGED}
    assert {(r.partner_amount, r.platform_amount) for r in results} == {(75 * FINE // 10, 625 * FINE // 100)}
    assert await moved(shop["wallet"]) == 75_00  # 1,000 x 0.075, not 1,000 x 0.08
    assert await moved(shop["central"]) == 62_50  # 1,000 x 0.0625, not 1,000 x 0.06
    for wallet_id, expected in ((shop["wallet"], 75_00), (shop["central"], 62_50)):
        wallet = await Wallet.get(id=wallet_id)
        assert (wallet.balance, wallet.usage_remainder) == (shop["credit"] - expected, 0)


@pytest.mark.usefixtures("database")
async def test_each_event_keeps_its_exact_amount_and_a_report_adds_them_up_exactly() -> None:
    shop = await a_priced_project({"MARKETING": "0.0625", "UTILITY": "0.0333"})
    events = one_message_events(shop["project"], 3, "u", "UTILITY")  # 0.03996 each
    await report_in_batches(events, 1)
    rows = await UsageEvent.filter(project_id=shop["project"].id).order_by("id")
    assert [(r.charged_amount, r.charged_fraction) for r in rows] == [(3, 9_960_000_000)] * 3
    assert [(r.platform_amount, r.platform_fraction) for r in rows] == [(3, 3_300_000_000)] * 3
    # 3 x 0.03996 = 0.11988 moved as 0.12 (the running total 3.996, 7.992, 11.988 centavos: 4, 8, 12).
    assert await moved(shop["wallet"]) == 12
    wallet = await Wallet.get(id=shop["wallet"])
    assert wallet.usage_remainder == -120_000_000  # 11.988 - 12 centavos
    lines = await whatsapp_report_lines(shop)
    assert [(line.partner_amount, line.platform_amount) for line in lines] == [
        (11 * FINE + 9_880_000_000, 9 * FINE + 9_900_000_000)
    ]


async def whatsapp_report_lines(shop: dict) -> list:
    from billing.usage import usage_reports

    return await usage_reports.usage_by_month(partner_viewer(shop["partner"]), project_id=shop["project"].id)


@pytest.mark.usefixtures("database")
async def test_a_project_at_its_floor_is_refused_only_when_the_running_total_crosses_a_whole_unit() -> None:
    shop = await a_priced_project({"MARKETING": "0.0625"}, credit=15)
    # 0.075 a message: running totals 7.5, 15, 22.5 centavos move 8, 15, 23: the third passes R$ 0.15.
    results = await report_in_batches(one_message_events(shop["project"], 3, "f"), 3)
    assert [r.status for r in results] == [whatsapp.Status.CHARGED, whatsapp.Status.CHARGED, whatsapp.Status.REFUSED]
    assert results[2].reason is whatsapp.Reason.INSUFFICIENT_CREDIT
    wallet = await Wallet.get(id=shop["wallet"])
    assert (wallet.balance, wallet.usage_remainder) == (0, 0)
    assert await UsageEvent.filter(project_id=shop["project"].id).count() == 2  # the refused one is not kept


# ---------------------------------------------------------------- any batching, any rates (Hypothesis)

RATES = {"MARKETING": "0.0625", "UTILITY": "0.0333", "AUTHENTICATION": "0.01234567"}


async def check_batching(counts: list[tuple[str, int]], sizes: list[int], margin: str) -> None:
    shop = await a_priced_project(RATES, margin=margin)
    table = await rate_cards.table(shop["partner"].id, "BRL")
    when = clock.now() - timedelta(minutes=1)
    events = [
        whatsapp.UsageIn(shop["project"].id, f"e{i}", category, when, count=count, country="BR")
        for i, (category, count) in enumerate(counts)
    ]
    exact = {"partner": Fraction(0), "platform": Fraction(0)}
    start, turn = 0, 0
    while start < len(events):
        batch = events[start : start + sizes[turn % len(sizes)]]
        start, turn = start + len(batch), turn + 1
        await whatsapp.report(PLATFORM, batch)
        for event in batch:
            rate = table.rate("BR", event.category, event.occurred_at)
            assert rate is not None
            exact["partner"] += event.count * rate.partner * 100
            exact["platform"] += event.count * rate.platform * 100
        # After every batch: each balance within half a centavo of the exact figure, and the remainder says
        # by how much.
        for wallet_id, key in ((shop["wallet"], "partner"), (shop["central"], "platform")):
            wallet = await Wallet.get(id=wallet_id)
            owed = shop["credit"] - exact[key]
            assert abs(wallet.balance - owed) <= Fraction(1, 2)
            assert Fraction(wallet.balance) - owed == Fraction(wallet.usage_remainder, FINE)
            assert -HALF <= wallet.usage_remainder < HALF
    # The totals depend only on the events: their exact sum, rounded half-up once.
    for wallet_id, key in ((shop["wallet"], "partner"), (shop["central"], "platform")):
        total = exact[key]
        assert await moved(wallet_id) == (total + Fraction(1, 2)).__floor__()


def on_database(backend: Backend, check: Callable[..., Awaitable[None]], examples: int, **strategies: Any) -> None:
    """Hypothesis drives ``check`` synchronously on ``backend``, each example run to completion on one event
    loop, on a database emptied first (the platform's card is one per currency: each example its own)."""
    with asyncio.Runner() as runner:
        executor.EXECUTOR_CACHE.clear()
        runner.run(Tortoise.init(config=db.tortoise_config(backend.url), _enable_global_fallback=True))
        try:

            @settings(
                max_examples=examples,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(**strategies)
            def run(**drawn: Any) -> None:
                runner.run(_wipe(backend))
                runner.run(check(**drawn))

            run()
        finally:
            runner.run(_wipe(backend))
            runner.run(Tortoise.close_connections())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_any_batching_of_the_same_events_charges_the_same_exact_totals(backend: Backend) -> None:
    on_database(
        backend,
        check_batching,
        12,
        counts=st.lists(st.tuples(st.sampled_from(sorted(RATES)), st.integers(1, 50)), min_size=1, max_size=60),
        sizes=st.lists(st.integers(1, 25), min_size=1, max_size=6),
        margin=st.sampled_from(["0", "20", "12.5", "33.33333333"]),
    )


def test_a_partner_rate_past_ten_decimals_is_rounded_once_half_even() -> None:
    third = rate_cards.with_margin(Fraction(Decimal("0.0625")), MarginKind.PERCENTAGE, Decimal("33.33333333"))
    assert third.denominator > 10**10
    kept = rate_cards.kept(third)
    assert kept == Fraction(Decimal("0.0833333333"))  # 0.08333333330208..., down
    assert rate_cards.kept(Fraction(5, 10**11)) == 0  # a tie, to the even digit
    assert rate_cards.kept(Fraction(15, 10**11)) == Fraction(2, 10**10)
    assert rate_cards.kept(Fraction(Decimal("0.075"))) == Fraction(Decimal("0.075"))


# ---------------------------------------------------------------- rate cards that change on a date


async def marketing_event(shop: dict, event_id: str, occurred_at: datetime) -> whatsapp.UsageResult:
    [result] = await whatsapp.report(
        PLATFORM, [whatsapp.UsageIn(shop["project"].id, event_id, "MARKETING", occurred_at, country="BR")]
    )
    assert result.status is whatsapp.Status.CHARGED, result
    return result


@pytest.mark.usefixtures("database")
async def test_a_card_change_at_a_date_prices_each_event_by_the_card_in_force_when_it_occurred() -> None:
    change = datetime(2027, 3, 1, tzinfo=UTC)
    await clock.advance(change - timedelta(hours=1) - clock.now())  # 2027-02-28 23:00 UTC
    shop = await a_priced_project({"MARKETING": "0.0625"})
    await rate_cards.set_platform_rates(
        PLATFORM,
        currency="BRL",
        cells=[rate_cards.CellInput("BR", MessageCategory.MARKETING, "0.05")],
        effective_from=change,
    )
    await clock.advance(timedelta(minutes=40))  # 23:40
    before = await marketing_event(shop, "before", change - timedelta(minutes=30))
    await clock.advance(timedelta(hours=1))  # 00:00 has passed
    after = await marketing_event(shop, "after", change + timedelta(minutes=10))
    late = await marketing_event(shop, "late", change - timedelta(seconds=1))  # arrives after, occurred before
    old, new = (75 * FINE // 10, 625 * FINE // 100), (6 * FINE, 5 * FINE)  # 0.075 / 0.0625; 0.06 / 0.05
    assert [(r.partner_amount, r.platform_amount) for r in (before, after, late)] == [old, new, old]
    # What was charged before the change is as it was.
    stored = {row.event_id: row for row in await UsageEvent.filter(project_id=shop["project"].id)}
    assert (stored["before"].charged_amount, stored["before"].charged_fraction) == (7, FINE // 2)
    # The card reads as it was, as it is, and says when it changes.
    table = await rate_cards.table(shop["partner"].id, "BRL")
    assert table.changes() == [change]
    was, now = table.cells_at(change - timedelta(microseconds=1)), table.cells_at(change)
    assert (was["BR", "MARKETING"].rate.platform, now["BR", "MARKETING"].rate.platform) == (
        Fraction(1, 16),
        Fraction(1, 20),
    )
    assert (was["BR", "MARKETING"].since, now["BR", "MARKETING"].since) == (None, change)
    # A change is never scheduled in the past: what was charged would disagree with what arrives late.
    with pytest.raises(BillingError) as refused:
        await rate_cards.set_platform_rates(
            PLATFORM,
            currency="BRL",
            cells=[rate_cards.CellInput("BR", MessageCategory.MARKETING, "0.04")],
            effective_from=change,
        )
    assert (refused.value.code, refused.value.field) == (ErrorCode.INVALID_INPUT, "effectiveFrom")


async def check_schedule(steps: list[tuple[str, int, int]]) -> None:
    """Random changes scheduled ahead, reports of events that occurred a while back, time passing: every
    event is charged by the price in force when it occurred, and no change reprices an event charged."""
    shop = await a_priced_project({"MARKETING": "0.0625"}, margin="0")
    start = clock.now()
    schedule = [(start - timedelta(days=3650), Fraction(1, 16))]  # the first price covers all time before
    prices = [Fraction(n, 10_000) for n in (500, 625, 777, 1234)]
    charged: dict[str, int] = {}
    for number, (action, minutes, choice) in enumerate(steps):
        now = clock.now()
        if action == "change":
            at = now + timedelta(minutes=minutes)
            price = prices[choice % len(prices)]
            cell = rate_cards.CellInput(
                "BR", MessageCategory.MARKETING, str(price.numerator / Decimal(price.denominator))
            )
            await rate_cards.set_platform_rates(PLATFORM, currency="BRL", cells=[cell], effective_from=at)
            schedule = [entry for entry in schedule if entry[0] != at] + [(at, price)]
        elif action == "report":
            occurred = max(now - timedelta(minutes=minutes), start - timedelta(minutes=5))
            result = await marketing_event(shop, f"e{number}", occurred)
            in_force = max((entry for entry in schedule if entry[0] <= occurred), key=lambda entry: entry[0])[1]
            assert result.platform_amount == in_force * 100 * FINE
            charged[f"e{number}"] = result.platform_amount
        else:
            await clock.advance(timedelta(minutes=minutes))
    for row in await UsageEvent.filter(project_id=shop["project"].id):
        assert row.platform_amount * FINE + row.platform_fraction == charged[row.event_id]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_a_card_change_never_reprices_what_was_charged(backend: Backend) -> None:
    actions = st.tuples(st.sampled_from(["change", "report", "advance"]), st.integers(1, 120), st.integers(0, 3))
    on_database(backend, check_schedule, 10, steps=st.lists(actions, min_size=1, max_size=25))
