"""P3: 64 clients debiting one wallet.

whitebill: the debitUnits mutation over HTTP (each with its own idempotency key, sent by a lean
keep-alive client so that the load generator does not take the server's CPU) against a real server
whose pool holds POOL connections (split among BENCH_PROCESSES processes, one by default). Floor: the
same 64 clients doing a raw conditional UPDATE plus a ledger INSERT through asyncpg with a pool of
the same size. The two take turns on the same database (BENCH_ROUNDS turns each, BENCH_SECONDS in all
for each); the ratio is of their totals.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Awaitable, Callable

import asyncpg
import orjson
from tortoise import Tortoise

from bench.common import LeanHttp, Load, asyncpg_dsn, database_url, load_for, report, run_for, scratch_database, server
from billing.accounts import wallets
from billing.core.tenancy import Viewer
from billing.tenants import api_keys, partners
from models.enums import PARTNER_PERMISSIONS, PLATFORM_PERMISSIONS, LedgerCause
from models.tenancy import Workspace
from schema.ids import to_global_id
from whitebill import db

CLIENTS = 64
POOL = int(os.environ.get("BENCH_POOL", "8"))
# Server processes sharing the POOL connections (POOL / PROCESSES each): the same total pool, more CPU.
PROCESSES = int(os.environ.get("BENCH_PROCESSES", "1"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))  # for each side, split into ROUNDS turns
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "4"))
DETAIL = os.environ.get("BENCH_DETAIL") == "1"  # also time the debit in-process (where the time goes)
START_BALANCE = 10**12
PLATFORM = Viewer(kind="PLATFORM", actor="bench", permissions=PLATFORM_PERMISSIONS)

DEBIT = """mutation($id: ID!, $key: String!) { debitUnits(input: {workspaceId: $id, unit: "POINTS",
amount: "1", idempotencyKey: $key}) { errors { code } } }"""


async def seed(url: str) -> tuple[int, int, str]:
    await db.connect(url)
    try:
        partner = await partners.create_partner(PLATFORM, name="Bench", slug="bench")
        agency = Viewer(kind="PARTNER", actor="bench", partner_id=partner.id, permissions=PARTNER_PERMISSIONS)
        workspace = await partners.create_workspace(agency, name="Hot", owner_email="hot@bench.example")
        result = await wallets.adjust_workspace_balance(
            agency, workspace_id=workspace.id, unit="POINTS", amount=START_BALANCE, note="", idempotency_key="seed"
        )
        key = (await api_keys.create_key(partner_id=partner.id)).secret
        return workspace.id, result.wallet_id, key
    finally:
        await Tortoise.close_connections()


def floor_debit(pool: asyncpg.Pool, wallet_id: int) -> Callable[[], Awaitable[None]]:
    async def debit() -> None:
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE wallet SET balance = balance - 1 WHERE id = $1 AND balance - 1 >= -credit_limit"
                " RETURNING balance, partner_id",
                wallet_id,
            )
            await conn.execute(
                "INSERT INTO ledger_entry (created_at, posting_id, partner_id, wallet_id, unit, amount,"
                " balance_after, cause) VALUES (now(), 1, $1, $2, 'POINTS', -1, $3, 'USAGE')",
                row["partner_id"],
                wallet_id,
                row["balance"],
            )

    return debit


def api_debit(http: LeanHttp, workspace_id: int) -> Callable[[], Awaitable[None]]:
    counter = itertools.count()
    gid = to_global_id("Workspace", workspace_id)

    async def debit() -> None:
        body = orjson.dumps({"query": DEBIT, "variables": {"id": gid, "key": f"d{next(counter)}"}})
        status, answer = await http.post("/graphql", body)
        assert status == 200 and orjson.loads(answer)["data"]["debitUnits"]["errors"] == [], answer

    return debit


async def in_process(url: str, workspace_id: int, wallet_id: int) -> tuple[float, float]:
    """Where the time goes: the same keyed debit called in-process, and a bare one-statement spend."""
    await db.connect(url)
    try:
        workspace = await Workspace.get(id=workspace_id)
        agency = Viewer(kind="PARTNER", actor="bench", partner_id=workspace.partner_id, permissions=PARTNER_PERMISSIONS)
        counter = itertools.count()

        async def keyed() -> None:
            await wallets.adjust_workspace_balance(
                agency,
                workspace_id=workspace_id,
                unit="POINTS",
                amount=1,
                note="",
                idempotency_key=f"p{next(counter)}",
                debit=True,
            )

        async def bare() -> None:
            await wallets.spend(wallet_id, 1, cause=LedgerCause.USAGE)

        return await run_for(SECONDS, CLIENTS, keyed) / SECONDS, await run_for(SECONDS, CLIENTS, bare) / SECONDS
    finally:
        await Tortoise.close_connections()


async def main() -> None:
    async with scratch_database() as name:
        url = database_url(name, minsize=str(POOL), maxsize=str(POOL))
        workspace_id, wallet_id, key = await seed(url)
        # A posting row for the floor's entries to point at.
        conn = await asyncpg.connect(asyncpg_dsn(url))
        await conn.execute(
            "INSERT INTO posting (id, created_at, cause, note) VALUES (1, now(), 'USAGE', '') ON CONFLICT DO NOTHING"
        )
        await conn.close()
        # The floor and whitebill take turns, ROUNDS times each: the disk's commit latency, which both
        # wait on, drifts by half over a minute on this machine, and alternating puts both in the same weather.
        floor_load, ours_load = Load(0, 0.0, 0.0), Load(0, 0.0, 0.0)
        share = str(POOL // PROCESSES)
        pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=POOL, max_size=POOL)
        try:
            with server(database_url(name, minsize=share, maxsize=share), processes=PROCESSES) as (base, _):
                async with LeanHttp(base, CLIENTS, {"Authorization": f"Bearer {key}"}) as http:
                    raw_debit, our_debit = floor_debit(pool, wallet_id), api_debit(http, workspace_id)
                    for round_number in range(ROUNDS):
                        raw = await load_for(SECONDS / ROUNDS, CLIENTS, raw_debit)
                        ours = await load_for(SECONDS / ROUNDS, CLIENTS, our_debit)
                        print(f"P3 round {round_number + 1}: floor {raw.rate:.0f}/s, whitebill {ours.rate:.0f}/s")
                        floor_load, ours_load = floor_load + raw, ours_load + ours
            # Every debit answered was made, once: no replay, nothing lost.
            entries = await pool.fetchval(
                "SELECT count(*) FROM ledger_entry WHERE wallet_id = $1 AND cause = 'ADJUSTMENT'", wallet_id
            )
            assert entries == ours_load.completed, (entries, ours_load.completed)
        finally:
            await pool.close()
        if DETAIL:
            keyed, bare = await in_process(url, workspace_id, wallet_id)
            print(f"P3 detail: in-process keyed debit {keyed:.1f}/s, in-process one-statement spend {bare:.1f}/s")
    report("P3", ours_load.rate, "debits/s", floor_load.rate)


if __name__ == "__main__":
    asyncio.run(main())
