"""A partner's manual grants and debits: on PostgreSQL the common case is one statement, and it leaves
exactly the records the careful path (a transaction of several statements) leaves; everything else is
handed to the careful path."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from tortoise.transactions import in_transaction

from billing.accounts import wallets
from billing.core import clock
from billing.core.errors import BillingError, ErrorCode
from billing.core.tenancy import Viewer
from models.enums import OwnerKind, Permission
from models.operations import AuditLog, IdempotencyRecord, OutboxEvent
from models.tenancy import Workspace
from models.wallets import CreditLot, LedgerEntry, Posting, Wallet
from tests.counting import count_statements
from tests.factories import PLATFORM, a_partner, a_workspace, partner_viewer

pytestmark = pytest.mark.usefixtures("database")


async def adjust(viewer: Viewer, workspace: Workspace, amount: int, key: str, *, debit: bool, careful: bool, **extra):
    async def call() -> wallets.Adjustment:
        return await wallets.adjust_workspace_balance(
            viewer,
            workspace_id=workspace.id,
            unit="POINTS",
            amount=amount,
            note=f"note {key.split('-', 1)[-1]}",
            idempotency_key=key,
            debit=debit,
            **extra,
        )

    if not careful:
        return await call()
    async with in_transaction("default"):  # inside a transaction, always the careful path
        return await call()


async def records(workspace: Workspace) -> dict[str, Any]:
    """What a workspace's adjustments left, with ids replaced by their order."""
    wallet = await Wallet.get(owner_key=f"WORKSPACE:{workspace.id}", unit="POINTS")
    entries = await LedgerEntry.filter(wallet_id=wallet.id).order_by("id")
    postings = {p.id: p for p in await Posting.filter(id__in=[e.posting_id for e in entries])}
    order = {e.posting_id: n for n, e in enumerate(entries)}
    audits = await AuditLog.filter(target_type="Wallet", target_id=str(wallet.id)).order_by("id")
    keys = await IdempotencyRecord.filter(operation__startswith="wallet.").order_by("id")
    mine = [k for k in keys if k.key.startswith(f"{workspace.name}-")]
    return {
        "balance": wallet.balance,
        "entries": [(e.amount, e.balance_after, e.cause, e.counter_account, e.partner_id) for e in entries],
        "postings": [
            (p.cause, p.caused_by_type, p.caused_by_id, p.note, p.actor, p.partner_id)
            for p in (postings[e.posting_id] for e in entries)
        ],
        "audit": [(a.action, a.actor, a.before, a.after, a.partner_id) for a in audits],
        "keys": [
            (
                k.key.split("-", 1)[1],
                k.status,
                k.claim_token,
                k.locked_until,
                k.result[0] == wallet.id,
                order[k.result[1]],
                k.result[2],
            )
            for k in mine
        ],
    }


async def test_one_statement_and_careful_path_leave_the_same_records(database, monkeypatch) -> None:
    partner = await a_partner()
    viewer = partner_viewer(partner)
    fast, careful = await a_workspace(partner, "fast"), await a_workspace(partner, "careful")
    for workspace, is_careful in ((fast, False), (careful, True)):
        name = workspace.name

        async def run(amount: int, key: str, *, debit: bool) -> wallets.Adjustment:
            return await adjust(viewer, workspace, amount, f"{name}-{key}", debit=debit, careful=is_careful)

        await run(100, "open", debit=False)  # opens the wallet: the careful path in both
        counts = count_statements(monkeypatch)
        granted = await run(50, "grant", debit=False)
        debited = await run(30, "debit", debit=True)
        monkeypatch.undo()
        if database.is_postgres and not is_careful:
            assert counts["statements"] == 2  # one each
        assert (granted.balance, debited.balance) == (150, 120)
        assert await run(30, "debit", debit=True) == debited  # a replay answers the first call
        with pytest.raises(BillingError) as reused:
            await run(31, "debit", debit=True)
        assert reused.value.code is ErrorCode.IDEMPOTENCY_KEY_REUSED
        with pytest.raises(BillingError) as short:
            await run(1_000, "big", debit=True)
        assert short.value.code is ErrorCode.INSUFFICIENT_BALANCE
        assert (await run(20, "big", debit=True)).balance == 100  # a refused key may be used again
    fast_records, careful_records = await records(fast), await records(careful)
    assert fast_records["keys"] and fast_records["audit"]
    for name in ("balance", "entries", "audit"):
        assert fast_records[name] == careful_records[name], name
    # Postings name their workspace. (A key's request hash names it too; the replays above, answered
    # by the careful path, show that both paths hash a request alike.)
    assert [p[:1] + p[3:] for p in fast_records["postings"]] == [p[:1] + p[3:] for p in careful_records["postings"]]
    assert [p[2] for p in fast_records["postings"]] == [str(fast.id)] * 4
    assert fast_records["keys"] == careful_records["keys"]


async def test_what_the_one_statement_leaves_to_the_careful_path(database) -> None:
    partner = await a_partner()
    viewer = partner_viewer(partner)
    workspace = await a_workspace(partner)
    await adjust(viewer, workspace, 100, "open", debit=False, careful=False)
    wallet = await Wallet.get(owner_key=f"{OwnerKind.WORKSPACE.value}:{workspace.id}", unit="POINTS")

    # Another partner's workspace, and a deleted one, are not found (and nothing moves).
    stranger = partner_viewer(await a_partner("Other"))
    with pytest.raises(BillingError) as hidden:
        await adjust(stranger, workspace, 10, "x", debit=True, careful=False)
    assert hidden.value.code is ErrorCode.NOT_FOUND

    # A low-balance notice when the balance crosses the threshold, once; re-armed above it.
    await Wallet.filter(id=wallet.id).update(low_balance_threshold=50)
    await adjust(viewer, workspace, 60, "low", debit=True, careful=False)
    await adjust(viewer, workspace, 10, "lower", debit=True, careful=False)
    assert await OutboxEvent.filter(event_type="wallet.low_balance").count() == 1
    await adjust(viewer, workspace, 100, "up", debit=False, careful=False)
    assert not (await Wallet.get(id=wallet.id)).low_balance_notified
    await adjust(viewer, workspace, 90, "low again", debit=True, careful=False)
    assert await OutboxEvent.filter(event_type="wallet.low_balance").count() == 2

    # A debit comes out of expiring lots first.
    await Wallet.filter(id=wallet.id).update(low_balance_threshold=None, low_balance_notified=False)
    await adjust(viewer, workspace, 40, "lot", debit=False, careful=False, expires_at=clock.now() + timedelta(days=3))
    await adjust(viewer, workspace, 15, "from the lot", debit=True, careful=False)
    [lot] = await CreditLot.filter(wallet_id=wallet.id)
    assert lot.remaining == 25
    assert (await Wallet.get(id=wallet.id)).balance == 65

    await Workspace.filter(id=workspace.id).update(deleted_at=clock.now())
    with pytest.raises(BillingError) as gone:
        await adjust(viewer, workspace, 10, "gone", debit=True, careful=False)
    assert gone.value.code is ErrorCode.NOT_FOUND
    assert (await Wallet.get(id=wallet.id)).balance == 65


async def test_each_kind_of_caller_reaches_only_the_workspaces_it_sees(database) -> None:
    partner = await a_partner()
    mine, sibling = await a_workspace(partner, "mine"), await a_workspace(partner, "sibling")
    for workspace in (mine, sibling):
        await adjust(partner_viewer(partner), workspace, 100, f"open {workspace.id}", debit=False, careful=False)
    # A workspace's own caller (given the permission here, to reach the scope check) sees its workspace only.
    own = Viewer(
        kind="WORKSPACE",
        actor="test:workspace",
        partner_id=partner.id,
        workspace_id=mine.id,
        permissions=frozenset({Permission.MANAGE_BILLING}),
    )
    assert (await adjust(own, mine, 10, "own", debit=True, careful=False)).balance == 90
    with pytest.raises(BillingError) as hidden:
        await adjust(own, sibling, 10, "sibling", debit=True, careful=False)
    assert hidden.value.code is ErrorCode.NOT_FOUND
    # The platform sees every workspace.
    assert (await adjust(PLATFORM, sibling, 10, "platform", debit=True, careful=False)).balance == 90
    assert (await Wallet.get(owner_key=f"WORKSPACE:{sibling.id}", unit="POINTS")).balance == 90
