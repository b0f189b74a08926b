"""P7: usage ingestion down a chain of resellers on PostgreSQL: platform -> master -> agency -> freelancer ->
the freelancer's clients, 4 concurrent senders, batches of 1,000 events.

Each event charges the client's project at the freelancer's rate and debits, in the batch's one
transaction, the freelancer its agency's rate, the agency its master's and the master the platform's:
three centralised balances per batch besides the projects.

whitebill: ``POST /usage`` to one ``whitebill serve`` process per core, as in P2.
Floor: the same 4 senders running the statements whitebill runs for such a batch (the key lookup, the
project lookup with the partners above it, then in one transaction the events-and-projects statement and
the balance statement once for each of the three levels, in wallet order, taken from
``billing.usage.whatsapp`` itself) straight through asyncpg, with the arrays and every level's sum already
built, on a pool of the same size.

The two take turns (BENCH_ROUNDS turns each) and the ratio is of their totals. Both sides' CPU is
measured per 1,000 events: this process (the lean HTTP client, or the floor's asyncpg client), the
servers and the PostgreSQL backends, with the share of the machine's cores they kept busy (how the run
shows the floor saturates the machine rather than waits on its client). Afterwards it checks that every
level's usage entries add up to its events at its parent's rate and that a replay charges nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import asyncpg
import httpx
from tortoise import Tortoise

from bench.common import (
    BackendCpu,
    LeanHttp,
    Load,
    admin_url,
    asyncpg_dsn,
    cpu_seconds,
    database_url,
    report,
    run_on_uvloop,
    scratch_database,
    server,
)
from bench.p2_ingestion import (
    BATCH,
    PLATFORM,
    POOL,
    ROUNDS,
    SECONDS,
    SENDERS,
    api_turn,
    bodies,
    lookups,
    prepared_arrays,
)
from billing.accounts import opening
from billing.catalog import rate_cards
from billing.core.tenancy import Viewer
from billing.tenants import api_keys, partners
from billing.usage import exact_amounts, whatsapp
from models.enums import PARTNER_PERMISSIONS, MarginKind, MessageCategory, OwnerKind, Permission
from models.tenancy import Partner, Project
from whitebill import db

PROCESSES = int(os.environ.get("BENCH_P7_PROCESSES", str(os.cpu_count() or 1)))
RATE = Fraction(Decimal("0.0625"))  # the platform's, per message, BRL
# Each level's margin over its parent's rate, top first: +20 %, +0.01 a message, +15 %.
MARGINS = ((MarginKind.PERCENTAGE, "20"), (MarginKind.FIXED, "0.01"), (MarginKind.PERCENTAGE, "15"))


def _viewer(partner_id: int) -> Viewer:
    return Viewer(kind="PARTNER", actor="bench", partner_id=partner_id, permissions=PARTNER_PERMISSIONS)


async def seed(url: str) -> dict[str, Any]:
    await db.connect(url)
    try:
        master = await partners.create_partner(PLATFORM, name="Master", slug="master", currency="BRL")
        agency = await partners.create_sub_partner(_viewer(master.id), name="Agency", slug="agency")
        freelancer = await partners.create_sub_partner(_viewer(agency.id), name="Freelancer", slug="freelancer")
        chain = [master, agency, freelancer]
        await rate_cards.set_platform_rates(
            PLATFORM,
            currency="BRL",
            cells=[rate_cards.CellInput(c, MessageCategory.MARKETING, "0.0625") for c in ("BR", "*")],
        )
        for partner, (kind, value) in zip(chain, MARGINS, strict=True):
            await rate_cards.set_partner_margin(_viewer(partner.id), partner_id=partner.id, kind=kind, value=value)
        projects = []
        for i in range(2 * SENDERS):  # half for whitebill, half for the floor
            workspace = await partners.create_workspace(
                _viewer(freelancer.id), name=f"W{i}", owner_email=f"w{i}@bench.example"
            )
            project = await Project.get(workspace_id=workspace.id)
            wallet = await opening.project_wallet(project, "BRL")
            projects.append((project.id, wallet.id))
        centrals = [
            (await opening.open_wallet(partner_id=p.id, owner_kind=OwnerKind.PARTNER, owner_id=p.id, unit="BRL")).id
            for p in chain
        ]
        key = (
            await api_keys.create_key(partner_id=None, name="product", permissions=frozenset({Permission.REPORT_USAGE}))
        ).secret
        assert (await Partner.get(id=freelancer.id)).level == 3
        return {
            "chain": [p.id for p in chain],
            "partner": freelancer.id,
            "projects": projects,
            "centrals": centrals,
            "key": key,
            "prefix": key.split("_", 2)[1],
        }
    finally:
        await Tortoise.close_connections()


def level_rates() -> list[Fraction]:
    """What each level pays, top first, then what the clients pay: each rounded once (rate_cards.kept)."""
    rates = [RATE]
    for kind, value in MARGINS:
        rates.append(rate_cards.kept(rate_cards.with_margin(rates[-1], kind, Decimal(value))))
    return rates


async def fund(dsn: str, seeded: dict[str, Any]) -> None:
    """Plenty of credit everywhere, so that neither side takes the careful path."""
    conn = await asyncpg.connect(dsn)
    try:
        ids = [w for _, w in seeded["projects"]] + seeded["centrals"]
        await conn.execute("UPDATE wallet SET balance = 100000000000000 WHERE id = ANY($1::bigint[])", ids)
    finally:
        await conn.close()


def floor_batches(seeded: dict[str, Any], sender: int, when: datetime) -> list[tuple[list[Any], list[Any]]]:
    """The statement parameters whitebill builds for each batch, built here ahead of time."""
    *_, cost, price = level_rates()
    return prepared_arrays(seeded["projects"][SENDERS + sender], sender, when, price, cost)


async def floor_turn(
    pool: asyncpg.Pool, seeded: dict[str, Any], prepared: list[Iterator[tuple[list[Any], list[Any]]]], seconds: float
) -> Load:
    """One turn of the 4 senders running whitebill's statements for a batch straight through asyncpg."""
    done = 0
    started = time.monotonic()
    stop = started + seconds
    # The two levels above the freelancer: their batch sums (every event charged), precomputed.
    upper = [exact_amounts.split(exact_amounts.charge_fine(BATCH, rate, "BRL")) for rate in level_rates()[:2]]
    centrals = seeded["centrals"]
    # Each event's usage_event.levels, as whitebill writes it: what the master and the agency pay for it.
    each = [
        [p, exact_amounts.charge_fine(1, rate, "BRL")] for p, rate in zip(seeded["chain"], level_rates(), strict=False)
    ]
    levels = [json.dumps(each[:2])] * BATCH

    async def sender(sender_number: int, mine: Iterator[tuple[list[Any], list[Any]]]) -> None:
        nonlocal done
        project_id = seeded["projects"][SENDERS + sender_number][0]
        for events, projects in mine:
            await lookups(pool, seeded, project_id)
            now = datetime.now(UTC)
            async with pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    whatsapp.EVENTS_AND_PROJECTS_SQL,
                    now,
                    seeded["partner"],
                    "bench",
                    "BRL",
                    *events,
                    *projects,
                    BATCH,
                    levels,
                )
                debits = [
                    (centrals[0], *upper[0], seeded["chain"][0], "PLATFORM_REVENUE"),
                    (centrals[1], *upper[1], seeded["chain"][1], "PARTNER_REVENUE"),
                    (centrals[2], row["platform_whole"], row["platform_fine"], seeded["partner"], "PARTNER_REVENUE"),
                ]
                for wallet_id, whole, fine, partner_id, account in sorted(debits):
                    await conn.fetchrow(
                        whatsapp.CENTRAL_SQL, whole, now, wallet_id, row["posting_id"], partner_id, "BRL", fine, account
                    )
            done += BATCH
            if time.monotonic() >= stop:
                return
        raise RuntimeError("ran out of prepared batches: raise BENCH_P2_BATCHES")

    await asyncio.gather(*(sender(n, p) for n, p in enumerate(prepared)))
    return Load(done, seconds, time.monotonic() - started)


class Cpu:
    """CPU seconds of this process, the server processes and the database's backends over some turns."""

    def __init__(self, backends: BackendCpu, server_pids: list[int]) -> None:
        self.backends, self.pids = backends, server_pids
        self.totals = {"client": 0.0, "servers": 0.0, "database": 0.0}

    async def measure(self, turn: Any) -> Load:
        times, servers = os.times(), [cpu_seconds(p) for p in self.pids]
        await self.backends.start()
        load: Load = await turn
        after = os.times()
        self.totals["client"] += after.user + after.system - times.user - times.system
        self.totals["servers"] += sum(cpu_seconds(p) for p in self.pids) - sum(servers)
        self.totals["database"] += await self.backends.sample()
        return load

    def line(self, side: str, load: Load) -> str:
        per = {k: 1_000_000 * v / load.completed for k, v in self.totals.items()}  # ms per 1,000 events
        busy = sum(self.totals.values()) / (load.elapsed * (os.cpu_count() or 1))
        spent = ", ".join(f"{k} {v:.1f}" for k, v in per.items())
        return f"P7 {side}: CPU ms per 1,000 events: {spent}; the cores {100 * busy:.0f} % busy"


async def check(dsn: str, base: str, seeded: dict[str, Any], replay: bytes) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        fine = exact_amounts.FINE
        messages = await conn.fetchval("SELECT sum(count) FROM usage_event")
        for wallet_id, rate in zip(seeded["centrals"], level_rates(), strict=False):
            moved, remainder = await conn.fetchrow(
                "SELECT (SELECT -sum(amount) FROM ledger_entry WHERE wallet_id = $1 AND cause = 'USAGE'),"
                " (SELECT usage_remainder FROM wallet WHERE id = $1)",
                wallet_id,
            )
            exact = exact_amounts.charge_fine(messages, rate, "BRL")
            assert moved * fine + remainder == exact, (wallet_id, moved, remainder, exact)
        balances = await conn.fetch("SELECT id, balance FROM wallet ORDER BY id")
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            answer = await http.post("/usage", content=replay, headers={"authorization": f"Bearer {seeded['key']}"})
        assert {r["status"] for r in answer.json()["results"]} == {"DUPLICATE"}
        assert await conn.fetch("SELECT id, balance FROM wallet ORDER BY id") == balances
        print("P7 checks: every level's usage entries and remainder are its events at its parent's rate, exactly;")
        print("P7 checks: a replay charged nothing")
    finally:
        await conn.close()


async def main() -> None:
    async with scratch_database() as name:
        url = database_url(name, minsize=str(POOL), maxsize=str(POOL))
        seeded = await seed(url)
        dsn = asyncpg_dsn(url)
        await fund(dsn, seeded)
        when = datetime.now(UTC).replace(microsecond=0)
        api_bodies = [bodies(seeded["projects"][s][0], f"api{s}", when) for s in range(SENDERS)]
        ours_batches = [iter(b) for b in api_bodies]
        floor_batches_ = [iter(floor_batches(seeded, s, when)) for s in range(SENDERS)]
        raw_load, ours_load = Load(0, 0.0, 0.0), Load(0, 0.0, 0.0)
        pool = await asyncpg.create_pool(dsn, min_size=POOL, max_size=POOL)
        admin = await asyncpg.connect(asyncpg_dsn(admin_url()))
        try:
            with contextlib.ExitStack() as stack:
                started = [stack.enter_context(server(url)) for _ in range(PROCESSES)]
                bases, pids = [b for b, _ in started], [p.pid for _, p in started]
                floor_cpu = Cpu(BackendCpu(admin, name), pids)
                ours_cpu = Cpu(BackendCpu(admin, name), pids)
                async with LeanHttp(bases, SENDERS, {"Authorization": f"Bearer {seeded['key']}"}) as http:
                    for round_number in range(ROUNDS):
                        raw = await floor_cpu.measure(floor_turn(pool, seeded, floor_batches_, SECONDS / ROUNDS))
                        ours = await ours_cpu.measure(api_turn(http, ours_batches, SECONDS / ROUNDS))
                        print(f"P7 round {round_number + 1}: floor {raw.rate:.0f}, whitebill {ours.rate:.0f} events/s")
                        raw_load, ours_load = raw_load + raw, ours_load + ours
                print(floor_cpu.line("floor", raw_load))
                print(ours_cpu.line("whitebill", ours_load))
                await check(dsn, bases[0], seeded, api_bodies[0][0])
        finally:
            await admin.close()
            await pool.close()
    report("P7", ours_load.rate, "events/s", raw_load.rate)


def run() -> None:
    run_on_uvloop(main)


if __name__ == "__main__":
    run()
