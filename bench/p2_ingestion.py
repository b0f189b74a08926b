"""P2: usage ingestion on PostgreSQL, 4 concurrent senders of one partner, batches of 1,000 events.

whitebill: ``POST /usage`` to real servers, one ``whitebill serve`` process per core (each with a pool of
POOL connections), the senders' connections spread over them as a balancer would; each sender reports
for its own project, and every batch debits the partner's one centralised balance.
Floor: the same 4 senders running exactly the statements whitebill runs for a batch (the key lookup,
the project lookup, then in one transaction the events-and-projects statement and the balance
statement, taken from ``billing.usage.whatsapp`` itself) straight through asyncpg, with the arrays already
built, on a pool of the same size.

The two take turns (BENCH_ROUNDS turns each, BENCH_SECONDS in all for each) and the ratio is of their
totals. Bodies and arrays are prepared before the clock starts, so neither side pays for making up events.
Afterwards it checks that every event is traceable to its posting and that replaying a batch
charges nothing.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import asyncpg
import httpx
import orjson
from tortoise import Tortoise

from bench.common import LeanHttp, Load, asyncpg_dsn, database_url, report, run_on_uvloop, scratch_database, servers
from billing.accounts import opening
from billing.catalog import rate_cards
from billing.core.tenancy import Viewer
from billing.tenants import api_keys, partners
from billing.usage import exact_amounts, whatsapp
from models.enums import (
    PARTNER_PERMISSIONS,
    PLATFORM_PERMISSIONS,
    MarginKind,
    MessageCategory,
    OwnerKind,
    Permission,
)
from models.tenancy import Partner, Project
from schema.ids import to_global_id
from whitebill import db

SENDERS = 4
BATCH = 1000
POOL = int(os.environ.get("BENCH_POOL", "4"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "12"))  # for each side, split into ROUNDS turns
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "4"))
# One server process per core, as production runs N stateless servers behind a balancer.
PROCESSES = int(os.environ.get("BENCH_P2_PROCESSES", str(os.cpu_count() or 1)))
PREPARED = int(os.environ.get("BENCH_P2_BATCHES", "400"))  # per sender and side: more than a run needs
PLATFORM = Viewer(kind="PLATFORM", actor="bench", permissions=PLATFORM_PERMISSIONS)
RATE = "0.0625"  # per message, BRL
NO_LEVELS = [None] * BATCH  # a direct partner's events: nobody above it pays for them


async def seed(url: str) -> dict[str, Any]:
    await db.connect(url)
    try:
        partner = await partners.create_partner(PLATFORM, name="Bench", slug="bench")
        await Partner.filter(id=partner.id).update(default_currency="BRL")
        agency = Viewer(kind="PARTNER", actor="bench", partner_id=partner.id, permissions=PARTNER_PERMISSIONS)
        await rate_cards.set_platform_rates(
            PLATFORM,
            currency="BRL",
            cells=[rate_cards.CellInput(country, MessageCategory.MARKETING, RATE) for country in ("BR", "*")],
        )
        await rate_cards.set_partner_margin(agency, partner_id=partner.id, kind=MarginKind.PERCENTAGE, value="20")
        projects = []
        for i in range(2 * SENDERS):  # half for whitebill, half for the floor
            workspace = await partners.create_workspace(agency, name=f"W{i}", owner_email=f"w{i}@bench.example")
            project = await Project.get(workspace_id=workspace.id)
            wallet = await opening.project_wallet(project, "BRL")
            projects.append((project.id, wallet.id))
        central = await opening.open_wallet(
            partner_id=partner.id, owner_kind=OwnerKind.PARTNER, owner_id=partner.id, unit="BRL"
        )
        key = (
            await api_keys.create_key(partner_id=None, name="product", permissions=frozenset({Permission.REPORT_USAGE}))
        ).secret
        key_prefix = key.split("_", 2)[1]
        return {"partner": partner.id, "projects": projects, "central": central.id, "key": key, "prefix": key_prefix}
    finally:
        await Tortoise.close_connections()


async def fund(dsn: str, seeded: dict[str, Any]) -> None:
    """Plenty of credit everywhere, so that neither side takes the careful path."""
    conn = await asyncpg.connect(dsn)
    try:
        ids = [w for _, w in seeded["projects"]] + [seeded["central"]]
        await conn.execute("UPDATE wallet SET balance = 100000000000000 WHERE id = ANY($1::bigint[])", ids)
    finally:
        await conn.close()


def bodies(project_id: int, sender: str, when: datetime) -> list[bytes]:
    gid = to_global_id("Project", project_id)
    stamp = when.isoformat()
    return [
        orjson.dumps(
            {
                "events": [
                    {
                        "projectId": gid,
                        "eventId": f"{sender}-{b}-{i}",
                        "category": "MARKETING",
                        "occurredAt": stamp,
                        "recipient": f"+5511{(b * BATCH + i) % 10**9:09d}",
                    }
                    for i in range(BATCH)
                ]
            }
        )
        for b in range(PREPARED)
    ]


async def api_turn(http: LeanHttp, prepared: list[Iterator[bytes]], seconds: float) -> Load:
    """One turn of the 4 senders on kept-alive connections (a lean client: its CPU shares the machine)."""
    done = 0
    started = time.monotonic()
    stop = started + seconds

    async def sender(mine: Iterator[bytes]) -> None:
        nonlocal done
        for body in mine:
            status, answer = await http.post("/usage", body)
            assert status == 200, answer[:500]
            done += BATCH
            if time.monotonic() >= stop:
                return
        raise RuntimeError("ran out of prepared batches: raise BENCH_P2_BATCHES")

    await asyncio.gather(*(sender(p) for p in prepared))
    return Load(done, seconds, time.monotonic() - started)


def floor_batches(seeded: dict[str, Any], sender: int, when: datetime) -> list[tuple[list[Any], list[Any]]]:
    """The statement parameters whitebill builds for each batch, built here ahead of time."""
    rate = Fraction(Decimal(RATE))
    return prepared_arrays(seeded["projects"][SENDERS + sender], sender, when, rate * Fraction(6, 5), rate)


def prepared_arrays(
    project: tuple[int, int], sender: int, when: datetime, client_rate: Fraction, paid_rate: Fraction
) -> list[tuple[list[Any], list[Any]]]:
    """A sender's batches of one-message events of ``project`` (its id and wallet) as the events statement
    takes them: the client charged ``client_rate``, its partner ``paid_rate``."""
    project_id, wallet_id = project
    platform = exact_amounts.split(exact_amounts.charge_fine(1, paid_rate, "BRL"))
    partner = exact_amounts.split(exact_amounts.charge_fine(1, client_rate, "BRL"))
    # Only the event ids differ from batch to batch: the other columns are shared lists.
    same = [
        [project_id] * BATCH,
        ["BR"] * BATCH,
        ["MARKETING"] * BATCH,
        ["NONE"] * BATCH,
        [1] * BATCH,
        [False] * BATCH,
        [when] * BATCH,
        [partner[0]] * BATCH,
        [partner[1]] * BATCH,
        [platform[0]] * BATCH,
        [platform[1]] * BATCH,
    ]
    projects = [[project_id], [wallet_id], [False]]
    out = []
    for b in range(PREPARED):
        ids = [f"floor{sender}-{b}-{i}" for i in range(BATCH)]
        out.append(([same[0], ids, *same[1:]], projects))
    return out


async def lookups(pool: asyncpg.Pool, seeded: dict[str, Any], project_id: int) -> None:
    """What whitebill reads before a batch's transaction: the key, then the project (and its partners)."""
    async with pool.acquire() as conn:
        await conn.fetchrow("SELECT * FROM api_key WHERE prefix = $1", seeded["prefix"])
    async with pool.acquire() as conn:
        await conn.fetch(whatsapp.PROJECTS_SQL + " WHERE p.id IN (" + str(project_id) + ")")


async def floor_turn(
    pool: asyncpg.Pool, seeded: dict[str, Any], prepared: list[Iterator[tuple[list[Any], list[Any]]]], seconds: float
) -> Load:
    """One turn of the 4 senders running whitebill's statements for a batch straight through asyncpg."""
    done = 0
    started = time.monotonic()
    stop = started + seconds

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
                    NO_LEVELS,
                )
                await conn.fetchrow(
                    whatsapp.CENTRAL_SQL, row["platform_whole"], now, seeded["central"], row["posting_id"],
                    seeded["partner"], "BRL", row["platform_fine"], "PLATFORM_REVENUE",
                )  # fmt: skip
            done += BATCH
            if time.monotonic() >= stop:
                return
        raise RuntimeError("ran out of prepared batches: raise BENCH_P2_BATCHES")

    await asyncio.gather(*(sender(n, p) for n, p in enumerate(prepared)))
    return Load(done, seconds, time.monotonic() - started)


async def check(dsn: str, base: str, seeded: dict[str, Any], replay: bytes) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        untraced = await conn.fetchval(
            "SELECT count(*) FROM usage_event WHERE posting_id IS NULL OR posting_id NOT IN (SELECT id FROM posting)"
        )
        assert untraced == 0, f"{untraced} events without their posting"
        fine = exact_amounts.FINE
        # Each posting's entry on the balance moves its events' exact sum to within a minor unit ...
        mismatched = await conn.fetchval(
            "SELECT count(*) FROM (SELECT e.posting_id, sum(e.platform_amount)::numeric * $2 + sum(e.platform_fraction)"
            " AS events, (SELECT coalesce(-sum(l.amount), 0) FROM ledger_entry l WHERE l.posting_id = e.posting_id"
            " AND l.wallet_id = $1)::numeric * $2 AS ledger FROM usage_event e GROUP BY e.posting_id) s"
            " WHERE abs(s.events - s.ledger) >= $2",
            seeded["central"],
            fine,
        )
        assert mismatched == 0, f"{mismatched} postings whose balance entry is not their events' exact sum"
        # ... and the balance's usage entries plus its remainder are all its events' exact amounts.
        exact, entries, remainder = await conn.fetchrow(
            "SELECT (SELECT sum(platform_amount)::numeric * $2 + sum(platform_fraction) FROM usage_event),"
            " (SELECT -sum(amount)::numeric * $2 FROM ledger_entry WHERE wallet_id = $1 AND cause = 'USAGE'),"
            " (SELECT usage_remainder FROM wallet WHERE id = $1)",
            seeded["central"],
            fine,
        )
        assert exact == entries + remainder and abs(remainder) <= fine // 2, (exact, entries, remainder)
        balance = await conn.fetchval("SELECT balance FROM wallet WHERE id = $1", seeded["central"])
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            answer = await http.post("/usage", content=replay, headers={"authorization": f"Bearer {seeded['key']}"})
        statuses = {r["status"] for r in answer.json()["results"]}
        assert statuses == {"DUPLICATE"}, statuses
        assert await conn.fetchval("SELECT balance FROM wallet WHERE id = $1", seeded["central"]) == balance
        print(
            "P2 checks: every event has its posting, the balance's entries and remainder are its events' exact"
            " sum, a replay charged nothing"
        )
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
        first_body = api_bodies[0][0]
        ours_batches = [iter(b) for b in api_bodies]
        floor_batches_ = [iter(floor_batches(seeded, s, when)) for s in range(SENDERS)]
        # The floor and whitebill take turns (see P3): both meet the same disk and the same machine.
        raw_load, ours_load = Load(0, 0.0, 0.0), Load(0, 0.0, 0.0)
        pool = await asyncpg.create_pool(dsn, min_size=POOL, max_size=POOL)
        try:
            with servers(url, PROCESSES) as bases:
                async with LeanHttp(bases, SENDERS, {"Authorization": f"Bearer {seeded['key']}"}) as http:
                    for round_number in range(ROUNDS):
                        raw = await floor_turn(pool, seeded, floor_batches_, SECONDS / ROUNDS)
                        ours = await api_turn(http, ours_batches, SECONDS / ROUNDS)
                        print(f"P2 round {round_number + 1}: floor {raw.rate:.0f}, whitebill {ours.rate:.0f} events/s")
                        raw_load, ours_load = raw_load + raw, ours_load + ours
                await check(dsn, bases[0], seeded, first_body)
        finally:
            await pool.close()
    report("P2", ours_load.rate, "events/s", raw_load.rate)


def run() -> None:
    run_on_uvloop(main)


if __name__ == "__main__":
    run()
