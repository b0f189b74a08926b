"""Invoices and their numbers: 32 finalizations at once in two processes (PostgreSQL) or one after another
(SQLite) take one gapless run of numbers, none twice, and the database refuses a number given twice; a
finalization that rolls back leaves no gap; a finalized invoice does not change."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from billing.core import clock, sql
from billing.core.errors import BillingError, ErrorCode
from billing.documents import credit_notes, invoices, numbering, taxes
from models.documents import Document, DocumentLine, DocumentSeries, TaxRate
from models.enums import DocumentKind, DocumentStatus, SeriesReset
from tests.conftest import Backend
from tests.factories import a_partner, a_workspace

pytestmark = pytest.mark.usefixtures("database")

ROOT = Path(__file__).resolve().parent.parent


async def drafts(count: int) -> tuple[str, list[int]]:
    """``count`` draft invoices from one partner to one of its workspaces; the partner's slug."""
    partner = await a_partner("Acme")
    workspace = await a_workspace(partner)
    made = []
    for n in range(count):
        invoice = await invoices.create_draft(
            partner_id=partner.id,
            buyer_key=f"WORKSPACE:{workspace.id}",
            currency="BRL",
            lines=[invoices.LineInput("Pro Monthly", 9990), invoices.LineInput(f"500 points #{n}", 4990, quantity=2)],
        )
        made.append(invoice.id)
    return partner.slug, made


def finalized_elsewhere(url: str, ids: list[int]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.finalize_many", url, ",".join(map(str, ids))],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


async def test_a_draft_has_its_lines_and_totals_and_no_number() -> None:
    _, [invoice_id] = await drafts(1)
    invoice = await Document.get(id=invoice_id)
    lines = await DocumentLine.filter(document_id=invoice_id).order_by("position")
    assert [(line.position, line.quantity, line.unit_price, line.total) for line in lines] == [
        (1, 1, 9990, 9990),
        (2, 2, 4990, 9980),
    ]
    assert (invoice.status, invoice.subtotal, invoice.total, invoice.number, invoice.number_text) == (
        DocumentStatus.DRAFT,
        19970,
        19970,
        None,
        None,
    )


async def test_thirty_two_finalizations_at_once_take_one_gapless_run_of_numbers(database: Backend) -> None:
    slug, ids = await drafts(32)
    if database.is_postgres:
        # Two worker processes, each finalizing its 16 at once through its own pool.
        workers = [finalized_elsewhere(database.url, ids[0::2]), finalized_elsewhere(database.url, ids[1::2])]
        outputs = [await asyncio.to_thread(worker.communicate, timeout=120) for worker in workers]
        assert [worker.returncode for worker in workers] == [0, 0], outputs
    else:  # one process writes at a time: one after another
        for invoice_id in ids:
            await invoices.finalize(invoice_id)
    finalized = await Document.filter(id__in=ids)
    numbers = sorted(invoice.number for invoice in finalized if invoice.number is not None)
    assert numbers == list(range(1, 33))
    year = finalized[0].finalized_at.year
    assert {invoice.number_text for invoice in finalized} == {f"{slug.upper()}-{year}-{n:06d}" for n in range(1, 33)}
    assert all(invoice.status is DocumentStatus.FINALIZED for invoice in finalized)
    series = await DocumentSeries.get(id=finalized[0].series_id)
    assert series.next_number == 33
    # The database refuses a number given twice in one series, whatever the code does.
    with pytest.raises(IntegrityError):
        await sql.execute("UPDATE document SET number = 1 WHERE id = $1", ids[-1] if numbers else 0)


async def test_a_finalization_that_rolls_back_leaves_no_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    _, [first, second] = await drafts(2)
    take = numbering.take_number

    async def taken_then_failed(series_id: int, at: datetime) -> tuple[int, str]:
        await take(series_id, at)
        raise RuntimeError("the process died after taking the number")

    monkeypatch.setattr(numbering, "take_number", taken_then_failed)
    with pytest.raises(RuntimeError):
        await invoices.finalize(first)
    assert (await Document.get(id=first)).status is DocumentStatus.DRAFT
    monkeypatch.setattr(numbering, "take_number", take)
    assert (await invoices.finalize(second)).number == 1
    assert (await invoices.finalize(first)).number == 2


async def test_a_finalized_invoice_keeps_its_number_and_finalizing_again_changes_nothing() -> None:
    _, [invoice_id] = await drafts(1)
    once = await invoices.finalize(invoice_id)
    again = await invoices.finalize(invoice_id)
    assert (again.number, again.number_text, again.finalized_at) == (once.number, once.number_text, once.finalized_at)
    assert (await DocumentSeries.get(id=once.series_id)).next_number == 2


async def test_a_number_is_taken_only_inside_the_finalizing_transaction() -> None:
    partner = await a_partner()
    series = await numbering.series_of(partner.id, DocumentKind.INVOICE)
    with pytest.raises(RuntimeError):
        await numbering.take_number(series.id, datetime(2027, 1, 1, tzinfo=UTC))


async def test_a_yearly_series_starts_again_each_year_and_a_never_series_does_not() -> None:
    partner = await a_partner()
    yearly = await numbering.series_of(partner.id, DocumentKind.CREDIT_NOTE)
    await DocumentSeries.filter(id=yearly.id).update(reset=SeriesReset.YEARLY)
    never = await numbering.series_of(partner.id, DocumentKind.INVOICE)
    dates = [datetime(2026, 12, 31, 23, 59, tzinfo=UTC)] * 2 + [datetime(2027, 1, 1, tzinfo=UTC)] * 2
    taken: dict[str, list[str]] = {"yearly": [], "never": []}
    async with in_transaction("default"):
        for at in dates:
            taken["yearly"].append((await numbering.take_number(yearly.id, at))[1])
            taken["never"].append((await numbering.take_number(never.id, at))[1])
    slug = partner.slug.upper()
    assert taken["yearly"] == [
        f"{slug}-CN-2026-000001",
        f"{slug}-CN-2026-000002",
        f"{slug}-CN-2027-000001",
        f"{slug}-CN-2027-000002",
    ]
    assert taken["never"] == [
        f"{slug}-2026-000001",
        f"{slug}-2026-000002",
        f"{slug}-2027-000003",
        f"{slug}-2027-000004",
    ]


async def test_a_draft_refuses_bad_lines() -> None:
    partner = await a_partner()
    for lines, code in (
        ([], ErrorCode.INVALID_INPUT),
        ([invoices.LineInput("x", -1)], ErrorCode.INVALID_AMOUNT),
        ([invoices.LineInput("x", 100, quantity=0)], ErrorCode.INVALID_AMOUNT),
        ([invoices.LineInput("  ", 100)], ErrorCode.INVALID_INPUT),
    ):
        with pytest.raises(BillingError) as refused:
            await invoices.create_draft(partner_id=partner.id, buyer_key="WORKSPACE:1", currency="BRL", lines=lines)
        assert refused.value.code is code
    assert await Document.all().count() == 0


def test_taxes_are_a_percentage_of_the_exact_net_rounded_once_per_line_half_even() -> None:
    iss, pis = taxes.Rate("ISS", Decimal("5"), inclusive=True), taxes.Rate("PIS", Decimal("2"), inclusive=False)
    # R$ 100.00 with 5 % ISS inside the price and 2 % PIS on top: the net is 95.238095..., ISS 4.76, PIS 1.90.
    line = taxes.line_amounts(1, 10000, [iss, pis])
    assert [(t.name, t.amount) for t in line.taxes] == [("ISS", 476), ("PIS", 190)]
    assert (line.subtotal, line.tax, line.total) == (10000, 666, 10190)
    # Exactly half a minor unit goes to the even neighbour, once per line (not per unit).
    one_percent = [taxes.Rate("T", Decimal("1"), inclusive=False)]
    assert taxes.line_amounts(1, 250, one_percent).tax == 2  # 2.5 -> 2
    assert taxes.line_amounts(1, 350, one_percent).tax == 4  # 3.5 -> 4
    assert taxes.line_amounts(3, 250, one_percent).tax == 8  # 7.5 on the line -> 8, not 3 x 2
    assert taxes.line_amounts(2, 100, one_percent, discount=50).tax == 2  # on 1.50 after the discount
    with pytest.raises(BillingError):
        taxes.line_amounts(1, 100, one_percent, discount=101)
    for bad in ("0", "100.0001", "0.00001", "-5", "NaN"):
        with pytest.raises(BillingError) as refused:
            taxes.check_rate("T", Decimal(bad))
        assert refused.value.field == "percentage", bad


async def test_a_draft_carries_the_issuers_rates_on_every_line_and_totals_them_per_rate() -> None:
    partner = await a_partner("Acme")
    await TaxRate.create(partner_id=partner.id, name="ISS", percentage=Decimal("5"), inclusive=True)
    await TaxRate.create(partner_id=partner.id, name="PIS", percentage=Decimal("2"))
    await TaxRate.create(partner_id=partner.id, name="Old", percentage=Decimal("9"), active=False)
    other = await a_partner("Other")
    await TaxRate.create(partner_id=other.id, name="VAT", percentage=Decimal("20"))
    invoice = await invoices.create_draft(
        partner_id=partner.id,
        buyer_key="WORKSPACE:1",
        currency="BRL",
        lines=[invoices.LineInput("Pro Monthly", 10000), invoices.LineInput("500 points", 4990, quantity=2)],
    )
    lines = await DocumentLine.filter(document_id=invoice.id).order_by("position")
    # Line 2: 99.80 gross, net 95.047619..., ISS 4.75 (4.7523...), PIS 1.90 (1.9009...).
    assert [(line.tax, line.total) for line in lines] == [(666, 10190), (665, 10170)]
    assert invoices.tax_breakdown(lines) == [
        {"name": "ISS", "percentage": "5.0000", "inclusive": True, "amount": 476 + 475},
        {"name": "PIS", "percentage": "2.0000", "inclusive": False, "amount": 190 + 190},
    ]
    assert (invoice.subtotal, invoice.tax_total, invoice.total) == (19980, 1331, 20360)


async def test_a_line_credited_gives_a_numbered_credit_note_and_the_invoice_does_not_change() -> None:
    slug, [invoice_id] = await drafts(1)
    invoice = await invoices.finalize(invoice_id)
    before = (await sql.fetch("SELECT * FROM document WHERE id = $1", invoice_id), await lines_of(invoice_id))
    second_line = (await DocumentLine.get(document_id=invoice_id, position=2)).id
    note = await credit_notes.credit(invoice_id, reason="one package refunded", amounts={second_line: 4990})
    year = note.finalized_at.year
    assert (note.kind, note.status, note.number_text, note.total, note.refers_to_id, note.note) == (
        DocumentKind.CREDIT_NOTE,
        DocumentStatus.FINALIZED,
        f"{slug.upper()}-CN-{year}-000001",
        4990,
        invoice.id,
        "one package refunded",
    )
    assert (await sql.fetch("SELECT * FROM document WHERE id = $1", invoice_id), await lines_of(invoice_id)) == before
    # The rest of that line, then the whole remainder; never beyond a line's total.
    with pytest.raises(BillingError) as refused:
        await credit_notes.credit(invoice_id, reason="again", amounts={second_line: 4991})
    assert refused.value.code is ErrorCode.INVALID_AMOUNT
    rest = await credit_notes.credit(invoice_id, reason="all the rest")
    assert (rest.number, rest.total) == (2, 9990 + 4990)
    assert await credit_notes.credited_per_line(invoice_id) == {
        (await DocumentLine.get(document_id=invoice_id, position=1)).id: 9990,
        second_line: 9980,
    }
    with pytest.raises(BillingError):
        await credit_notes.credit(invoice_id, reason="nothing left")
    # A draft has nothing to credit.
    _, [draft] = await drafts(1)
    with pytest.raises(BillingError):
        await credit_notes.credit(draft, reason="not finalized")


async def lines_of(document_id: int) -> list[dict[str, object]]:
    return await sql.fetch("SELECT * FROM document_line WHERE document_id = $1 ORDER BY position", document_id)


async def test_a_yearly_series_finalizes_invoices_across_new_year_with_numbers_starting_again() -> None:
    slug, ids = await drafts(4)
    partner_id = (await Document.get(id=ids[0])).partner_id
    await numbering.set_series(
        partner_id, DocumentKind.INVOICE, prefix=f"{slug.upper()}-{{year}}-", reset=SeriesReset.YEARLY
    )
    for invoice_id, moment in zip(
        ids, (datetime(2026, 12, 31, 23, tzinfo=UTC),) * 2 + (datetime(2027, 1, 1, 1, tzinfo=UTC),) * 2, strict=True
    ):
        await clock.advance(moment - clock.now())
        await invoices.finalize(invoice_id)
    texts = [(await Document.get(id=i)).number_text for i in ids]
    assert texts == [f"{slug.upper()}-2026-000001", f"{slug.upper()}-2026-000002", f"{slug.upper()}-2027-000001",
                     f"{slug.upper()}-2027-000002"]  # fmt: skip
    # Its reset was chosen before its first document, and a yearly series shows its year.
    with pytest.raises(BillingError) as refused:
        await numbering.set_series(partner_id, DocumentKind.INVOICE, prefix="X-{year}-", reset=SeriesReset.NEVER)
    assert refused.value.field == "reset"
    with pytest.raises(BillingError) as refused:
        await numbering.set_series(partner_id, DocumentKind.CREDIT_NOTE, prefix="CN-", reset=SeriesReset.YEARLY)
    assert refused.value.field == "prefix"
