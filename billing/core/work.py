"""Background work with leases. Many workers may run at once: each claims due items with a lease
(on PostgreSQL with FOR UPDATE SKIP LOCKED, so two workers never take the same item); an item whose
worker died is claimed again once its lease has run out."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from billing.core import clock, sql
from models.enums import WorkState

QUEUES = ("job", "outbox_event", "webhook_delivery")  # tables with the LeasedWork columns
DEFAULT_LEASE = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    attempts: int
    row: dict[str, Any]


async def claim(queue: str, owner: str, *, limit: int = 10, lease: timedelta = DEFAULT_LEASE) -> list[Claimed]:
    if queue not in QUEUES:
        raise ValueError(queue)
    now = clock.now()
    lock = " FOR UPDATE SKIP LOCKED" if sql.is_postgres() else ""
    # S608: the table name comes from QUEUES, never from input.
    rows = await sql.fetch(
        f"UPDATE {queue} SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 "  # noqa: S608
        f"WHERE id IN (SELECT id FROM {queue} WHERE state = $3 AND run_at <= $4 "
        f"AND (lease_until IS NULL OR lease_until < $4) ORDER BY run_at, id LIMIT $5{lock}) RETURNING *",
        owner,
        now + lease,
        WorkState.PENDING.value,
        now,
        limit,
    )
    return [Claimed(row["id"], row["attempts"], row) for row in rows]


async def finish(queue: str, item_id: int, owner: str, result: Any = None) -> bool:
    """Mark an item done, if we still hold its lease."""
    extra = ", result = $4" if queue == "job" else ""
    params: list[Any] = [WorkState.DONE.value, clock.now(), item_id]
    if queue == "job":
        params.append(json.dumps(result))
    params.append(owner)
    owner_slot = f"${len(params)}"
    changed = await sql.execute(
        f"UPDATE {queue} SET state = $1, finished_at = $2, lease_owner = NULL, lease_until = NULL{extra} "  # noqa: S608
        f"WHERE id = $3 AND lease_owner = {owner_slot}",
        *params,
    )
    return changed == 1


async def renew(queue: str, item_id: int, owner: str, *, lease: timedelta = DEFAULT_LEASE) -> bool:
    """Hold an item for ``lease`` more from now, if ``owner`` still holds it (its lease may have run out,
    so long as nobody claimed it since); False when another worker has it now."""
    if queue not in QUEUES:
        raise ValueError(queue)
    changed = await sql.execute(
        f"UPDATE {queue} SET lease_until = $1 WHERE id = $2 AND lease_owner = $3 AND state = $4",  # noqa: S608
        clock.now() + lease,
        item_id,
        owner,
        WorkState.PENDING.value,
    )
    return changed == 1


async def retry_later(
    queue: str,
    item_id: int,
    owner: str,
    error: str,
    *,
    attempts: int,
    max_attempts: int,
    base_delay: timedelta = timedelta(seconds=30),
) -> WorkState | None:
    """Back off exponentially; after ``max_attempts`` the item is DEAD. Returns the item's new state (PENDING
    or DEAD), or None when its lease was lost and nothing changed."""
    dead = attempts >= max_attempts
    delay = base_delay * (2 ** max(attempts - 1, 0))
    state = WorkState.DEAD if dead else WorkState.PENDING
    changed = await sql.execute(
        f"UPDATE {queue} SET state = $1, run_at = $2, last_error = $3, lease_owner = NULL, lease_until = NULL "  # noqa: S608
        "WHERE id = $4 AND lease_owner = $5",
        state.value,
        clock.now() + delay,
        error[:2000],
        item_id,
        owner,
    )
    return state if changed == 1 else None


async def schedule(
    kind: str, payload: dict[str, Any], *, run_at: datetime | None = None, dedupe_key: str | None = None
) -> bool:
    """Queue a job; with a dedupe key, scheduling the same work twice queues it once (returns False)."""
    now = clock.now()
    added = await sql.execute(
        "INSERT INTO job (created_at, kind, payload, run_at, state, attempts, dedupe_key)"
        " VALUES ($1, $2, $3, $4, $5, 0, $6) ON CONFLICT (dedupe_key) DO NOTHING",
        now,
        kind,
        json.dumps(payload),
        run_at or now,
        WorkState.PENDING.value,
        dedupe_key,
    )
    return added == 1


JobHandler = Callable[[dict[str, Any]], Awaitable[Any]]
_jobs: Mapping[str, JobHandler] = {}


def install(jobs: Mapping[str, JobHandler]) -> None:
    """Which function runs each kind of job: the table is written in :mod:`billing.dispatch`."""
    global _jobs
    _jobs = jobs


def handler_for(kind: str) -> JobHandler | None:
    return _jobs.get(kind)
