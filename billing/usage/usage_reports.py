"""Billing reports: WhatsApp usage per project by month and category, and the partner's monthly
CSV downloads of what left its centralised balance (WCC, renewal and plan deductions).

Usage amounts are exact (each event's two amounts, in whole minor units and fine units beyond them, as
``billing.usage.exact_amounts`` keeps them): a month's total is the exact sum of its events, which the
ledger moved rounded once (within half a minor unit per wallet, the wallet's usage remainder). A
deduction's amount is what its posting moved. Months are UTC
calendar months of when the usage happened (``occurredAt``) or the deduction was made.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from billing.accounts import statements
from billing.core import audit, sql, tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import format_minor
from billing.core.periods import month_range
from billing.core.tenancy import Viewer
from billing.usage.exact_amounts import FINE, format_fine
from models.enums import Permission
from models.tenancy import Partner

PAGE = 1000


@dataclass(frozen=True, slots=True)
class UsageLine:
    month: str  # "2026-07"
    category: str
    events: int
    messages: int
    free_messages: int
    partner_amount: int  # exact, in fine units
    platform_amount: int
    currency: str


def _month_of(column: str) -> str:
    if sql.is_postgres():
        return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM')"
    return f"substr({column}, 1, 7)"  # SQLite keeps UTC times as ISO text


async def usage_by_month(
    viewer: Viewer, *, project_id: int, since: str | None = None, until: str | None = None
) -> list[UsageLine]:
    """Counts and amounts of a project's delivered messages, per month and category."""
    if viewer.kind != "WORKSPACE":
        viewer.require(Permission.READ_REPORTS)
    project = await tenancy.get_scoped(tenancy.projects(viewer), project_id, "project")
    start = month_range(since)[0] if since else datetime(2000, 1, 1, tzinfo=UTC)
    end = month_range(until)[1] if until else datetime(9999, 1, 1, tzinfo=UTC)
    rows = await sql.fetch(
        f"SELECT {_month_of('occurred_at')} AS month, category, currency, count(*) AS events,"  # noqa: S608
        " sum(count) AS messages, sum(CASE WHEN free THEN count ELSE 0 END) AS free_messages,"
        " sum(charged_amount) AS partner_whole, sum(charged_fraction) AS partner_fine,"
        " sum(platform_amount) AS platform_whole, sum(platform_fraction) AS platform_fine"
        " FROM usage_event WHERE project_id = $1 AND occurred_at >= $2 AND occurred_at < $3"
        " GROUP BY 1, category, currency ORDER BY 1, category, currency",
        project.id,
        start,
        end,
    )
    return [
        UsageLine(
            month=r["month"],
            category=r["category"],
            events=int(r["events"]),
            messages=int(r["messages"]),
            free_messages=int(r["free_messages"]),
            partner_amount=int(r["partner_whole"]) * FINE + int(r["partner_fine"]),
            platform_amount=int(r["platform_whole"]) * FINE + int(r["platform_fine"]),
            currency=r["currency"],
        )
        for r in rows
    ]


# --- CSV downloads ---------------------------------------------------------------------------------

REPORTS = ("wcc-deductions", "renewal-deductions", "plan-deductions", "package-deductions", "statement")


async def check_download(viewer: Viewer, partner_id: int, report: str, month: str) -> tuple[int, datetime, datetime]:
    """Validate a download before any byte is sent: the partner (scoped), the report, the month."""
    viewer.require(Permission.READ_REPORTS)
    if report not in REPORTS:
        raise BillingError(ErrorCode.NOT_FOUND, f"no report {report[:40]!r} (one of {', '.join(REPORTS)})")
    partner = await tenancy.get_scoped(tenancy.partners(viewer, with_descendants=True), partner_id, "partner")
    start, end = month_range(month)
    return partner.id, start, end


def _line(values: Sequence[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue()


async def stream(report: str, partner_id: int, start: datetime, end: datetime) -> AsyncIterator[str]:
    """The CSV, a page of rows at a time (keyset pages by id, so memory stays flat)."""
    if report == "statement":  # the partner's monthly statement, in its own currency
        partner = await Partner.get(id=partner_id)
        statement = await statements.build(partner, f"{start:%Y-%m}", partner.default_currency)
        async for text in statements.csv_lines(statement):
            yield text
        return
    if report == "wcc-deductions":
        # The partner's clients' events, and those of the partners reselling below it, each with what this
        # partner was paid for it (``partner_amount``: by its client, or by the partner below it) and what it
        # paid its parent or the platform (``platform_amount``), exactly: their sums are its usage entries.
        header = [
            "event_id", "occurred_at", "workspace_id", "project_id", "country", "category", "window",
            "messages", "free", "partner_amount", "platform_amount", "currency", "posting_id", "seller_id",
        ]  # fmt: skip
        query = (
            "SELECT e.id, e.partner_id, e.event_id, e.occurred_at, p.workspace_id, e.project_id, e.country,"
            " e.category, e.window_kind, e.count, e.free, e.charged_amount, e.charged_fraction, e.platform_amount,"
            " e.platform_fraction, e.currency, e.posting_id, e.levels"
            " FROM usage_event e JOIN project p ON p.id = e.project_id"
            " WHERE e.partner_id IN (SELECT d.id FROM partner d WHERE d.id = $1 OR d.parent_id = $1"
            " OR d.parent_id IN (SELECT c.id FROM partner c WHERE c.parent_id = $1))"
            " AND e.occurred_at >= $2 AND e.occurred_at < $3 AND e.id > $4"
            " ORDER BY e.id LIMIT $5"
        )

        def row(r: dict[str, object]) -> list[object]:
            currency = str(r["currency"])
            received, paid = _shares(r, partner_id)
            return [
                r["event_id"], _iso(r["occurred_at"]), r["workspace_id"], r["project_id"], r["country"],
                r["category"], r["window_kind"], r["count"], "true" if r["free"] else "false",
                format_fine(received, currency), format_fine(paid, currency),
                currency, r["posting_id"], audit.global_id("Partner", int(str(r["partner_id"]))),
            ]  # fmt: skip

    else:
        kind = {"renewal-deductions": "RENEWAL", "package-deductions": "PACKAGE"}.get(report, "PLAN")
        # The partner's deductions, and its share of those of the partners below it (its parent's price).
        header = [
            "deduction_id", "created_at", "debited_at", "workspace_id", "plan_id", "source", "amount",
            "currency", "status", "posting_id", "seller_id",
        ]  # fmt: skip
        query = (
            "SELECT id, partner_id, created_at, debited_at, workspace_id, plan_id, source, amount, currency,"
            " posting_id, chain FROM platform_deduction"
            " WHERE partner_id IN (SELECT d.id FROM partner d WHERE d.id = $1 OR d.parent_id = $1"
            " OR d.parent_id IN (SELECT c.id FROM partner c WHERE c.parent_id = $1))"
            " AND created_at >= $2 AND created_at < $3 AND id > $4 AND kind = $6 ORDER BY id LIMIT $5"
        )

        def row(r: dict[str, object]) -> list[object]:
            currency = str(r["currency"])
            return [
                r["id"], _iso(r["created_at"]), _iso(r["debited_at"]), r["workspace_id"], r["plan_id"],
                r["source"], format_minor(_share_of(r, partner_id), currency),
                currency, "DEBITED" if r["debited_at"] else "PENDING", r["posting_id"],
                audit.global_id("Partner", int(str(r["partner_id"]))),
            ]  # fmt: skip

    yield _line(header)
    last = 0
    extra: tuple[str, ...] = () if report == "wcc-deductions" else (kind,)
    while True:
        rows = await sql.fetch(query, partner_id, start, end, last, PAGE, *extra)
        if not rows:
            return
        yield "".join(_line(row(r)) for r in rows)
        last = int(rows[-1]["id"])


def _share_of(deduction: dict[str, object], partner_id: int) -> int:
    """What ``partner_id`` is debited by a platform deduction: its own amount, or its level's in the chain."""
    if int(str(deduction["partner_id"])) == partner_id:
        return int(str(deduction["amount"]))
    raw = deduction["chain"]
    chain: list[dict[str, int]] = json.loads(raw) if isinstance(raw, str | bytes) else raw  # type: ignore[assignment]
    return next((int(level["amount"]) for level in chain if int(level["partner_id"]) == partner_id), 0)


def _fine(whole: object, fine: object) -> int:
    return int(str(whole)) * FINE + int(str(fine))


def _shares(event: dict[str, object], partner_id: int) -> tuple[int, int]:
    """What ``partner_id`` was paid for a usage event and what it paid up for it, exact in fine units: for
    its own client's event, the client's charge and the event's platform amount; for an event of a partner
    below it, what the level below paid it and what it paid its parent (``usage_event.levels``)."""
    charged = _fine(event["charged_amount"], event["charged_fraction"])
    platform = _fine(event["platform_amount"], event["platform_fraction"])
    if int(str(event["partner_id"])) == partner_id:
        return charged, platform
    raw = event["levels"]
    # jsonb arrives as text through the raw connection, and SQLite keeps text.
    levels: list[list[int]] = json.loads(raw) if isinstance(raw, str | bytes) else raw  # type: ignore[assignment]
    paid_by = [int(cost) for _, cost in levels] + [platform]  # what each level pays its parent, top first
    index = [int(level) for level, _ in levels].index(partner_id)
    return paid_by[index + 1], paid_by[index]


def _iso(value: object) -> str:
    if value is None:
        return ""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))  # SQLite: text
    return moment.astimezone(UTC).isoformat()
