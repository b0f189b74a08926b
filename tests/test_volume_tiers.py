"""Volume tiers: a platform price that falls as a calendar month's messages grow, graduated by each
message's place in the month of its ``occurredAt`` (an event that crosses a boundary is split), counted per
partner or per project as the platform's card says; a first price of 0 is a free quota. Both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from billing.catalog import rate_cards
from billing.core import clock
from billing.core.errors import BillingError, ErrorCode
from billing.usage import whatsapp
from billing.usage.exact_amounts import FINE
from models.enums import MessageCategory, TierScope
from models.subscriptions import MessageVolume
from models.tenancy import Project
from tests.factories import PLATFORM, a_workspace
from tests.test_exact_usage import a_priced_project, moved

pytestmark = pytest.mark.usefixtures("database")


def cell(category: str, price: str, *tiers: tuple[int, str]) -> rate_cards.CellInput:
    return rate_cards.CellInput(
        "BR", MessageCategory(category), price, tuple(rate_cards.TierInput(start, p) for start, p in tiers)
    )


def event(project: Project, event_id: str, count: int = 1, category: str = "MARKETING", at: datetime | None = None):
    occurred = at or clock.now() - timedelta(minutes=1)
    return whatsapp.UsageIn(project.id, event_id, category, occurred, count=count, country="BR")


def fine(text: str) -> int:
    """An amount in reais as fine units."""
    whole, _, frac = text.partition(".")
    return (int(whole) * 100 + int((frac + "00")[:2])) * FINE + int((frac[2:] + "0" * 10)[:10])


async def test_a_tier_boundary_crossed_inside_one_batch_prices_each_message_at_its_tier() -> None:
    shop = await a_priced_project({"MARKETING": "0.0625"})  # + 20 % for the partner
    await rate_cards.set_platform_rates(
        PLATFORM, currency="BRL", cells=[cell("MARKETING", "0.0625", (1001, "0.05"), (2001, "0.04"))]
    )
    await clock.advance(timedelta(minutes=2))  # usage from now on is priced by it
    project = shop["project"]
    batch = [event(project, f"m{i}") for i in range(995)]  # messages 1-995
    batch.append(event(project, "crossing", count=10))  # 996-1005: five at each side of the boundary
    batch += [event(project, f"n{i}") for i in range(4)]  # 1006-1009
    results = await whatsapp.report(PLATFORM, batch)
    assert {r.status for r in results} == {whatsapp.Status.CHARGED}
    platform = [r.platform_amount for r in results]
    assert platform[:995] == [fine("0.0625")] * 995
    assert platform[995] == 5 * fine("0.0625") + 5 * fine("0.05")
    assert platform[996:] == [fine("0.05")] * 4
    assert results[995].partner_amount == 5 * fine("0.075") + 5 * fine("0.06")  # the margin on each tier
    # 1,000 x 0.0625 + 9 x 0.05 = 62.95, rounded once.
    assert await moved(shop["central"]) == 62_95
    assert await moved(shop["wallet"]) == 75_54  # 1,000 x 0.075 + 9 x 0.06
    # A duplicate counts nothing again; the next message is the 1,010th.
    again = await whatsapp.report(PLATFORM, [event(project, "crossing", count=10), event(project, "next")])
    assert [r.status for r in again] == [whatsapp.Status.DUPLICATE, whatsapp.Status.CHARGED]
    assert again[1].platform_amount == fine("0.05")
    [volume] = await MessageVolume.all()
    assert (volume.scope, volume.country, volume.category, volume.count) == (
        f"PARTNER:{shop['partner'].id}",
        "BR",
        "MARKETING",
        1010,
    )


async def test_a_free_quota_leaves_the_first_messages_free_then_charges_and_a_new_month_starts_again() -> None:
    # Two utility messages a month free, then 0.04.
    shop = await a_priced_project({"UTILITY": "0.04"}, margin="0")
    await rate_cards.set_platform_rates(PLATFORM, currency="BRL", cells=[cell("UTILITY", "0", (3, "0.04"))])
    await clock.advance(timedelta(minutes=2))  # usage from now on is priced by it
    project = shop["project"]
    first = await whatsapp.report(PLATFORM, [event(project, "u1", category="UTILITY", count=3)])
    assert (first[0].status, first[0].platform_amount) == (whatsapp.Status.CHARGED, fine("0.04"))
    # The first of next month is free again: counting is by the month the message occurred in.
    month_end = datetime(clock.now().year + (clock.now().month == 12), clock.now().month % 12 + 1, 1, tzinfo=UTC)
    await clock.advance(month_end + timedelta(hours=1) - clock.now())
    late = event(project, "late", category="UTILITY", at=month_end - timedelta(hours=2))  # last month's 4th
    fresh = event(project, "fresh", category="UTILITY", at=month_end + timedelta(minutes=5))  # this month's 1st
    results = await whatsapp.report(PLATFORM, [late, fresh])
    assert [(r.status, r.platform_amount) for r in results] == [
        (whatsapp.Status.CHARGED, fine("0.04")),
        (whatsapp.Status.FREE, 0),
    ]
    assert await moved(shop["central"]) == 8


async def test_tiers_count_each_partner_or_each_project_as_the_platform_chose() -> None:
    shop = await a_priced_project({"MARKETING": "0.0625"}, margin="0")
    other = await Project.create(
        partner_id=shop["partner"].id, workspace_id=(await a_workspace(shop["partner"])).id, name="B", is_default=False
    )
    from billing.usage import project_credit
    from tests.factories import partner_viewer

    await project_credit.assign(
        partner_viewer(shop["partner"]), project_id=other.id, amount=10_000, note="", idempotency_key="b"
    )
    tiers = [cell("MARKETING", "0.0625", (2, "0.05"))]
    await rate_cards.set_platform_rates(PLATFORM, currency="BRL", cells=tiers)  # per partner, the default
    await clock.advance(timedelta(minutes=2))  # usage from now on is priced by it
    shared = await whatsapp.report(PLATFORM, [event(shop["project"], "a1"), event(other, "b1")])
    assert [r.platform_amount for r in shared] == [fine("0.0625"), fine("0.05")]  # b1 is the partner's 2nd
    await rate_cards.set_platform_rates(PLATFORM, currency="BRL", cells=tiers, tier_scope=TierScope.PROJECT)
    await clock.advance(timedelta(minutes=2))  # usage from now on is priced by it
    # Per project, b's count starts on its own (a different scope: this project's first message).
    apart = await whatsapp.report(PLATFORM, [event(other, "b2")])
    assert apart[0].platform_amount == fine("0.0625")


async def test_tiers_are_refused_out_of_order_and_a_refused_event_counts_nothing() -> None:
    for tiers, where in (
        (((1, "0.05"),), "cells[0].tiers[0].fromMessage"),
        (((10, "0.05"), (10, "0.04")), "cells[0].tiers[1].fromMessage"),
        (((10, "-1"),), "cells[0].tiers[0].price"),
    ):
        with pytest.raises(BillingError) as refused:
            await rate_cards.set_platform_rates(PLATFORM, currency="BRL", cells=[cell("MARKETING", "0.06", *tiers)])
        assert (refused.value.code in (ErrorCode.INVALID_INPUT, ErrorCode.INVALID_AMOUNT), refused.value.field) == (
            True,
            where,
        )
    shop = await a_priced_project({"MARKETING": "0.0625"}, margin="0", credit=10)  # R$ 0.10 of credit
    await rate_cards.set_platform_rates(PLATFORM, currency="BRL", cells=[cell("MARKETING", "0.0625", (3, "0.01"))])
    await clock.advance(timedelta(minutes=2))  # usage from now on is priced by it
    results = await whatsapp.report(
        PLATFORM, [event(shop["project"], "a"), event(shop["project"], "b"), event(shop["project"], "c")]
    )
    # 6.25, then 12.5 (past R$ 0.10: refused, not counted), then the 2nd message at 0.0625 again.
    assert [r.status for r in results] == [whatsapp.Status.CHARGED, whatsapp.Status.REFUSED, whatsapp.Status.REFUSED]
    [volume] = await MessageVolume.all()
    assert volume.count == 1


async def test_senders_racing_on_one_partners_tiers_count_every_message_once() -> None:
    shop = await a_priced_project({"MARKETING": "0.0625"}, margin="0")
    await rate_cards.set_platform_rates(
        PLATFORM, currency="BRL", cells=[cell("MARKETING", "0.0625", (101, "0.05"), (201, "0.04"))]
    )
    await clock.advance(timedelta(minutes=2))
    batches = [[event(shop["project"], f"s{s}-{i}", count=3) for i in range(25)] for s in range(4)]
    answers = await asyncio.gather(*(whatsapp.report(PLATFORM, batch) for batch in batches))
    assert {r.status for answer in answers for r in answer} == {whatsapp.Status.CHARGED}
    [volume] = await MessageVolume.all()
    assert volume.count == 300
    # Whatever the order, 100 messages at each price: 6.25 + 5.00 + 4.00.
    assert sum(r.platform_amount for answer in answers for r in answer) == 1525 * FINE
    assert await moved(shop["central"]) == 15_25
