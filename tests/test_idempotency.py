"""Idempotency keys: a replay answers the first result and never moves money twice."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from billing.accounts import wallets
from billing.core import clock, idempotency, sql
from billing.core.errors import BillingError, ErrorCode
from models.enums import IdempotencyStatus
from models.operations import IdempotencyRecord, Job
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


def refused_as(error: pytest.ExceptionInfo[BillingError], code: ErrorCode, field: str | None, message: str) -> None:
    """A refusal as the API shows it: its code, the field it names and its message."""
    assert (error.value.code, error.value.field, error.value.message) == (code, field, message)


def test_a_request_hash_is_the_sha256_of_its_canonical_json() -> None:
    assert idempotency.request_hash({"b": [1, 2], "a": "x"}) == hashlib.sha256(b'{"a":"x","b":[1,2]}').hexdigest()
    assert idempotency.request_hash({"amount": Decimal("1.50")}) == hashlib.sha256(b'{"amount":"1.50"}').hexdigest()


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """The clock stands still at ``frozen[0]`` until a test moves it."""
    moment = [clock.now()]
    monkeypatch.setattr(clock, "now", lambda: moment[0])
    return moment


async def claim(key: str = "k", request: object = None) -> idempotency.Claim:
    return await idempotency.claim(scope="T", operation="op", key=key, request={"a": 1} if request is None else request)


async def test_a_claim_made_without_a_read_has_no_rows_to_give(frozen: list[datetime]) -> None:
    # Callers iterate over Claim.rows whether or not they asked for a read.
    assert (await claim()).rows == []


async def test_an_idempotency_key_is_taken_verbatim_so_padded_keys_are_other_keys(frozen: list[datetime]) -> None:
    # A client's key is its own bytes: trimming would make " k " replay (or block) the request sent as "k".
    assert [idempotency.check_key(k) for k in (" k ", "k ", "k")] == [" k ", "k ", "k"]
    plain = await claim(idempotency.check_key("k"))
    padded = await claim(idempotency.check_key(" k "))
    assert plain.replay is None and padded.replay is None and plain.token != padded.token


async def test_a_claim_that_takes_over_a_dead_one_holds_the_key_for_a_whole_lease_of_its_own(
    frozen: list[datetime],
) -> None:
    start = frozen[0]
    await claim()
    frozen[0] = start + idempotency.LEASE + timedelta(seconds=1)
    second = await claim()  # the first caller died: its lease ran out
    frozen[0] += idempotency.LEASE
    with pytest.raises(BillingError) as error:
        await claim()
    refused_as(
        error,
        ErrorCode.IDEMPOTENCY_KEY_IN_PROGRESS,
        "idempotencyKey",
        "a request with this idempotency key is still running",
    )
    frozen[0] += timedelta(seconds=1)
    third = await claim()
    assert third.replay is None and third.token not in (second.token, None)


async def test_a_claim_holds_its_key_for_exactly_its_lease(frozen: list[datetime]) -> None:
    start = frozen[0]
    first = await claim()
    assert first.replay is None and (first.scope, first.operation, first.key) == ("T", "op", "k")
    frozen[0] = start + idempotency.LEASE
    with pytest.raises(BillingError) as error:
        await claim()
    refused_as(
        error,
        ErrorCode.IDEMPOTENCY_KEY_IN_PROGRESS,
        "idempotencyKey",
        "a request with this idempotency key is still running",
    )
    with pytest.raises(BillingError) as error:
        await claim(request={"a": 2})
    refused_as(
        error,
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        "idempotencyKey",
        "this idempotency key was used with a different request",
    )
    frozen[0] = start + idempotency.LEASE + timedelta(seconds=1)
    second = await claim()  # the first caller died: its lease ran out
    assert second.replay is None and second.token != first.token
    # The first caller, back from the dead, can neither complete nor release the key it lost.
    with pytest.raises(BillingError) as error:
        await first.complete({"late": True})
    refused_as(error, ErrorCode.IDEMPOTENCY_KEY_IN_PROGRESS, None, "the request with this key is still running")
    await idempotency._release("T", "op", "k", first.token)
    await second.complete({"value": 5})
    record = await IdempotencyRecord.get(scope="T", operation="op", key="k")
    assert (record.status, record.result, record.locked_until, record.claim_token) == (
        IdempotencyStatus.COMPLETED,
        {"value": 5},
        None,
        None,
    )
    frozen[0] = start + timedelta(days=1)
    assert (await claim()).replay == {"value": 5}


async def test_a_record_is_kept_for_exactly_30_days(frozen: list[datetime]) -> None:
    start = frozen[0]
    await (await claim()).complete(1)
    frozen[0] = start + idempotency.RETENTION
    assert await idempotency.purge_expired() == 0
    frozen[0] = start + idempotency.RETENTION + timedelta(seconds=1)
    assert await idempotency.purge_expired() == 1


async def test_a_claim_runs_the_callers_read_in_the_same_round_trip() -> None:
    read: sql.Statement = ("SELECT count(*) AS n FROM idempotency_record WHERE key = $1", ("another",))
    first = await idempotency.claim(scope="T", operation="op", key="r", request={}, read=read)
    assert first.rows == [{"n": 0}]
    await first.complete("done")
    replay = await idempotency.claim(scope="T", operation="op", key="r", request={}, read=read)
    assert (replay.replay, replay.rows) == ("done", [])


async def test_a_read_is_run_too_when_a_claim_takes_over_a_dead_one(frozen: list[datetime]) -> None:
    read: sql.Statement = ("SELECT count(*) AS n FROM idempotency_record WHERE key = $1", ("another",))
    await idempotency.claim(scope="T", operation="op", key="r", request={}, read=read)
    frozen[0] += idempotency.LEASE + timedelta(seconds=1)
    taken = await idempotency.claim(scope="T", operation="op", key="r", request={}, read=read)
    assert (taken.replay, taken.rows) == (None, [{"n": 0}])
    frozen[0] += idempotency.LEASE + timedelta(seconds=1)
    assert (await claim("r", {})).rows == []


async def test_run_once_stores_the_encoded_result_and_decodes_it_for_every_replay() -> None:
    calls: list[int] = []

    async def action() -> int:
        calls.append(1)
        return 7

    async def run() -> int:
        return await idempotency.run_once(
            scope="T",
            operation="op",
            key="once",
            request={"a": 1},
            action=action,
            encode=lambda r: {"value": r},
            decode=lambda stored: stored["value"] * 10,
        )

    assert await run() == 7
    assert await run() == 70 == await run()
    assert calls == [1]
    assert (await IdempotencyRecord.get(key="once")).result == {"value": 7}


async def test_a_call_failing_for_any_reason_releases_its_key() -> None:
    async def crash() -> int:
        raise RuntimeError("the provider hung up")

    with pytest.raises(RuntimeError):
        await idempotency.run_once(
            scope="T", operation="op", key="k", request={}, action=crash, encode=lambda r: r, decode=int
        )
    assert not await IdempotencyRecord.exists(key="k")


async def test_the_purge_job_purges_and_queues_tomorrows(frozen: list[datetime]) -> None:
    start = frozen[0]
    await (await claim()).complete(1)
    frozen[0] = start + timedelta(days=31)
    assert await idempotency.purge_job({}) == {"deleted": 1}
    tomorrow = frozen[0] + timedelta(days=1)
    job = await Job.get(kind=idempotency.PURGE_JOB)
    assert job.dedupe_key == f"idempotency.purge:{tomorrow:%Y-%m-%d}" and job.run_at == tomorrow
    assert job.payload == {}
    await idempotency.schedule_purge(tomorrow)  # once, however many workers ask
    assert await Job.filter(kind="idempotency.purge").count() == 1


async def test_a_claim_token_is_128_fresh_random_bits_in_the_32_characters_its_column_holds() -> None:
    tokens = [(await idempotency.claim(scope="T", operation="op", key=f"t-{i}", request={})).token for i in range(2)]
    assert all(len(token) == 32 and int(token, 16) >= 0 for token in tokens)
    assert tokens[0] != tokens[1]
    stored = await IdempotencyRecord.filter(scope="T", operation="op").values_list("claim_token", flat=True)
    assert sorted(stored) == sorted(tokens)


@pytest.mark.parametrize("with_read", [False, True], ids=["no read", "with a read"])
async def test_a_claim_whose_rival_is_released_between_its_insert_and_its_read_claims_the_key(
    monkeypatch: pytest.MonkeyPatch, with_read: bool
) -> None:
    """The race the retry in ``_claim`` is for: the key is held when the second claim's INSERT ... ON
    CONFLICT runs, and released (the first call failed) before the second claim reads the row. Made
    to happen here by releasing it for real just before that read."""
    first = await idempotency.claim(scope="T", operation="op", key="k", request={"a": 1})
    real_fetch = idempotency.sql.fetch
    released: list[bool] = []

    async def fetch_after_the_release(text: str, *args: object, **kwargs: object) -> list:
        if not released and text.lstrip().startswith("SELECT request_hash"):
            released.append(True)
            await idempotency._release("T", "op", "k", first.token)
        return await real_fetch(text, *args, **kwargs)

    monkeypatch.setattr(idempotency.sql, "fetch", fetch_after_the_release)
    read: sql.Statement = ("SELECT 7 AS n", ())  # shares the claim's snapshot on PostgreSQL: independent of it
    second = await idempotency.claim(
        scope="T", operation="op", key="k", request={"b": 2}, read=read if with_read else None
    )
    monkeypatch.undo()
    assert released == [True]
    assert second.replay is None and second.token != first.token
    assert second.rows == ([{"n": 7}] if with_read else [])
    [row] = await IdempotencyRecord.filter(scope="T", operation="op", key="k")
    assert (row.claim_token, row.request_hash) == (second.token, idempotency.request_hash({"b": 2}))
    assert row.status is IdempotencyStatus.IN_PROGRESS
    await second.complete({"ok": True})
    replay = await idempotency.claim(scope="T", operation="op", key="k", request={"b": 2})
    assert replay.replay == {"ok": True}
    with pytest.raises(BillingError) as reused:
        await idempotency.claim(scope="T", operation="op", key="k", request={"a": 1})
    assert reused.value.code is ErrorCode.IDEMPOTENCY_KEY_REUSED
    for other_scope, other_op in (("U", "op"), ("T", "other")):  # the retry claimed this scope and operation only
        assert await IdempotencyRecord.filter(scope=other_scope, operation=other_op).count() == 0
