"""Credits that expire: each grant or purchase with an expiry is a lot; spending takes from the
earliest-expiring lot first (a plan's allowance before the extras that roll over); when a lot's time
comes, the worker moves what is left of it to the EXPIRY account with its own ledger entry.

Only expiring credit is tracked in lots: a wallet's balance beyond its lots never expires.
"""

from __future__ import annotations

import logging
from datetime import datetime

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from billing.accounts import ledger
from billing.accounts.ledger import CausedBy, Leg
from billing.core import audit, clock, sql
from billing.core.errors import BillingError, ErrorCode
from models.enums import ExternalAccount, LedgerCause
from models.wallets import CreditLot, Wallet

log = logging.getLogger("whitebill.expiry")
_OPEN_LOTS = (
    "SELECT id, remaining FROM credit_lot WHERE wallet_id = $1 AND expired_at IS NULL AND remaining > 0 "
    "ORDER BY expires_at, id"
)
# Whether wallet $1 has credit in open lots: a debit consumes lots only then.
HAS_OPEN_LOTS = "EXISTS (SELECT 1 FROM credit_lot WHERE wallet_id = $1 AND expired_at IS NULL AND remaining > 0)"
_DUE = (
    "SELECT id FROM credit_lot WHERE expired_at IS NULL AND expires_at IS NOT NULL AND expires_at <= $1 "
    "ORDER BY expires_at, id LIMIT $2"
)


async def add_lot(wallet: Wallet, amount: int, expires_at: datetime) -> CreditLot:
    """Units just credited to ``wallet`` that expire at ``expires_at`` (call in the crediting transaction)."""
    return await CreditLot.create(
        partner_id=wallet.partner_id, wallet_id=wallet.id, amount=amount, remaining=amount, expires_at=expires_at
    )


async def consume(wallet_id: int, amount: int) -> None:
    """Units just taken from the wallet come out of its earliest-expiring lots (call in the debiting
    transaction). Each decrement is conditional, so concurrent spends never take a lot below zero."""
    left = amount
    while left > 0:
        lots = await sql.fetch(_OPEN_LOTS, wallet_id)
        if not lots:
            return  # the rest came out of credit that does not expire
        for lot in lots:
            take = min(int(lot["remaining"]), left)
            taken = await sql.execute(
                "UPDATE credit_lot SET remaining = remaining - $1 WHERE id = $2 AND remaining >= $1 "
                "AND expired_at IS NULL",
                take,
                lot["id"],
            )
            if taken == 1:
                left -= take
            if left == 0:
                return
        # A concurrent spend changed a lot under us: read them again.


async def expire(lot_id: int) -> int:
    """Expire one lot whose time has come: what is left of it leaves the wallet. Returns the amount."""
    async with in_transaction("default"):
        rows = await sql.fetch("SELECT remaining, wallet_id FROM credit_lot WHERE id = $1", lot_id)
        claimed = await sql.execute(
            "UPDATE credit_lot SET expired_at = $1, remaining = 0 WHERE id = $2 AND expired_at IS NULL",
            clock.now(),
            lot_id,
        )
        if claimed != 1:
            return 0  # another worker expired it
        wallet = await Wallet.get(id=int(rows[0]["wallet_id"]))
        amount = min(int(rows[0]["remaining"]), max(0, int(wallet.balance)))
        if amount > 0:
            await ledger.post(
                [Leg(amount, wallet.unit, wallet.id, ExternalAccount.EXPIRY)],
                cause=LedgerCause.EXPIRY,
                caused_by=CausedBy("CreditLot", str(lot_id)),
                note="expired",
            )
            await audit.emit(
                "wallet.credits_expired",
                wallet.partner_id,
                {"wallet_id": wallet.id, "unit": wallet.unit, "amount": amount, "lot_id": lot_id},
            )
    return amount


async def open_lots(wallet_id: int, *, after: int | None, limit: int) -> list[CreditLot]:
    """At most ``limit`` of the wallet's lots with credit left, in the order they are spent (earliest
    expiry, then oldest), from the one after lot ``after`` on: a keyset on that order, so a page
    neither repeats nor skips a lot when others are spent or expire in between."""
    lots = CreditLot.filter(wallet_id=wallet_id, expired_at=None, remaining__gt=0, expires_at__isnull=False)
    if after is not None:
        last = await CreditLot.get_or_none(id=after, wallet_id=wallet_id, expires_at__isnull=False)
        if last is None:
            raise BillingError(ErrorCode.INVALID_CURSOR, "not a valid cursor", field="after")
        lots = lots.filter(Q(expires_at__gt=last.expires_at) | Q(expires_at=last.expires_at, id__gt=last.id))
    return await lots.order_by("expires_at", "id").limit(limit)


async def run_due(*, limit: int = 100) -> int:
    """Expire the lots whose time has come; returns how many were looked at."""
    handled = 0
    for row in await sql.fetch(_DUE, clock.now(), limit):
        handled += 1
        try:
            await expire(int(row["id"]))
        except Exception:
            log.exception("expiring a credit lot failed", extra={"lot_id": row["id"]})
    return handled
