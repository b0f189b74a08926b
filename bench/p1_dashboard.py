"""P1: a partner's dashboard, one GraphQL query for a page of 50 workspaces.

whitebill: DASHBOARD below over HTTP against a real ``whitebill serve`` process: each workspace with
its status, live subscription and plan (with the partner's price), effective limits (the plan's plus
its add-ons') and wallet balances. Floor: bench/dashboard_floor.py, a hand-written Starlette +
asyncpg endpoint, run the same way (its own uvicorn process, a pool of the same size), answering the
same JSON from the same database; the two answers are compared before anything is timed. Both are
driven by the same load generator (CLIENTS concurrent httpx requests for BENCH_SECONDS each, after a
one-second warm-up). CLIENTS is the pool size, 8: more clients only queue at the pools, and httpx's
own cost per request grows with its open connections (on the 2-core development machine it went
from 2.5 ms at 8 clients to 3.8 at 16 and 7 at 32, enough to make the load generator, not the
floor, the bottleneck).

The page does not list each workspace's add-ons (``Workspace.addOns``, a connection of its own): it
shows them through ``limits``, which are the plan's plus every active add-on's, and the seed gives a
third of the workspaces one or two add-ons.

SQL statements per request are counted on the server side: the app runs in this process (the same
``create_app`` the server runs) with every asyncpg connection method wrapped, for pages of 10 and
100, after one warm-up request. Transaction control (BEGIN/COMMIT) and the pool's connection reset
are counted apart.
"""

from __future__ import annotations

import contextlib
import cProfile
import os
import pstats
import re
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import orjson
from tortoise import Tortoise

from bench.common import (
    BackendCpu,
    LeanHttp,
    Load,
    asyncpg_dsn,
    cpu_seconds,
    database_url,
    exit_on_sigterm,
    free_port,
    load_for,
    process_server,
    run_on_uvloop,
    scratch_database,
    server,
)
from billing.accounts import wallets
from billing.catalog import plans
from billing.core.money import Money
from billing.core.tenancy import Viewer
from billing.subscriptions import entitlements, lifecycle
from billing.tenants import api_keys, partners
from models.enums import PARTNER_PERMISSIONS, PLATFORM_PERMISSIONS, BillingInterval, MarginKind
from whitebill import db, operations
from whitebill.schema import schema

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "8"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
POOL = int(os.environ.get("BENCH_POOL", "8"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
WORKSPACES = 120
PAGE = 50
PLATFORM = Viewer(kind="PLATFORM", actor="bench", permissions=PLATFORM_PERMISSIONS)

# The dashboard's parts per workspace: the breakdown times the page with some of them only.
PARTS = {
    "status": "id name status",
    "subscription": "subscription { status currentPeriodEnd }",
    "plan": "subscription { status currentPeriodEnd plan { id name price { amount currency } } }",
    "limits": "limits { name value }",
    "wallets": "wallets { unit balance { amount } }",
}


def dashboard(*parts: str) -> str:
    fields = " ".join(PARTS[p] for p in parts)
    return f"""query Dashboard($first: Int!, $after: String) {{
  workspaces(first: $first, after: $after) {{
    nodes {{ {fields} }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}"""


DASHBOARD = dashboard("status", "plan", "limits", "wallets")
# The dashboard as a frontend registers it (`whitebill operations register bench/dashboard.graphql`): the
# file holds DASHBOARD in graphql-core's printed form, which tests/test_persisted_operations.py checks.
DASHBOARD_FILE = Path(__file__).with_name("dashboard.graphql")
[DASHBOARD_OPERATION] = operations.split(DASHBOARD_FILE.read_text(), schema._schema)


# The same page for the general executor: another operation name makes it another document, which is
# not registered (the registered one, in any layout, runs compiled).
def on_the_general_executor(query: str) -> str:
    return query.replace("query Dashboard(", "query DashboardOnTheGeneralExecutor(", 1)


GENERAL = on_the_general_executor(DASHBOARD)
assert GENERAL != DASHBOARD
BREAKDOWN = [
    ("status",),
    ("status", "wallets"),
    ("status", "subscription"),
    ("status", "plan"),
    ("status", "limits"),
    ("status", "plan", "limits", "wallets"),
]


async def seed(url: str) -> str:
    """A partner with WORKSPACES workspaces on a mix of plans, add-ons, usage and wallets; its API key."""
    await db.connect(url)
    try:
        partner = await partners.create_partner(PLATFORM, name="Bench Agency", slug="bench-agency", currency="BRL")
        agency = Viewer(kind="PARTNER", actor="bench", partner_id=partner.id, permissions=PARTNER_PERMISSIONS)
        limits_basic = {"members": 5, "chatbots": 2, "conversations": 1000}
        limits_pro = {"members": 15, "chatbots": 10, "conversations": 10000}
        basic = await plans.create_plan(
            PLATFORM,
            name="Basic Monthly",
            interval=BillingInterval.MONTHLY,
            price=Money(4990, "BRL"),
            limits=limits_basic,
        )
        pro = await plans.create_plan(
            PLATFORM, name="Pro Monthly", interval=BillingInterval.MONTHLY, price=Money(9900, "BRL"), limits=limits_pro
        )
        own = await plans.create_plan(
            agency,
            name="Agency Starter",
            interval=BillingInterval.MONTHLY,
            price=Money(2990, "BRL"),
            limits={"members": 3, "chatbots": 1},
        )
        await plans.set_margin(agency, kind=MarginKind.PERCENTAGE, value=Decimal("20"))  # bulk: Basic 59.88
        await plans.set_margin(agency, kind=MarginKind.FIXED, value=Decimal(1500), plan_id=pro.id)  # Pro 114.00
        chatbot = await plans.create_add_on(
            agency, name="Extra chatbot", limit_deltas={"chatbots": 1}, price=Money(1000, "BRL")
        )
        seats = await plans.create_add_on(
            agency, name="Five more members", limit_deltas={"members": 5}, price=Money(1500, "BRL")
        )
        offered = [basic, pro, own]
        for i in range(WORKSPACES):
            workspace = await partners.create_workspace(
                agency, name=f"Client {i:03d}", owner_email=f"owner{i}@client{i}.example"
            )
            await wallets.adjust_workspace_balance(
                agency,
                workspace_id=workspace.id,
                unit="POINTS",
                amount=100 + i,
                note="welcome",
                idempotency_key=f"p{i}",
            )
            if i % 2 == 0:
                await wallets.adjust_workspace_balance(
                    agency,
                    workspace_id=workspace.id,
                    unit="MESSAGE_CREDITS",
                    amount=1000 * (i + 1),
                    note="",
                    idempotency_key=f"m{i}",
                )
            if i % 6 == 5:
                continue  # no plan: RESTRICTED
            plan = offered[i % 3]
            await lifecycle.assign_plan(
                agency, workspace_id=workspace.id, plan_id=plan.id, note="bench", idempotency_key=f"a{i}"
            )
            if i % 3 == 0:
                await entitlements.set_add_on(
                    agency, workspace_id=workspace.id, add_on_id=chatbot.id, quantity=1 + i % 2
                )
            if i % 6 == 0:
                await entitlements.set_add_on(agency, workspace_id=workspace.id, add_on_id=seats.id, quantity=1)
            if i % 10 == 7:  # usage above the plan's members: PAUSED
                await entitlements.report_usage(PLATFORM, workspace_id=workspace.id, metric="members", value=40)
        await operations.register([DASHBOARD_OPERATION])  # as a deployment registers its frontends' operations
        return (await api_keys.create_key(partner_id=partner.id)).secret
    finally:
        await Tortoise.close_connections()


async def analyse(name: str) -> None:
    """Fresh statistics, as autovacuum would soon have them: both sides plan with the same."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url(name)))
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


# -- statements, counted on the server side ------------------------------------------------------

_METHODS = ("execute", "executemany", "fetch", "fetchrow", "fetchval", "fetchmany", "prepare")
_TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', re.IGNORECASE)


@contextlib.contextmanager
def statements_seen() -> Iterator[list[str]]:
    """Every SQL text sent through any asyncpg connection while inside, in order."""
    seen: list[str] = []
    cls = asyncpg.connection.Connection
    originals = {name: getattr(cls, name) for name in _METHODS}
    for name, original in originals.items():

        async def counted(self, query, *args, _original=original, **kwargs):
            seen.append(query)
            return await _original(self, query, *args, **kwargs)

        setattr(cls, name, counted)
    try:
        yield seen
    finally:
        for name, original in originals.items():
            setattr(cls, name, original)


def kind_of(sql: str) -> str:
    text = sql.lstrip().upper()
    if "UNLISTEN" in text or "RESET ALL" in text:
        return "reset"
    if text.startswith(("BEGIN", "START", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")):
        return "transaction"
    return "statement"


def by_table(seen: list[str]) -> Counter[str]:
    found: Counter[str] = Counter()
    for sql in seen:
        if kind_of(sql) == "statement":
            match = _TABLE.search(sql)
            found[match.group(1) if match else sql.split()[0]] += 1
    return found


def fields_in(value: object) -> int:
    """How many fields a response's data resolved (every key of every object)."""
    if isinstance(value, dict):
        return sum(1 + fields_in(v) for v in value.values())
    if isinstance(value, list):
        return sum(fields_in(v) for v in value)
    return 0


async def in_process(url: str, key: str) -> tuple[dict[str, dict[int, Counter[str]]], list[str]]:
    """Statements per request for pages of 10, 50 and 100, through the app running in this process, by the
    general executor (GENERAL, which is not registered) and compiled (the
    registered document),
    and where a page of 50 spends its time: each of BREAKDOWN asked BREAKDOWN_REQUESTS times in a
    row, with its wall time, this process's CPU time, statements and fields per request.

    With BENCH_PROFILE set, also profiles PROFILE_REQUESTS page-50 requests with cProfile and prints
    the functions that take the most time, cumulative then their own (coroutines count one call per
    resumption)."""
    from whitebill.app import create_app
    from whitebill.settings import Settings

    await db.connect(url)
    try:
        app = create_app(Settings(database_url=url, env="production"), manage_database=False)
        transport = httpx.ASGITransport(app=app)
        headers = {"authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as http:

            async def ask(first: int, query: str = GENERAL) -> dict:
                response = await http.post("/graphql", json={"query": query, "variables": {"first": first}})
                body = response.json()
                assert not body.get("errors") and len(body["data"]["workspaces"]["nodes"]) == first, response.text
                return body["data"]

            await ask(1)  # the key's last-used time is written at most once in a while: not per request
            counts: dict[str, dict[int, Counter[str]]] = {"general": {}, "compiled": {}}
            for executor, query in (("general", GENERAL), ("compiled", DASHBOARD_OPERATION.document)):
                for first in (10, PAGE, 100):
                    await ask(first, query)
                    with statements_seen() as seen:
                        await ask(first, query)
                    counts[executor][first] = Counter(kind_of(s) for s in seen) + Counter(
                        {f"table:{t}": n for t, n in by_table(seen).items()}
                    )
            lines = []
            repeat = int(os.environ.get("BREAKDOWN_REQUESTS", "10"))
            for parts in BREAKDOWN:
                query = on_the_general_executor(dashboard(*parts))  # where the general executor spends its time
                await ask(PAGE, query)
                with statements_seen() as seen:
                    data = await ask(PAGE, query)
                wall, cpu = time.perf_counter(), time.process_time()
                for _ in range(repeat):
                    await ask(PAGE, query)
                wall, cpu = (time.perf_counter() - wall) / repeat, (time.process_time() - cpu) / repeat
                statements = sum(kind_of(s) == "statement" for s in seen)
                lines.append(
                    f"P1 breakdown: page of {PAGE} in-process, {' + '.join(parts)}: {wall * 1000:.1f} ms"
                    f" ({cpu * 1000:.1f} ms CPU), {statements} statements, {fields_in(data)} fields"
                )
            if os.environ.get("BENCH_PROFILE"):
                requests = int(os.environ.get("PROFILE_REQUESTS", "50"))
                profile = cProfile.Profile()
                profile.enable()
                for _ in range(requests):
                    await ask(PAGE)
                profile.disable()
                stats = pstats.Stats(profile, stream=sys.stdout).strip_dirs()
                stats.sort_stats("cumulative").print_stats(60)
                stats.sort_stats("tottime").print_stats(30)
        return counts, lines
    finally:
        await Tortoise.close_connections()


# -- load ----------------------------------------------------------------------------------------


@dataclass
class Side:
    """One side's load over every turn: requests, seconds, and CPU seconds spent by each process."""

    label: str
    pid: int
    load: Load | None = None
    cpu: Counter[str] = field(default_factory=Counter)

    def add(self, done: Load, spent: dict[str, float]) -> None:
        self.load = done if self.load is None else self.load + done
        self.cpu.update(spent)

    @property
    def rate(self) -> float:
        return self.load.rate if self.load else 0.0

    def line(self) -> str:
        assert self.load is not None
        per_request = ", ".join(f"{k} {v / self.load.completed * 1000:.2f} ms" for k, v in self.cpu.items())
        busy = sum(self.cpu.values()) / self.load.elapsed / (os.cpu_count() or 1)
        return (
            f"P1 detail: {self.label}: {self.rate:.1f} req/s ({self.load.completed} in {self.load.elapsed:.1f} s);"
            f" CPU per request: {per_request}; the {os.cpu_count()} cores {busy:.0%} busy"
        )


async def turn(side: Side, work: Callable[[], Awaitable[None]], name: str, admin: asyncpg.Connection) -> None:
    """SECONDS / ROUNDS of load on one side, with the CPU the server process, PostgreSQL (the backends of
    this database) and the load generator (this process) spent meanwhile."""
    backends = BackendCpu(admin, name)
    await backends.start()
    server_before, load_before = cpu_seconds(side.pid), time.process_time()
    done = await load_for(SECONDS / ROUNDS, CLIENTS, work)
    side.add(
        done,
        {
            "server": cpu_seconds(side.pid) - server_before,
            "PostgreSQL": await backends.sample(),
            "load generator": time.process_time() - load_before,
        },
    )


def persisted_body(variables: dict[str, object]) -> bytes:
    """The registered dashboard operation, sent by its hash alone (what a frontend sends)."""
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": DASHBOARD_OPERATION.sha256}}
    return orjson.dumps({"extensions": extensions, "variables": variables})


async def main() -> None:
    async with scratch_database() as name:
        url = database_url(name, minsize=str(POOL), maxsize=str(POOL))
        key = await seed(url)
        await analyse(name)
        counts, breakdown = await in_process(url, key)
        port = free_port()
        floor_env = dict(os.environ, FLOOR_DATABASE_URL=asyncpg_dsn(url), FLOOR_POOL=str(POOL), PORT=str(port))
        floor_base = f"http://127.0.0.1:{port}"
        admin = await asyncpg.connect(asyncpg_dsn(database_url(name)))
        headers = {"authorization": f"Bearer {key}"}
        try:
            with (
                server(url) as (base, process),
                process_server([sys.executable, "-m", "bench.dashboard_floor"], floor_env, floor_base) as floor_process,
            ):
                async with (
                    httpx.AsyncClient(base_url=base, timeout=60, headers=headers) as api,
                    httpx.AsyncClient(base_url=floor_base, timeout=60, headers=headers) as raw,
                ):
                    # The same JSON: a page of 50, the next page, pages of 10 and of 100.
                    async def same_json(first: int, after: str | None = None) -> dict:
                        variables = {"first": first, "after": after}
                        ours = (await api.post("/graphql", json={"query": GENERAL, "variables": variables})).json()
                        by_hash = orjson.loads(
                            (
                                await api.post(
                                    "/graphql",
                                    content=persisted_body(variables),
                                    headers={"content-type": "application/json"},
                                )
                            ).content
                        )
                        params = {"first": first, **({"after": after} if after else {})}
                        theirs = (await raw.get("/dashboard", params=params)).json()
                        assert not ours.get("errors"), ours
                        assert ours["data"] == theirs == by_hash["data"], (first, after, ours["data"], theirs)
                        return theirs

                    first_page = await same_json(PAGE)
                    await same_json(PAGE, first_page["workspaces"]["pageInfo"]["endCursor"])
                    await same_json(10)
                    await same_json(100)
                body = persisted_body({"first": PAGE})
                unregistered = orjson.dumps({"query": GENERAL, "variables": {"first": PAGE}})
                ours = Side("whitebill compiled", process.pid)
                general = Side("whitebill general", process.pid)
                floor = Side("floor", floor_process.pid)
                async with (
                    LeanHttp(base, CLIENTS, {"Authorization": f"Bearer {key}"}) as api_http,
                    LeanHttp(floor_base, CLIENTS, {"Authorization": f"Bearer {key}"}) as floor_http,
                ):

                    async def through_api() -> None:
                        status, answer = await api_http.post("/graphql", body)
                        assert status == 200 and b'"errors"' not in answer, answer[:500]

                    async def through_general() -> None:
                        status, answer = await api_http.post("/graphql", unregistered)
                        assert status == 200 and b'"errors"' not in answer, answer[:500]

                    async def through_floor() -> None:
                        status, answer = await floor_http.get(f"/dashboard?first={PAGE}")
                        assert status == 200, answer[:500]

                    await load_for(1.0, CLIENTS, through_api)  # warm-up
                    await load_for(1.0, CLIENTS, through_general)
                    await load_for(1.0, CLIENTS, through_floor)
                    for _ in range(ROUNDS):  # alternating turns: every side sees the same machine
                        await turn(ours, through_api, name, admin)
                        await turn(general, through_general, name, admin)
                        await turn(floor, through_floor, name, admin)
        finally:
            await admin.close()
    for executor in ("compiled", "general"):
        for first in (10, PAGE, 100):
            c = counts[executor][first]
            tables = ", ".join(
                f"{k[6:]} {n}" for k, n in sorted(c.items(), key=lambda kv: -kv[1]) if k.startswith("table:")
            )
            print(
                f"P1 detail: {executor}, page of {first}: {c['statement']} statements ({tables}),"
                f" plus {c['transaction']} transaction control and {c['reset']} connection resets",
                flush=True,
            )
    for line in breakdown:
        print(line, flush=True)
    for side in (ours, general, floor):
        print(side.line(), flush=True)
    for side, executor in ((ours, "compiled"), (general, "general")):
        ratio = side.rate / floor.rate if floor.rate else 0.0
        c = counts[executor]
        print(
            f"BENCH P1 {side.rate:.1f} req/s floor={floor.rate:.1f} ratio={ratio:.3f} executor={executor}"
            f" statements@10={c[10]['statement']} statements@100={c[100]['statement']}",
            flush=True,
        )


if __name__ == "__main__":
    exit_on_sigterm()
    run_on_uvloop(main)
