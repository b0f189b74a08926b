"""The partner's monthly statement: how its centralised balance moved in a month, and what its clients paid it.

The balance part is read from the ledger alone: the balance at the start (the ``balance_after`` of the
partner wallet's last entry before the month), the month's entries summed per cause and direction (what
its parent deducted for plans, renewals, usage and packages, what it bought or was granted), and the
balance at the end (the last entry's ``balance_after`` in the month). It reconciles when the lines add up
to the end less the start: every line is the sum of ledger entries, which the API lists under the line
(``PartnerStatement.lines.entries``) and the CSV lists one by one.

What clients paid is money the partner collected through its own gateway, outside its balance: payments
of its workspaces paid in the month, and refunds of them done in the month, per currency.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from tortoise.queryset import QuerySet

from billing.core import sql, tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import check_currency, format_minor
from billing.core.periods import month_range
from billing.core.tenancy import Viewer
from billing.documents import pdf
from models.enums import LedgerCause, OwnerKind, Permission
from models.tenancy import Partner
from models.wallets import LedgerEntry, Wallet

PAGE = 500


@dataclass(frozen=True, slots=True)
class Line:
    cause: LedgerCause
    credit: bool  # money into the balance (True) or out of it
    amount: int  # signed, minor units: the sum of its entries
    entries: int


@dataclass(frozen=True, slots=True)
class ClientMoney:
    currency: str
    paid: int
    payments: int
    refunded: int
    refunds: int


@dataclass(frozen=True, slots=True)
class Statement:
    partner_id: int
    month: str
    start: datetime
    end: datetime
    currency: str
    wallet_id: int | None  # the partner's balance in that currency (None: it never had one)
    opening: int
    closing: int
    lines: list[Line]
    client_money: list[ClientMoney]

    @property
    def movement(self) -> int:
        return sum(line.amount for line in self.lines)

    @property
    def reconciled(self) -> bool:
        """The lines (sums of the month's entries) move the balance from its start to its end."""
        return self.opening + self.movement == self.closing


async def check(viewer: Viewer, partner_id: int, month: str, currency: str | None) -> tuple[Partner, str]:
    """The partner (in the caller's scope) and the statement's currency (the partner's own by default)."""
    viewer.require(Permission.READ_REPORTS)
    if viewer.kind == "WORKSPACE":
        raise BillingError(ErrorCode.FORBIDDEN, "a statement is the partner's")
    partner = await tenancy.get_scoped(tenancy.partners(viewer, with_descendants=True), partner_id, "partner")
    month_range(month)
    return partner, check_currency(currency) if currency else partner.default_currency


async def _balance_before(wallet_id: int, moment: datetime) -> int:
    rows = await sql.fetch(
        "SELECT balance_after FROM ledger_entry WHERE wallet_id = $1 AND created_at < $2 ORDER BY id DESC LIMIT 1",
        wallet_id,
        moment,
    )
    return int(rows[0]["balance_after"]) if rows else 0


async def monthly(viewer: Viewer, *, partner_id: int, month: str, currency: str | None = None) -> Statement:
    partner, currency = await check(viewer, partner_id, month, currency)
    return await build(partner, month, currency)


async def build(partner: Partner, month: str, currency: str) -> Statement:
    """The statement of a partner already checked (:func:`check`)."""
    start, end = month_range(month)
    wallet = await Wallet.get_or_none(
        partner_id=partner.id, owner_kind=OwnerKind.PARTNER, workspace_id=None, project_id=None, unit=currency
    )
    lines: list[Line] = []
    opening = closing = 0
    if wallet is not None:
        opening, closing = await _balance_before(wallet.id, start), await _balance_before(wallet.id, end)
        rows = await sql.fetch(
            "SELECT cause, amount > 0 AS credit, SUM(amount) AS total, COUNT(*) AS entries FROM ledger_entry"
            " WHERE wallet_id = $1 AND created_at >= $2 AND created_at < $3 GROUP BY cause, amount > 0",
            wallet.id,
            start,
            end,
        )
        lines = sorted(
            (Line(LedgerCause(r["cause"]), bool(r["credit"]), int(r["total"]), int(r["entries"])) for r in rows),
            key=lambda line: (not line.credit, line.cause.value),
        )
    return Statement(
        partner.id, month, start, end, currency, wallet.id if wallet else None, opening, closing, lines,
        await _client_money(partner.id, start, end),
    )  # fmt: skip


async def _client_money(partner_id: int, start: datetime, end: datetime) -> list[ClientMoney]:
    paid = await sql.fetch(
        "SELECT currency, SUM(amount) AS total, COUNT(*) AS n FROM payment WHERE partner_id = $1"
        " AND payer_key LIKE 'WORKSPACE:%' AND fulfilled_at >= $2 AND fulfilled_at < $3 GROUP BY currency",
        partner_id,
        start,
        end,
    )
    refunded = await sql.fetch(
        "SELECT r.currency, SUM(r.amount) AS total, COUNT(*) AS n FROM refund r JOIN payment p ON p.id = r.payment_id"
        " WHERE p.partner_id = $1 AND p.payer_key LIKE 'WORKSPACE:%' AND r.status = 'DONE'"
        " AND r.settled_at >= $2 AND r.settled_at < $3 GROUP BY r.currency",
        partner_id,
        start,
        end,
    )
    found: dict[str, list[int]] = {}
    for row in paid:
        found.setdefault(str(row["currency"]), [0, 0, 0, 0])[0:2] = [int(row["total"]), int(row["n"])]
    for row in refunded:
        found.setdefault(str(row["currency"]), [0, 0, 0, 0])[2:4] = [int(row["total"]), int(row["n"])]
    return [ClientMoney(currency, *values) for currency, values in sorted(found.items())]


def line_entries(statement: Statement, line: Line) -> QuerySet[LedgerEntry]:
    """The ledger entries one line of the statement adds up."""
    found = LedgerEntry.filter(
        wallet_id=statement.wallet_id or 0,
        created_at__gte=statement.start,
        created_at__lt=statement.end,
        cause=line.cause,
    )
    return found.filter(amount__gt=0) if line.credit else found.filter(amount__lte=0)


def _iso(value: object) -> str:
    """A timestamp as ISO 8601 (SQLite hands back text, PostgreSQL a datetime)."""
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _row(values: list[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue()


async def csv_lines(statement: Statement) -> AsyncIterator[str]:
    """The statement as CSV: its opening balance, every ledger entry of the month (traceable by its id and
    posting), its closing balance, then what clients paid."""
    money = statement.currency

    def amount(value: int) -> str:
        return format_minor(value, money)

    yield _row(["section", "entry_id", "posting_id", "created_at", "cause", "caused_by", "note", "amount",
                "balance_after", "currency"])  # fmt: skip
    yield _row(["opening", "", "", statement.start.isoformat(), "", "", "", "", amount(statement.opening), money])
    last = 0
    while True:
        rows = await sql.fetch(
            "SELECT e.id, e.posting_id, e.created_at, e.cause, e.amount, e.balance_after, p.caused_by_type,"
            " p.caused_by_id, p.note FROM ledger_entry e JOIN posting p ON p.id = e.posting_id"
            " WHERE e.wallet_id = $1 AND e.created_at >= $2 AND e.created_at < $3 AND e.id > $4"
            " ORDER BY e.id LIMIT $5",
            statement.wallet_id or 0,
            statement.start,
            statement.end,
            last,
            PAGE,
        )
        for r in rows:
            caused_by = f"{r['caused_by_type']}:{r['caused_by_id']}" if r["caused_by_type"] else ""
            yield _row(["entry", r["id"], r["posting_id"], _iso(r["created_at"]), r["cause"], caused_by, r["note"],
                        amount(int(r["amount"])), amount(int(r["balance_after"])), money])  # fmt: skip
        if len(rows) < PAGE:
            break
        last = int(rows[-1]["id"])
    yield _row(["closing", "", "", statement.end.isoformat(), "", "", "", amount(statement.movement),
                amount(statement.closing), money])  # fmt: skip
    for client in statement.client_money:
        yield _row(["clients_paid", "", "", "", "", "", f"{client.payments} payments",
                    format_minor(client.paid, client.currency), "", client.currency])  # fmt: skip
        yield _row(["clients_refunded", "", "", "", "", "", f"{client.refunds} refunds",
                    format_minor(client.refunded, client.currency), "", client.currency])  # fmt: skip


_CAUSES = {
    "en": {
        "PURCHASE": "Purchases", "RENEWAL": "Renewals", "USAGE": "Usage", "GRANT": "Grants", "TRANSFER": "Transfers",
        "REFUND": "Refunds", "CHARGEBACK": "Chargebacks", "ADD_ON": "Add-ons", "ADJUSTMENT": "Adjustments",
        "EXPIRY": "Expiries", "REFUND_FAILED": "Failed refunds",
    },
    "pt-BR": {
        "PURCHASE": "Compras", "RENEWAL": "Renovações", "USAGE": "Uso", "GRANT": "Concessões",
        "TRANSFER": "Transferências", "REFUND": "Reembolsos", "CHARGEBACK": "Estornos", "ADD_ON": "Adicionais",
        "ADJUSTMENT": "Ajustes", "EXPIRY": "Expirações", "REFUND_FAILED": "Reembolsos desfeitos",
    },
}  # fmt: skip
_WORDS = {
    "en": ("Statement", "Opening balance", "Closing balance", "in", "out", "entries", "Your clients paid you",
           "Refunded to your clients", "Reconciled with the ledger", "NOT reconciled with the ledger"),
    "pt-BR": ("Extrato", "Saldo inicial", "Saldo final", "entrada", "saída", "lançamentos", "Seus clientes pagaram",
              "Reembolsado aos clientes", "Conferido com o razão", "NÃO confere com o razão"),
}  # fmt: skip


def statement_pdf(statement: Statement, brand: str, language: str) -> bytes:
    """The statement as a one-page PDF (more if it has many lines), the same bytes for the same statement."""
    pdf.check_language(language)
    title, opening, closing, credit, debit, entries, paid, refunded, ok, not_ok = _WORDS[language]
    page = FPDF(format="A4", unit="mm")
    page.set_creation_date(statement.end)
    page.set_producer(pdf.PLATFORM_NAME)
    page.add_page()
    page.set_font("Helvetica", "B", 18)
    page.cell(0, 10, pdf.latin(brand), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    page.set_font("Helvetica", "B", 13)
    page.cell(0, 8, pdf.latin(f"{title} {statement.month} ({statement.currency})"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    page.ln(4)

    def row(label: str, value: str, *, bold: bool = False) -> None:
        page.set_font("Helvetica", "B" if bold else "", 10)
        page.cell(130, 7, pdf.latin(label))
        page.cell(50, 7, pdf.latin(value), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def money(amount: int, currency: str = statement.currency) -> str:
        return pdf.money(amount, currency, language)

    row(opening, money(statement.opening), bold=True)
    for line in statement.lines:
        label = f"{_CAUSES[language][line.cause.value]} ({credit if line.credit else debit}, {line.entries} {entries})"
        row(label, money(line.amount))
    row(closing, money(statement.closing), bold=True)
    page.ln(2)
    page.set_font("Helvetica", "", 9)
    page.cell(0, 6, pdf.latin(ok if statement.reconciled else not_ok), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    page.ln(4)
    for client in statement.client_money:
        row(f"{paid} ({client.payments})", money(client.paid, client.currency))
        row(f"{refunded} ({client.refunds})", money(-client.refunded, client.currency))
    return bytes(page.output())
