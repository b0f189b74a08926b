"""Wallets: the manual movements partners make (grants, debits, transfers, credit limits); opening
one per owner and unit is ``billing.accounts.opening``.

Balances change through ``billing.accounts.ledger.post``, through this module's one-statement manual
adjustment on PostgreSQL (``_ONE_STATEMENT``: the same balance, posting, entry and audit records in one
statement), and through the usage batches' set-based statements (``billing.usage.whatsapp``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from tortoise import timezone
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from billing.accounts import expiry, ledger, top_ups
from billing.accounts.ledger import CausedBy, Leg
from billing.accounts.opening import named_wallet, open_wallet, wallet_owner_key, workspace_wallet
from billing.core import audit, clock, idempotency, observe, realtime, sql, tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import (
    MAX_BALANCE,
    Entered,
    check_amount,
    check_currency,
    check_unit,
    decimal_places,
    is_currency,
    minor_of,
)
from billing.core.tenancy import Viewer
from billing.core.text import check_text
from models.enums import ExternalAccount, IdempotencyStatus, LedgerCause, OwnerKind, Permission, ViewerKind
from models.tenancy import Partner
from models.wallets import Wallet

MAX_NOTE = 1000


@dataclass(frozen=True, slots=True)
class Adjustment:
    """The outcome of a manual grant or debit."""

    wallet_id: int
    posting_id: int
    balance: int


def check_note(note: str) -> str:
    return check_text(note, "note", max_length=MAX_NOTE, allow_empty=True, multiline=True)


@dataclass(frozen=True, slots=True)
class _Target:
    """The wallet a manual movement is for: its owner, and its unit as asked."""

    partner_id: int | None
    owner_kind: OwnerKind
    owner_id: int
    unit: str


async def adjust_workspace_balance(
    viewer: Viewer,
    *,
    workspace_id: int,
    unit: str,
    amount: int,
    note: str,
    idempotency_key: str,
    debit: bool = False,
    expires_at: datetime | None = None,
) -> Adjustment:
    """A partner adds units to a workspace wallet by hand (UChat "add points"), or takes them away.
    Granted units may expire: they are then spent before units that do not."""
    viewer.require(Permission.MANAGE_BILLING)

    async def target() -> _Target:
        visible = tenancy.workspaces(viewer).only("id", "partner_id")
        workspace = await tenancy.get_scoped(visible, workspace_id, "workspace")
        return _Target(workspace.partner_id, OwnerKind.WORKSPACE, workspace.id, unit)

    request = {"workspace": workspace_id, "expires": str(expires_at)}
    if expires_at is None and sql.is_postgres() and not sql.in_transaction():
        made = await _adjust_in_one_statement(
            viewer,
            workspace_id=workspace_id,
            request=request,
            unit=unit,
            amount=amount,
            note=note,
            idempotency_key=idempotency_key,
            debit=debit,
        )
        if made is not None:
            return made
    return await _adjust(
        viewer,
        target=target,
        caused_by=CausedBy("Workspace", str(workspace_id)),
        request=request,
        amount=amount,
        note=note,
        idempotency_key=idempotency_key,
        debit=debit,
        expires_at=expires_at,
    )


async def grant_partner_balance(
    viewer: Viewer, *, partner_id: int, currency: str, amount: int, note: str, idempotency_key: str
) -> Adjustment:
    """The platform funds a partner's centralised balance by hand (what pays its partner plan); a parent
    funds the balance a partner directly below it holds with it (MANAGE_SUB_PARTNERS): each level's balance
    is with its parent, which debits it for the parent's price of what that partner's clients buy."""
    viewer.require(Permission.MANAGE_PARTNERS if viewer.is_platform else Permission.MANAGE_SUB_PARTNERS)

    async def target() -> _Target:
        partner = await tenancy.sub_partner(viewer, partner_id, child=True)
        return _Target(partner.id, OwnerKind.PARTNER, partner.id, check_currency(currency))

    return await _adjust(
        viewer,
        target=target,
        caused_by=CausedBy("Partner", str(partner_id)),
        request={"partner": partner_id},
        amount=amount,
        note=note,
        idempotency_key=idempotency_key,
        debit=False,
    )


# A workspace's manual grant or debit as one statement (PostgreSQL, outside any transaction): the balance
# change with its posting, ledger entry, audit row, completed idempotency record and announcement commit
# together in one round trip, so the wallet's row lock is held for the statement alone. It changes
# nothing, and the careful path (``_adjust``) takes over, wherever that path would do more than this:
# the workspace not visible, no wallet yet, a balance out of bounds (the careful path explains), open
# lots to take a debit from, or a low-balance notice, its re-arming or an automatic top-up due after the
# change. A key already used fails the statement on the record's unique key, before anything commits;
# the careful path then answers the stored result (or that the key is in use).
_ONE_STATEMENT = """
WITH w AS (
    UPDATE wallet SET balance = balance + $1, updated_at = $2
    WHERE owner_key = $3 AND unit = $4 AND balance + $1 >= -credit_limit AND balance + $1 <= $5
      AND CASE WHEN low_balance_notified
               THEN low_balance_threshold IS NOT NULL AND balance + $1 < low_balance_threshold
               ELSE low_balance_threshold IS NULL OR balance + $1 >= low_balance_threshold END
      AND NOT EXISTS (SELECT 1 FROM auto_top_up a WHERE a.wallet_id = wallet.id AND a.enabled
                      AND a.in_flight_payment_id IS NULL AND wallet.balance + $1 < a.threshold)
      AND ($1 > 0 OR NOT EXISTS (SELECT 1 FROM credit_lot l WHERE l.wallet_id = wallet.id
                                 AND l.expired_at IS NULL AND l.remaining > 0))
      AND EXISTS (SELECT 1 FROM workspace ws WHERE ws.id = $6 AND {visible})
    RETURNING id, balance, partner_id
), p AS (
    INSERT INTO posting (created_at, partner_id, cause, caused_by_type, caused_by_id, note, actor)
    SELECT $2, w.partner_id, $7, 'Workspace', $8, $9, $10 FROM w
    RETURNING id
), e AS (
    INSERT INTO ledger_entry (created_at, posting_id, partner_id, wallet_id, unit, amount, balance_after, cause,
                              counter_account)
    SELECT $2, p.id, w.partner_id, w.id, $4, $1, w.balance, $7, $11 FROM w, p
    RETURNING 1
), k AS (
    INSERT INTO idempotency_record (created_at, scope, operation, key, request_hash, status, result, expires_at)
    SELECT $2, $12, $13, $14, $15, $16, jsonb_build_array(w.id, p.id, w.balance), $17 FROM w, p
    RETURNING 1
), a AS (
    INSERT INTO audit_log (created_at, partner_id, actor, action, target_type, target_id, before, after, request_id)
    SELECT $18, w.partner_id, $10, $13, 'Wallet', w.id::text,
           jsonb_build_object('balance', {balance_before}),
           jsonb_build_object('balance', {balance_after}, 'note', $9::text), $19 FROM w
    RETURNING 1
), n AS (
    SELECT {notify} FROM w
)
SELECT w.id AS wallet_id, p.id AS posting_id, w.balance FROM w, p, e, k, a, n
"""


def _quantity_sql(balance: str) -> str:
    """``audit.quantity`` of a balance the statement computes: its decimal string in the unit $4, whose
    decimal places are $20 (exact: numeric times a power of ten, rounded to as many places)."""
    return (
        f"jsonb_build_object('amount', round(({balance})::numeric * power(10::numeric, -$20::int), $20::int)::text,"
        " 'unit', $4::text)"
    )


_ONE_STATEMENT = (
    _ONE_STATEMENT.replace("{notify}", realtime.notify_sql(realtime.WALLET, "w.id", "w.partner_id"))
    .replace("{balance_before}", _quantity_sql("w.balance - $1"))
    .replace("{balance_after}", _quantity_sql("w.balance"))
)


@lru_cache(maxsize=8)
def _one_statement(visible: str) -> str:
    """``_ONE_STATEMENT`` for one kind of caller's scope (``tenancy.workspace_visible_sql``), made once."""
    return _ONE_STATEMENT.replace("{visible}", visible)


def _operation(debit: bool) -> str:
    return "wallet.debit" if debit else "wallet.grant"


def _keyed_request(request: dict[str, Any], unit: str, amount: int, note: str) -> dict[str, Any]:
    """What an adjustment's idempotency key is bound to: the same on either path, so each answers the other's
    replays."""
    return {**request, "unit": unit, "amount": amount, "note": note}


async def _adjust_in_one_statement(
    viewer: Viewer,
    *,
    workspace_id: int,
    request: dict[str, Any],
    unit: str,
    amount: int,
    note: str,
    idempotency_key: str,
    debit: bool,
) -> Adjustment | None:
    """The common grant or debit in one statement; None when the careful path must run instead."""
    unit = check_unit(unit)
    check_amount(amount)
    note = check_note(note)
    key = idempotency.check_key(idempotency_key)
    operation = _operation(debit)
    visible, scope_params = tenancy.workspace_visible_sql(viewer, "ws", 21)
    now = clock.now()
    try:
        rows = await sql.fetch(
            _one_statement(visible),
            -amount if debit else amount,
            now,
            wallet_owner_key(OwnerKind.WORKSPACE, workspace_id),
            unit,
            MAX_BALANCE,
            workspace_id,
            (LedgerCause.ADJUSTMENT if debit else LedgerCause.GRANT).value,
            str(workspace_id),
            note,
            viewer.actor,
            ExternalAccount.ISSUANCE.value,
            viewer.scope,
            operation,
            key,
            idempotency.request_hash(_keyed_request(request, unit, amount, note)),
            IdempotencyStatus.COMPLETED.value,
            now + idempotency.RETENTION,
            timezone.now(),  # the audit row's time, like ``audit.entry``
            audit.request_id.get(),
            decimal_places(unit),
            *scope_params,
        )
    except IntegrityError:  # the key was used before: the careful path answers for it
        return None
    if not rows:
        return None
    row = rows[0]
    observe.ledger_posted((LedgerCause.ADJUSTMENT if debit else LedgerCause.GRANT).value)
    return Adjustment(row["wallet_id"], row["posting_id"], row["balance"])


_WALLET_OF = "SELECT id, partner_id FROM wallet WHERE owner_key = $1 AND unit = $2"


async def _wallet_of(target: _Target, unit: str, found: list[dict[str, Any]]) -> tuple[int, int | None]:
    """(id, partner id) of the target's wallet: the row of ``_WALLET_OF`` found, or a wallet opened now."""
    if found:
        return int(found[0]["id"]), found[0]["partner_id"]
    wallet = await open_wallet(
        partner_id=target.partner_id, owner_kind=target.owner_kind, owner_id=target.owner_id, unit=unit
    )
    return wallet.id, wallet.partner_id


async def _adjust(
    viewer: Viewer,
    *,
    target: Callable[[], Awaitable[_Target]],
    caused_by: CausedBy,
    request: dict[str, Any],
    amount: int,
    note: str,
    idempotency_key: str,
    debit: bool,
    expires_at: datetime | None = None,
) -> Adjustment:
    operation = _operation(debit)
    # One transaction, so one pooled connection, for the whole call. Everything that does not need
    # the wallet's row lock comes before the posting that takes it; after it, one statement (audit
    # row, stored result, the state the balance watch and the lots decide on), then the commit.
    async with in_transaction("default"):
        found = await target()
        unit = check_unit(found.unit)
        check_amount(amount)
        note = check_note(note)
        if expires_at is not None and (debit or expires_at <= clock.now()):
            raise BillingError(ErrorCode.INVALID_INPUT, "only a grant can expire, and in the future", field="expiresAt")
        claim = await idempotency.claim(
            scope=viewer.scope,
            operation=operation,
            key=idempotency_key,
            request=_keyed_request(request, unit, amount, note),
            read=(_WALLET_OF, (wallet_owner_key(found.owner_kind, found.owner_id), unit)),  # in the same round trip
        )
        if claim.replay is not None:
            return Adjustment(*claim.replay)
        wallet_id, partner_id = await _wallet_of(found, unit, claim.rows)
        if expires_at is not None:
            await expiry.add_lot(await Wallet.get(id=wallet_id), amount, expires_at)
        external = ExternalAccount.ISSUANCE
        leg = Leg(amount, unit, wallet_id, external) if debit else Leg(amount, unit, external, wallet_id)
        result = await ledger.post(
            [leg],
            cause=LedgerCause.ADJUSTMENT if debit else LedgerCause.GRANT,
            caused_by=caused_by,
            note=note,
            actor=viewer.actor,
        )
        made = Adjustment(wallet_id, result.posting_id, result.balance_of(wallet_id))
        (_, completed), state = await sql.write_then_read(
            [
                audit.entry(
                    actor=viewer.actor,
                    action=operation,
                    target_type="Wallet",
                    target_id=wallet_id,
                    partner_id=partner_id,
                    before={"balance": audit.quantity(made.balance + amount if debit else made.balance - amount, unit)},
                    after={"balance": audit.quantity(made.balance, unit), "note": note},
                ),
                claim.completion([made.wallet_id, made.posting_id, made.balance]),
            ],
            _after_change(wallet_id, debit=debit),
        )
        idempotency.check_completed(completed)
        await _settle(wallet_id, amount if debit else 0, state[0])
        return made


_STATE_AFTER_DEBIT = f"SELECT s.*, {expiry.HAS_OPEN_LOTS} AS has_open_lots FROM ({top_ups.STATE}) AS s"  # noqa: S608


def _after_change(wallet_id: int, *, debit: bool) -> sql.Statement:
    """The wallet's state right after its balance changed: what the balance watch decides on, and
    for a debit whether it has open lots to take the units from."""
    return (_STATE_AFTER_DEBIT if debit else top_ups.STATE), (wallet_id,)


async def _settle(wallet_id: int, debited: int, state: dict[str, Any]) -> None:
    """What follows a change in its transaction: a debit comes out of the earliest-expiring lots
    (if the wallet has any); then the balance watch."""
    if debited and state["has_open_lots"]:
        await expiry.consume(wallet_id, debited)
    await top_ups.watch(wallet_id, state)


async def spend(
    wallet_id: int,
    amount: int,
    *,
    cause: LedgerCause,
    caused_by: CausedBy | None = None,
    note: str = "",
    actor: str | None = None,
) -> int:
    """Take ``amount`` from a wallet (usage, renewal...). Returns the new balance."""
    async with in_transaction("default"):
        rows = await sql.fetch("SELECT unit FROM wallet WHERE id = $1", wallet_id)
        if not rows:
            raise BillingError(ErrorCode.NOT_FOUND, "wallet not found", field="walletId")
        unit = rows[0]["unit"]
        revenue = ExternalAccount.PLATFORM_REVENUE if is_currency(unit) else ExternalAccount.ISSUANCE
        result = await ledger.post(
            [Leg(check_amount(amount), unit, wallet_id, revenue)],
            cause=cause,
            caused_by=caused_by,
            note=note,
            actor=actor,
        )
        text, params = _after_change(wallet_id, debit=True)
        [state] = await sql.fetch(text, *params)
        if state["has_open_lots"]:
            await expiry.consume(wallet_id, amount)
    await top_ups.watch(wallet_id, state)
    return result.balance_of(wallet_id)


async def set_credit_limit(
    viewer: Viewer,
    *,
    credit_limit: Entered,
    wallet_id: int | None = None,
    workspace_id: int | None = None,
    unit: str | None = None,
) -> Wallet:
    """How far below zero the wallet may go (``credit_limit`` in its unit). The wallet: by its id, or a
    workspace's of ``unit``. A partner sets it on its clients' wallets; a partner's own wallets (its pool,
    its centralised balance) get credit from whoever the partner owes: the platform for its direct partners,
    the parent for a partner below another (MANAGE_SUB_PARTNERS)."""
    viewer.require(Permission.MANAGE_BILLING)
    if wallet_id is not None and viewer.kind is ViewerKind.PARTNER:
        # A parent reaches the wallets of the partners below it, to set credit on its children's own.
        wallet = await tenancy.get_scoped(tenancy.wallets(viewer, with_descendants=True), wallet_id, "wallet")
    else:
        wallet = await named_wallet(viewer, wallet_id=wallet_id, workspace_id=workspace_id, unit=unit)
    limit = check_amount(minor_of(credit_limit, wallet.unit, "creditLimit"), field="creditLimit", allow_zero=True)
    if wallet.owner_kind in (OwnerKind.WORKSPACE, OwnerKind.PROJECT):
        if not viewer.is_platform and wallet.partner_id != viewer.partner_id:
            raise BillingError(ErrorCode.NOT_FOUND, "wallet not found", field="walletId")  # a descendant's client's
    else:
        creditor = (await Partner.get(id=wallet.partner_id)).parent_id  # None: the platform
        if (None if viewer.is_platform else viewer.partner_id) != creditor:
            raise BillingError(
                ErrorCode.FORBIDDEN,
                "credit on a partner's own wallets comes from whoever it owes: the platform for its direct partners,"
                " its parent for a partner below another",
            )
        if creditor is not None:
            viewer.require(Permission.MANAGE_SUB_PARTNERS)
    # Lowering the limit below a current overdraft would violate the wallet's CHECK constraint.
    async with in_transaction("default"):  # the change and its audit row together
        changed = await sql.execute(
            "UPDATE wallet SET credit_limit = $1, updated_at = $2 WHERE id = $3 AND balance + $1 >= 0",
            limit,
            clock.now(),
            wallet.id,
        )
        if not changed:
            raise BillingError(
                ErrorCode.INVALID_INPUT, "the wallet is overdrawn beyond that limit", field="creditLimit"
            )
        await audit.record(
            actor=viewer.actor,
            action="wallet.credit_limit",
            target_type="Wallet",
            target_id=wallet.id,
            partner_id=wallet.partner_id,
            before={"credit_limit": audit.quantity(wallet.credit_limit, wallet.unit)},
            after={"credit_limit": audit.quantity(limit, wallet.unit)},
        )
    await wallet.refresh_from_db()
    return wallet


@dataclass(frozen=True, slots=True)
class Transfer:
    posting_id: int
    pool_wallet_id: int
    workspace_wallet_id: int


async def transfer_units(
    viewer: Viewer,
    *,
    workspace_id: int,
    unit: str,
    amount: int,
    to_workspace: bool,
    note: str,
    idempotency_key: str,
) -> Transfer:
    """Move units between the partner's pool and one of its workspaces (a partner that bought extra
    conversations or points in bulk hands them out, or takes unused ones back)."""
    if viewer.kind == "WORKSPACE":
        raise BillingError(ErrorCode.FORBIDDEN, "transfers are made by the partner")
    viewer.require(Permission.MANAGE_BILLING)
    workspace = await tenancy.get_scoped(tenancy.workspaces(viewer), workspace_id, "workspace")
    unit = check_unit(unit)
    check_amount(amount)
    note = check_note(note)

    async def act() -> Transfer:
        pool = await open_wallet(
            partner_id=workspace.partner_id, owner_kind=OwnerKind.PARTNER, owner_id=workspace.partner_id, unit=unit
        )
        client = await workspace_wallet(workspace, unit)
        source, destination = (pool, client) if to_workspace else (client, pool)
        result = await ledger.post(
            [Leg(amount, unit, source.id, destination.id)],
            cause=LedgerCause.TRANSFER,
            caused_by=CausedBy("Workspace", str(workspace.id)),
            note=note,
            actor=viewer.actor,
        )
        await expiry.consume(source.id, amount)
        await audit.record(
            actor=viewer.actor,
            action="wallet.transfer",
            target_type="Wallet",
            target_id=destination.id,
            partner_id=workspace.partner_id,
            after={
                "from": audit.global_id("Wallet", source.id),
                "to": audit.global_id("Wallet", destination.id),
                "amount": audit.quantity(amount, unit),
                "note": note,
            },
        )
        return Transfer(result.posting_id, pool.id, client.id)

    made = await idempotency.run_once(
        scope=viewer.scope,
        operation="wallet.transfer",
        key=idempotency_key,
        request={"workspace": workspace_id, "unit": unit, "amount": amount, "to": to_workspace, "note": note},
        action=act,
        encode=lambda t: [t.posting_id, t.pool_wallet_id, t.workspace_wallet_id],
        decode=lambda raw: Transfer(*raw),
    )
    await top_ups.watch(made.pool_wallet_id)
    await top_ups.watch(made.workspace_wallet_id)
    return made
