"""Idempotency keys: a replay answers the first result and never moves money twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from billing.accounts import wallets
from billing.core import clock, idempotency, sql
from billing.core.errors import BillingError, ErrorCode
from models.operations import IdempotencyRecord
from models.wallets import LedgerEntry, Wallet
from tests.factories import a_partner, a_workspace, partner_viewer

pytestmark = pytest.mark.usefixtures("database")


async def setup_workspace() -> tuple:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    return partner_viewer(partner), workspace


async def test_a_replayed_key_returns_the_first_result_without_a_second_grant() -> None:
    viewer, workspace = await setup_workspace()
    first = await wallets.adjust_workspace_balance(
        viewer,
        workspace_id=workspace.id,
        unit="POINTS",
        amount=500,
        note="welcome",
        idempotency_key="grant-1",
    )
    again = await wallets.adjust_workspace_balance(
        viewer,
        workspace_id=workspace.id,
        unit="POINTS",
        amount=500,
        note="welcome",
        idempotency_key="grant-1",
    )
    assert again == first
    wallet = await Wallet.get(id=first.wallet_id)
    assert wallet.balance == 500
    assert await LedgerEntry.filter(wallet_id=wallet.id).count() == 1


async def test_the_same_key_with_a_different_request_is_refused() -> None:
    viewer, workspace = await setup_workspace()
    await wallets.adjust_workspace_balance(
        viewer, workspace_id=workspace.id, unit="POINTS", amount=500, note="", idempotency_key="grant-1"
    )
    with pytest.raises(BillingError) as refused:
        await wallets.adjust_workspace_balance(
            viewer, workspace_id=workspace.id, unit="POINTS", amount=600, note="", idempotency_key="grant-1"
        )
    assert refused.value.code is ErrorCode.IDEMPOTENCY_KEY_REUSED
    assert (await Wallet.get(workspace_id=workspace.id)).balance == 500


async def test_keys_are_scoped_to_the_tenant() -> None:
    """Two partners may use the same key without seeing each other's results."""
    viewer_a, workspace_a = await setup_workspace()
    viewer_b, workspace_b = await setup_workspace()
    a = await wallets.adjust_workspace_balance(
        viewer_a, workspace_id=workspace_a.id, unit="POINTS", amount=5, note="", idempotency_key="same"
    )
    b = await wallets.adjust_workspace_balance(
        viewer_b, workspace_id=workspace_b.id, unit="POINTS", amount=7, note="", idempotency_key="same"
    )
    assert a.wallet_id != b.wallet_id and (a.balance, b.balance) == (5, 7)


async def test_concurrent_replays_of_one_key_grant_once() -> None:
    viewer, workspace = await setup_workspace()

    async def attempt() -> str:
        try:
            await wallets.adjust_workspace_balance(
                viewer, workspace_id=workspace.id, unit="POINTS", amount=100, note="", idempotency_key="burst"
            )
        except BillingError as error:
            assert error.code is ErrorCode.IDEMPOTENCY_KEY_IN_PROGRESS
            return "in progress"
        return "ok"

    outcomes = await asyncio.gather(*(attempt() for _ in range(30)))
    assert "ok" in outcomes
    wallet = await Wallet.get(workspace_id=workspace.id)
    assert wallet.balance == 100
    assert await LedgerEntry.filter(wallet_id=wallet.id).count() == 1
    # Once the first has finished, every replay gets its result.
    replay = await wallets.adjust_workspace_balance(
        viewer, workspace_id=workspace.id, unit="POINTS", amount=100, note="", idempotency_key="burst"
    )
    assert replay.balance == 100


async def test_a_key_still_running_answers_in_progress(database) -> None:
    if not database.is_postgres:
        # Embedded SQLite runs one transaction at a time in the process: a second call waits for the
        # first to finish and then receives its stored result, which the other tests cover.
        pytest.skip("needs concurrent transactions (PostgreSQL)")
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> int:
        started.set()
        await release.wait()
        return 42

    async def run() -> int:
        return await idempotency.run_once(
            scope="T", operation="op", key="k", request={"a": 1}, action=slow, encode=lambda r: r, decode=int
        )

    first = asyncio.create_task(run())
    await started.wait()
    with pytest.raises(BillingError) as refused:
        await run()
    assert refused.value.code is ErrorCode.IDEMPOTENCY_KEY_IN_PROGRESS
    release.set()
    assert await first == 42
    assert await run() == 42


async def test_a_failed_call_releases_its_key() -> None:
    viewer, workspace = await setup_workspace()
    with pytest.raises(BillingError) as refused:
        await wallets.adjust_workspace_balance(
            viewer,
            workspace_id=workspace.id,
            unit="POINTS",
            amount=10,
            note="",
            idempotency_key="retry-me",
            debit=True,
        )
    assert refused.value.code is ErrorCode.INSUFFICIENT_BALANCE
    assert not await IdempotencyRecord.exists(key="retry-me")


async def test_a_crashed_call_is_taken_over_after_its_lease() -> None:
    """A claim left IN_PROGRESS by a process that died blocks the key only until its lease runs out."""
    now = clock.now()
    await sql.execute(
        "INSERT INTO idempotency_record (created_at, scope, operation, key, request_hash, status, locked_until,"
        " expires_at) VALUES ($1, 'T', 'op', 'k', $2, 'IN_PROGRESS', $3, $4)",
        now,
        idempotency.request_hash({"a": 1}),
        now + idempotency.LEASE,
        now + idempotency.RETENTION,
    )

    async def run() -> int:
        return await idempotency.run_once(
            scope="T",
            operation="op",
            key="k",
            request={"a": 1},
            action=lambda: asyncio.sleep(0, 7),
            encode=lambda r: r,
            decode=int,
        )

    with pytest.raises(BillingError) as held:  # the dead call's lease still runs
        await run()
    assert held.value.code is ErrorCode.IDEMPOTENCY_KEY_IN_PROGRESS
    await clock.advance(idempotency.LEASE + timedelta(seconds=1))
    assert await run() == 7


async def test_records_are_kept_30_days_then_purged() -> None:
    viewer, workspace = await setup_workspace()
    await wallets.adjust_workspace_balance(
        viewer, workspace_id=workspace.id, unit="POINTS", amount=1, note="", idempotency_key="old"
    )
    await clock.advance(timedelta(days=29))
    assert await idempotency.purge_expired() == 0
    await clock.advance(timedelta(days=2))
    assert await idempotency.purge_expired() == 1


@pytest.mark.parametrize("key", ["", "x" * 256])
async def test_keys_must_have_a_sensible_length(key: str) -> None:
    viewer, workspace = await setup_workspace()
    with pytest.raises(BillingError) as refused:
        await wallets.adjust_workspace_balance(
            viewer, workspace_id=workspace.id, unit="POINTS", amount=1, note="", idempotency_key=key
        )
    assert refused.value.code is ErrorCode.INVALID_INPUT and refused.value.field == "idempotencyKey"
