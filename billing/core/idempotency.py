"""Idempotency keys for money-moving actions.

A key is scoped to (tenant, operation, key). The first call claims the key (status IN_PROGRESS,
with a lease), runs, and stores its result in the same transaction as its effect, so a crash leaves
either nothing or the effect together with its stored result. Later calls with the same key:

- same request, completed     -> the stored result, no second effect;
- same request, still running -> IDEMPOTENCY_KEY_IN_PROGRESS (until the lease runs out after a crash);
- different request           -> IDEMPOTENCY_KEY_REUSED.

A call that fails with an expected error releases the key: nothing happened, so a retry may run.
An action that only writes to the database may instead claim its key inside its own transaction
(:func:`claim`): then the claim itself commits only with the effect. Records are kept for at least
30 days.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from tortoise.transactions import in_transaction

from billing.core import clock, sql, work
from billing.core.errors import BillingError, ErrorCode
from billing.core.text import check_text
from models.enums import IdempotencyStatus

RETENTION = timedelta(days=30)
LEASE = timedelta(seconds=60)
MAX_KEY_LENGTH = 255

T = TypeVar("T")


def request_hash(request: Any) -> str:
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Claim:
    """A claimed key, or the stored result of its completed first call (``replay``, as JSON)."""

    scope: str
    operation: str
    key: str
    token: str
    replay: Any = None
    rows: list[dict[str, Any]] = field(default_factory=list)

    def completion(self, result: Any) -> sql.Statement:
        """The statement that stores ``result``, to run in the transaction of the action's effect;
        pass the number of rows it changed to :func:`check_completed`."""
        return (
            "UPDATE idempotency_record SET status = $1, result = $2, locked_until = NULL, claim_token = NULL "
            "WHERE scope = $3 AND operation = $4 AND key = $5 AND status = $6 AND claim_token = $7",
            (
                IdempotencyStatus.COMPLETED.value,
                json.dumps(result),
                self.scope,
                self.operation,
                self.key,
                IdempotencyStatus.IN_PROGRESS.value,
                self.token,
            ),
        )

    async def complete(self, result: Any) -> None:
        text, params = self.completion(result)
        check_completed(await sql.execute(text, *params))


def check_completed(changed: int) -> None:
    if changed != 1:  # our lease ran out and another call took the key over: roll back, let it win
        raise BillingError(ErrorCode.IDEMPOTENCY_KEY_IN_PROGRESS, "the request with this key is still running")


def check_key(key: str) -> str:
    return check_text(key, "idempotencyKey", max_length=MAX_KEY_LENGTH, strip=False)


async def claim(*, scope: str, operation: str, key: str, request: Any, read: sql.Statement | None = None) -> Claim:
    """Claim ``key``, or find the stored result of its completed first call.

    :func:`run_once` claims outside any transaction (a lease, then the action's own transaction).
    Called inside the caller's open transaction instead, for an action that only writes to the
    database, the claim, the effect and the stored result (``Claim.completion``) commit together or
    not at all: a crash or a refusal leaves nothing to release and no lease to wait for, and a
    concurrent call with the same key waits at its claim for this transaction, then answers the
    stored result (or runs, if this one rolled back).

    ``read``, a SELECT the caller needs next, is run in the same round trip as the claim; its rows
    are in ``Claim.rows`` when the key was claimed."""
    key = check_key(key)
    token = secrets.token_hex(16)
    replay, rows = await _claim(scope, operation, key, request_hash(request), token, read)
    return Claim(scope, operation, key, token, replay, rows)


async def run_once(
    *,
    scope: str,
    operation: str,
    key: str,
    request: Any,
    action: Callable[[], Awaitable[T]],
    encode: Callable[[T], Any],
    decode: Callable[[Any], T],
) -> T:
    """Run ``action`` at most once per key; its stored result answers every replay."""
    claimed = await claim(scope=scope, operation=operation, key=key, request=request)
    if claimed.replay is not None:
        return decode(claimed.replay)
    try:
        async with in_transaction("default"):
            result = await action()
            await claimed.complete(encode(result))
    except BaseException:
        await _release(scope, operation, claimed.key, claimed.token)
        raise
    return result


async def _claim(
    scope: str, operation: str, key: str, digest: str, token: str, read: sql.Statement | None = None
) -> tuple[Any | None, list[dict[str, Any]]]:
    """Claim the key, or return the stored result of the completed first call (as JSON); with the
    rows of ``read``, run in the same round trip as the claim."""
    now = clock.now()
    # ON CONFLICT rather than catching a unique violation, which on PostgreSQL would abort an
    # enclosing transaction.
    insert = (
        "INSERT INTO idempotency_record (created_at, scope, operation, key, request_hash, status, claim_token,"
        " locked_until, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (scope, operation, key) DO NOTHING",
        (now, scope, operation, key, digest, IdempotencyStatus.IN_PROGRESS.value, token, now + LEASE, now + RETENTION),
    )
    found: list[dict[str, Any]] = []
    if read is None:
        claimed = await sql.execute(insert[0], *insert[1])
    else:
        [claimed], found = await sql.write_then_read([insert], read)
    if claimed == 1:
        return None, found
    rows = await sql.fetch(
        "SELECT request_hash, status, result, locked_until FROM idempotency_record "
        "WHERE scope = $1 AND operation = $2 AND key = $3",
        scope,
        operation,
        key,
    )
    if not rows:  # released between our insert and our read: try again
        return await _claim(scope, operation, key, digest, token, read)
    row = rows[0]
    if row["request_hash"] != digest:
        raise BillingError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "this idempotency key was used with a different request",
            field="idempotencyKey",
        )
    if row["status"] == IdempotencyStatus.COMPLETED.value:
        result = row["result"]
        return (json.loads(result) if isinstance(result, str) else result), []
    # In progress: take it over only if the first call's lease has run out (it crashed).
    taken = await sql.execute(
        "UPDATE idempotency_record SET locked_until = $1, claim_token = $7 WHERE scope = $2 AND operation = $3 "
        "AND key = $4 AND status = $5 AND locked_until < $6",
        now + LEASE,
        scope,
        operation,
        key,
        IdempotencyStatus.IN_PROGRESS.value,
        now,
        token,
    )
    if taken == 1:
        return None, await sql.fetch(read[0], *read[1]) if read is not None else []
    raise BillingError(
        ErrorCode.IDEMPOTENCY_KEY_IN_PROGRESS,
        "a request with this idempotency key is still running",
        field="idempotencyKey",
    )


async def _release(scope: str, operation: str, key: str, token: str) -> None:
    await sql.execute(
        "DELETE FROM idempotency_record WHERE scope = $1 AND operation = $2 AND key = $3 AND status = $4"
        " AND claim_token = $5",
        scope,
        operation,
        key,
        IdempotencyStatus.IN_PROGRESS.value,
        token,
    )


async def purge_expired() -> int:
    return await sql.execute("DELETE FROM idempotency_record WHERE expires_at < $1", clock.now())


PURGE_JOB = "idempotency.purge"


async def schedule_purge(day: datetime) -> None:
    """Queue the purge of expired records for ``day`` (once, however many workers ask)."""
    await work.schedule(PURGE_JOB, {}, run_at=day, dedupe_key=f"{PURGE_JOB}:{day:%Y-%m-%d}")


async def purge_job(payload: dict[str, Any]) -> dict[str, int]:
    """Purge expired records, then queue tomorrow's purge."""
    deleted = await purge_expired()
    await schedule_purge(clock.now() + timedelta(days=1))
    return {"deleted": deleted}
