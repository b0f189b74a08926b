"""P4: the server's memory under a long run.

A real ``whitebill serve`` process (pool of POOL connections) over P1's seed (a partner with 120
workspaces on plans, add-ons and wallets) answers CLIENTS concurrent clients sending a fixed mix of
requests (MIX, in a shuffled but repeatable order): P1's dashboard page, small queries (the viewer,
one wallet by id) and grantUnits mutations, each with a fresh idempotency key (so the ledger, the
idempotency records and the audit log grow in the database as they would). Its resident set size
(VmRSS in /proc/<pid>/status) is read after WARMUP requests, then after REQUESTS more.

BENCH P4 <RSS after the run> MB floor=<RSS after the warm-up> ratio=<after / warm-up>.
Goal: at most 150 MB, and a ratio of at most 1.10.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time

import asyncpg
import httpx

from bench.common import (
    BackendCpu,
    asyncpg_dsn,
    cpu_seconds,
    database_url,
    exit_on_sigterm,
    memory_mb,
    report,
    scratch_database,
    server,
)
from bench.p1_dashboard import DASHBOARD, analyse, seed
from schema.ids import to_global_id

CLIENTS = int(os.environ.get("BENCH_P4_CLIENTS", "32"))
POOL = int(os.environ.get("BENCH_POOL", "8"))
WARMUP = int(os.environ.get("BENCH_P4_WARMUP", "1000"))
REQUESTS = int(os.environ.get("BENCH_P4_REQUESTS", "100000"))
# Requests of each kind in every 100, in a shuffled order that repeats.
MIX = dict(
    (kind, int(weight))
    for kind, weight in (
        part.split(":")
        for part in os.environ.get("BENCH_P4_MIX", "dashboard:2,grant:18,viewer:40,wallet:40").split(",")
    )
)

VIEWER = "query { viewer { kind permissions partner { name slug } } }"
WALLET = "query($id: ID!) { node(id: $id) { ... on Wallet { unit balance { amount unit } updatedAt } } }"
GRANT = """mutation($id: ID!, $key: String!) { grantUnits(input: {workspaceId: $id, unit: "POINTS", amount: "1",
note: "bench", idempotencyKey: $key}) { wallet { balance { amount } } errors { code } } }"""


class Driver:
    """Sends the mix from CLIENTS concurrent clients; ``run(n)`` returns once n more requests are done."""

    def __init__(self, http: httpx.AsyncClient, workspaces: list[str], wallets: list[str]) -> None:
        self.http = http
        self.workspaces = workspaces
        self.wallets = wallets
        order = [kind for kind, weight in MIX.items() for _ in range(weight)]
        random.Random(4).shuffle(order)
        self.order = order
        self.sent = itertools.count()
        self.done: dict[str, int] = dict.fromkeys(MIX, 0)

    def request(self, i: int) -> tuple[str, dict[str, object]]:
        kind = self.order[i % len(self.order)]
        if kind == "dashboard":
            return kind, {"query": DASHBOARD, "variables": {"first": 50}}
        if kind == "grant":
            workspace = self.workspaces[i % len(self.workspaces)]
            return kind, {"query": GRANT, "variables": {"id": workspace, "key": f"grant-{i}"}}
        if kind == "viewer":
            return kind, {"query": VIEWER}
        if kind == "wallet":
            return kind, {"query": WALLET, "variables": {"id": self.wallets[i % len(self.wallets)]}}
        raise ValueError(f"unknown kind of request in BENCH_P4_MIX: {kind}")

    async def run(self, count: int) -> None:
        remaining = count

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                kind, body = self.request(next(self.sent))
                response = await self.http.post("/graphql", json=body)
                answer = response.json()
                assert response.status_code == 200 and not answer.get("errors"), response.text
                assert kind != "grant" or answer["data"]["grantUnits"]["errors"] == [], response.text
                self.done[kind] += 1

        await asyncio.gather(*(client() for _ in range(CLIENTS)))


async def ids(url: str) -> tuple[list[str], list[str]]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        workspaces = [r["id"] for r in await conn.fetch("SELECT id FROM workspace ORDER BY id")]
        wallets = [
            r["id"] for r in await conn.fetch("SELECT id FROM wallet WHERE workspace_id IS NOT NULL ORDER BY id")
        ]
    finally:
        await conn.close()
    return [to_global_id("Workspace", i) for i in workspaces], [to_global_id("Wallet", i) for i in wallets]


async def soak(url: str, name: str, key: str, admin: asyncpg.Connection) -> tuple[float, float]:
    """The server's RSS (MB) after the warm-up and after the run; prints the details on the way."""
    workspaces, wallets = await ids(url)
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    headers = {"authorization": f"Bearer {key}"}
    with server(url) as (base, process):
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120, headers=headers) as http:
            driver = Driver(http, workspaces, wallets)
            started = time.monotonic()
            await driver.run(WARMUP)
            warm = memory_mb(process.pid)
            print(
                f"P4 detail: after the {WARMUP}-request warm-up: RSS {warm:.1f} MB"
                f" ({time.monotonic() - started:.1f} s)",
                flush=True,
            )
            backends = BackendCpu(admin, name)
            await backends.start()
            server_cpu, load_cpu = cpu_seconds(process.pid), time.process_time()
            done, started, step = 0, time.monotonic(), max(REQUESTS // 10, 1)
            while done < REQUESTS:
                batch = min(step, REQUESTS - done)
                await driver.run(batch)
                done += batch
                database_cpu = await backends.sample()
                elapsed = time.monotonic() - started
                print(
                    f"P4 detail: {done} requests after the warm-up: RSS {memory_mb(process.pid):.1f} MB,"
                    f" {elapsed:.0f} s, {done / elapsed:.0f} req/s",
                    flush=True,
                )
            after, peak = memory_mb(process.pid), memory_mb(process.pid, "VmHWM")
            server_cpu, load_cpu = cpu_seconds(process.pid) - server_cpu, time.process_time() - load_cpu
    cpu = ", ".join(
        f"{who} {seconds / REQUESTS * 1000:.2f} ms"
        for who, seconds in (("server", server_cpu), ("PostgreSQL", database_cpu), ("load generator", load_cpu))
    )
    mix = ", ".join(f"{kind} {n}" for kind, n in driver.done.items())
    print(
        f"P4 detail: {CLIENTS} clients sent {mix}; peak RSS (VmHWM) {peak:.1f} MB; CPU per request: {cpu}", flush=True
    )
    return warm, after


async def main() -> None:
    async with scratch_database() as name:
        url = database_url(name, minsize=str(POOL), maxsize=str(POOL))
        key = await seed(url)
        await analyse(name)
        admin = await asyncpg.connect(asyncpg_dsn(database_url(name)))
        try:
            warm, after = await soak(url, name, key, admin)
        finally:
            await admin.close()
    report("P4", after, "MB", warm)


if __name__ == "__main__":
    exit_on_sigterm()
    asyncio.run(main())
