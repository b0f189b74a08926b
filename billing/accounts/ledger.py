"""The ledger: the writer of wallet balances and ledger entries (usage batches, ``billing.usage.whatsapp``,
write theirs with set-based statements that keep the same rules).

A posting is one or more legs. Each leg moves a positive amount of one unit from a source to a
destination, each either a wallet or an external account (gateway, issuance, revenue, expiry). All
legs of a posting commit together or not at all, and no wallet goes below ``-credit_limit``: the
check is part of the UPDATE that changes the balance, so it holds under any concurrency on SQLite
and PostgreSQL (and the database's CHECK constraint backs it up).

On PostgreSQL a posting that touches one wallet (a grant, a spend: the hot case) is a single
statement, so the wallet's row lock is held for one statement only.

Every posting announces the wallets it changed (``billing.core.realtime``) within its transaction, so
subscribers hear of it once it commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tortoise.transactions import in_transaction

from billing.core import clock, observe, realtime, sql
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import MAX_AMOUNT, MAX_BALANCE
from models.enums import ExternalAccount, LedgerCause

Account = int | ExternalAccount  # a wallet id, or an account outside whitebill's wallets


@dataclass(frozen=True, slots=True)
class Leg:
    amount: int
    unit: str
    source: Account
    destination: Account


@dataclass(frozen=True, slots=True)
class CausedBy:
    """What a posting links to, e.g. CausedBy("Payment", "42")."""

    type: str
    id: str


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    wallet_id: int
    amount: int
    balance_after: int


@dataclass(frozen=True, slots=True)
class PostingResult:
    posting_id: int
    entries: list[Entry] = field(default_factory=list)

    def balance_of(self, wallet_id: int) -> int:
        """The wallet's balance right after this posting."""
        return [e.balance_after for e in self.entries if e.wallet_id == wallet_id][-1]


def _validate(legs: Sequence[Leg]) -> None:
    if not legs:
        raise BillingError(ErrorCode.INVALID_INPUT, "a posting needs at least one leg")
    for leg in legs:
        if not 0 < leg.amount <= MAX_AMOUNT:
            raise BillingError(ErrorCode.INVALID_AMOUNT, f"amount must be between 1 and {MAX_AMOUNT}", field="amount")
        if leg.source == leg.destination:
            raise BillingError(ErrorCode.INVALID_INPUT, "a leg cannot move value to where it came from")
        if isinstance(leg.source, ExternalAccount) and isinstance(leg.destination, ExternalAccount):
            raise BillingError(ErrorCode.INVALID_INPUT, "a leg must touch at least one wallet")


def _sides(legs: Sequence[Leg]) -> list[tuple[int, int, str, Account]]:
    """(wallet id, signed amount, unit, counterparty) for every wallet side of every leg, in order."""
    sides: list[tuple[int, int, str, Account]] = []
    for leg in legs:
        if not isinstance(leg.source, ExternalAccount):
            sides.append((leg.source, -leg.amount, leg.unit, leg.destination))
        if not isinstance(leg.destination, ExternalAccount):
            sides.append((leg.destination, leg.amount, leg.unit, leg.source))
    return sides


async def post(
    legs: Sequence[Leg],
    *,
    cause: LedgerCause,
    caused_by: CausedBy | None = None,
    note: str = "",
    actor: str | None = None,
) -> PostingResult:
    """Write one posting. Raises INSUFFICIENT_BALANCE (nothing written) if any wallet would go
    below its credit limit, NOT_FOUND or UNIT_MISMATCH for a wrong wallet."""
    _validate(legs)
    sides = _sides(legs)
    wallets = {wallet_id for wallet_id, *_ in sides}
    if len(wallets) == 1 and sql.is_postgres():
        return await _post_single_wallet_pg(sides, cause, caused_by, note, actor)
    async with in_transaction("default"):
        return await _post_in_transaction(sides, cause, caused_by, note, actor)


_SINGLE_WALLET_PG = """
WITH w AS (
    UPDATE wallet SET balance = balance + $1, updated_at = $2
    WHERE id = $3 AND unit = $4 AND balance + $1 >= -credit_limit AND balance + $1 <= $12
    RETURNING id, balance, partner_id
), p AS (
    INSERT INTO posting (created_at, partner_id, cause, caused_by_type, caused_by_id, note, actor)
    SELECT $2, w.partner_id, $5, $6, $7, $8, $9 FROM w
    RETURNING id
), n AS (
    SELECT {notify} FROM w
)
INSERT INTO ledger_entry (created_at, posting_id, partner_id, wallet_id, unit, amount, balance_after, cause,
                          counter_wallet_id, counter_account)
SELECT $2, p.id, w.partner_id, w.id, $4, $1, w.balance, $5, $10, $11 FROM w, p, n
RETURNING id, posting_id, balance_after
""".replace("{notify}", realtime.notify_sql(realtime.WALLET, "w.id", "w.partner_id"))


async def _post_single_wallet_pg(
    sides: list[tuple[int, int, str, Account]],
    cause: LedgerCause,
    caused_by: CausedBy | None,
    note: str,
    actor: str | None,
) -> PostingResult:
    if len(sides) != 1:
        # Two sides on one wallet cancel out; the general path records both.
        async with in_transaction("default"):
            return await _post_in_transaction(sides, cause, caused_by, note, actor)
    wallet_id, amount, unit, counter = sides[0]
    rows = await sql.fetch(
        _SINGLE_WALLET_PG,
        amount,
        clock.now(),
        wallet_id,
        unit,
        cause.value,
        caused_by.type if caused_by else None,
        caused_by.id if caused_by else None,
        note,
        actor,
        None if isinstance(counter, ExternalAccount) else counter,
        counter.value if isinstance(counter, ExternalAccount) else None,
        MAX_BALANCE,
    )
    if not rows:
        await _explain_refusal(wallet_id, unit, amount)
    row = rows[0]
    observe.ledger_posted(cause.value)
    return PostingResult(row["posting_id"], [Entry(row["id"], wallet_id, amount, row["balance_after"])])


async def _post_in_transaction(
    sides: list[tuple[int, int, str, Account]],
    cause: LedgerCause,
    caused_by: CausedBy | None,
    note: str,
    actor: str | None,
) -> PostingResult:
    now = clock.now()
    totals: dict[int, tuple[int, str]] = {}
    for wallet_id, amount, unit, _ in sides:
        total, known_unit = totals.get(wallet_id, (0, unit))
        if known_unit != unit:
            raise BillingError(ErrorCode.UNIT_MISMATCH, f"wallet {wallet_id} cannot hold both {known_unit} and {unit}")
        totals[wallet_id] = (total + amount, unit)

    final: dict[int, int] = {}
    partner_of: dict[int, int | None] = {}
    # Ascending id order: two postings over the same wallets lock them in the same order.
    for wallet_id in sorted(totals):
        delta, unit = totals[wallet_id]
        rows = await sql.fetch(
            "UPDATE wallet SET balance = balance + $1, updated_at = $2 "
            "WHERE id = $3 AND unit = $4 AND balance + $1 >= -credit_limit AND balance + $1 <= $5 "
            "RETURNING balance, partner_id",
            delta,
            now,
            wallet_id,
            unit,
            MAX_BALANCE,
        )
        if not rows:
            await _explain_refusal(wallet_id, unit, delta)
        final[wallet_id] = rows[0]["balance"]
        partner_of[wallet_id] = rows[0]["partner_id"]

    partner_id = next((p for p in partner_of.values() if p is not None), None)
    posting = await sql.fetch(
        "INSERT INTO posting (created_at, partner_id, cause, caused_by_type, caused_by_id, note, actor) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        now,
        partner_id,
        cause.value,
        caused_by.type if caused_by else None,
        caused_by.id if caused_by else None,
        note,
        actor,
    )
    posting_id = posting[0]["id"]
    observe.ledger_posted(cause.value)  # inside this transaction: counted once it commits

    # Running balance per wallet, so each entry's balance_after is exact even when a wallet has
    # several sides in one posting.
    running = {w: final[w] - totals[w][0] for w in totals}
    entries: list[Entry] = []
    for wallet_id, amount, unit, counter in sides:
        running[wallet_id] += amount
        rows = await sql.fetch(
            "INSERT INTO ledger_entry (created_at, posting_id, partner_id, wallet_id, unit, amount, balance_after,"
            " cause, counter_wallet_id, counter_account) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            now,
            posting_id,
            partner_of[wallet_id],
            wallet_id,
            unit,
            amount,
            running[wallet_id],
            cause.value,
            None if isinstance(counter, ExternalAccount) else counter,
            counter.value if isinstance(counter, ExternalAccount) else None,
        )
        entries.append(Entry(rows[0]["id"], wallet_id, amount, running[wallet_id]))
    await realtime.publish(*(realtime.Change(realtime.WALLET, w, partner_of[w]) for w in sorted(totals)))
    return PostingResult(posting_id, entries)


async def _explain_refusal(wallet_id: int, unit: str, delta: int) -> None:
    rows = await sql.fetch("SELECT unit, balance, credit_limit FROM wallet WHERE id = $1", wallet_id)
    if not rows:
        raise BillingError(ErrorCode.NOT_FOUND, "wallet not found", field="walletId")
    if rows[0]["unit"] != unit:
        raise BillingError(ErrorCode.UNIT_MISMATCH, f"wallet holds {rows[0]['unit']}, not {unit}")
    if delta > 0:
        raise BillingError(ErrorCode.INVALID_AMOUNT, f"a balance cannot exceed {MAX_BALANCE}", field="amount")
    raise BillingError(
        ErrorCode.INSUFFICIENT_BALANCE,
        "the wallet's balance and credit limit do not cover this amount",
        field="amount",
        balance=rows[0]["balance"],
        credit_limit=rows[0]["credit_limit"],
    )
