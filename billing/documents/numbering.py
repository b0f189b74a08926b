"""Gapless numbers, per issuer and kind of document, that an accountant accepts: ``ACME-2027-000123``.

A document takes its number in the transaction that finalizes it, by advancing its series' row with one
conditional UPDATE. On PostgreSQL the row stays locked until that transaction ends, so concurrent
finalizations (in any number of processes) take consecutive numbers one after the other; SQLite writes one
transaction at a time. A finalization that rolls back rolls the series back with it: no gap. And the
database itself refuses a number given twice in one series (``invoice``'s unique series and number).
"""

from __future__ import annotations

import re
from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from billing.core import sql
from billing.core.errors import BillingError, ErrorCode
from models.documents import Document, DocumentSeries
from models.enums import DocumentKind, SeriesReset
from models.tenancy import Partner

DEFAULT_DIGITS = 6
_KIND_MARK = {DocumentKind.INVOICE: "", DocumentKind.CREDIT_NOTE: "CN-", DocumentKind.RECEIPT: "R-"}

# One statement: the number this document takes, and the series moved past it. A YEARLY series starts
# again at 1 in a year it has not counted in yet.
_TAKE = """
UPDATE document_series
SET next_number = CASE WHEN reset = 'YEARLY' AND (year IS NULL OR year <> $2) THEN 2 ELSE next_number + 1 END,
    year = $2
WHERE id = $1
RETURNING next_number - 1 AS number, prefix, digits, reset
"""
# A YEARLY series counts from 1 each year: a document stores its number as year * YEAR_KEY + n, which keeps
# the database's one-number-per-series rule without a year column (its text shows n).
YEAR_KEY = 10**9


def number_text(prefix: str, digits: int, number: int, year: int) -> str:
    return prefix.replace("{year}", str(year)) + str(number).zfill(digits)


async def series_of(partner_id: int | None, kind: DocumentKind) -> DocumentSeries:
    """The issuer's series for ``kind``, made on first use: the partner's slug in capitals, the kind's
    mark and the year (``ACME-2027-000123``, ``ACME-CN-2027-000007``), never reset. Two first uses at once
    make it once (in a savepoint, so the loser's transaction goes on)."""
    found = await DocumentSeries.get_or_none(partner_id=partner_id, kind=kind)
    if found is not None:
        return found
    issuer = "WB" if partner_id is None else (await Partner.get(id=partner_id)).slug.upper()
    try:
        async with in_transaction("default"):
            return await DocumentSeries.create(
                partner_id=partner_id,
                kind=kind,
                prefix=f"{issuer}-{_KIND_MARK[kind]}{{year}}-",
                digits=DEFAULT_DIGITS,
                reset=SeriesReset.NEVER,
            )
    except IntegrityError:  # made by a concurrent first use
        return await DocumentSeries.get(partner_id=partner_id, kind=kind)


async def take_number(series_id: int, at: datetime) -> tuple[int, str]:
    """The next number of the series and its text, for a document finalized at ``at``. Only inside the
    finalizing transaction: outside one, a failure after it would leave a gap."""
    if not sql.in_transaction():
        raise RuntimeError("a document number is taken inside the transaction that finalizes the document")
    rows = await sql.fetch(_TAKE, series_id, at.year)
    row = rows[0]
    shown = int(row["number"])
    stored = at.year * YEAR_KEY + shown if row["reset"] == SeriesReset.YEARLY.value else shown
    return stored, number_text(row["prefix"], int(row["digits"]), shown, at.year)


_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9/_.{}-]{0,39}")


async def set_series(
    partner_id: int | None, kind: DocumentKind, *, prefix: str, digits: int = DEFAULT_DIGITS, reset: SeriesReset
) -> DocumentSeries:
    """The issuer's numbering for ``kind`` from its next document on: the prefix (``{year}`` for the
    document's year), how many digits, and whether numbers start again each year. The numbers already
    given stay as they are, and the count goes on (a series never goes back). The reset is chosen before
    the series' first document, and a yearly series shows the year."""
    if (
        not _PREFIX.fullmatch(prefix)
        or prefix.replace("{year}", "").count("{")
        or prefix.replace("{year}", "").count("}")
    ):
        raise BillingError(
            ErrorCode.INVALID_INPUT,
            "a prefix is 1 to 40 letters, digits, - _ . / and {year}, starting with a letter or digit",
            field="prefix",
        )
    if not 1 <= digits <= 12:
        raise BillingError(ErrorCode.INVALID_INPUT, "a number has 1 to 12 digits", field="digits")
    if reset is SeriesReset.YEARLY and "{year}" not in prefix:
        raise BillingError(
            ErrorCode.INVALID_INPUT, "a series that starts again each year shows {year} in its prefix", field="prefix"
        )
    series = await series_of(partner_id, kind)
    if reset is not series.reset and await Document.exists(series_id=series.id):
        # Its numbers so far were given under the other rule: switching would give some of them again.
        raise BillingError(
            ErrorCode.INVALID_INPUT, "a series' reset is chosen before its first document", field="reset"
        )
    await DocumentSeries.filter(id=series.id).update(prefix=prefix, digits=digits, reset=reset)
    return await DocumentSeries.get(id=series.id)
