"""Crash safety on PostgreSQL: the server and a worker are killed with SIGKILL in the middle of
purchase, debit and usage load, restarted, and every client retries with its idempotency key (usage
senders resend the same batch). Afterwards every invariant holds: balances equal their entries, no
payment is paid but unfulfilled or fulfilled twice, no key moved money twice, no usage event is
charged twice or lost, and no outbox event is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import timedelta

import httpx
import pytest

from billing.accounts import wallets
from billing.catalog import rate_cards
from billing.core import audit, clock, sql
from billing.core.tenancy import Viewer
from billing.tenants import api_keys
from billing.usage import project_credit
from billing.usage.exact_amounts import FINE
from models.enums import PLATFORM_PERMISSIONS, MessageCategory, Permission
from models.tenancy import Project
from schema.ids import to_global_id
from tests.conftest import Backend, _free_port
from tests.factories import a_partner, a_workspace

pytestmark = pytest.mark.usefixtures("database")

GRANT = """mutation($id: ID!, $key: String!) { grantUnits(input: {workspaceId: $id, unit: "POINTS", amount: "3",
idempotencyKey: $key}) { errors { code } } }"""
DEBIT = """mutation($id: ID!, $key: String!) { debitUnits(input: {workspaceId: $id, unit: "POINTS", amount: "1",
idempotencyKey: $key}) { errors { code } } }"""
PURCHASE = """mutation($id: ID!, $key: String!) { recordManualPurchase(input: {workspaceId: $id,
unit: "MESSAGE_CREDITS", quantity: "100", priceAmount: "5.00", priceCurrency: "USD", idempotencyKey: $key}) {
errors { code } } }"""


def start(args: list[str], backend: Backend, port: int | None = None) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ, DATABASE_URL=backend.url, WHITEBILL_ENV="test", WHITEBILL_TEST_CLOCK="1", LOG_LEVEL="WARNING"
    )
    if port:
        env["PORT"] = str(port)
    return subprocess.Popen(
        [sys.executable, "-m", "whitebill.cli", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def wait_healthy(base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as http:
        for _ in range(300):
            try:
                if (await http.get("/healthz", timeout=1)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("server did not come up")


async def send_until_answered(base: str, token: str, query: str, variables: dict) -> bool:
    """A client that retries with the same idempotency key until it gets an answer; True when the
    answer was a refusal for lack of balance (which moves nothing and releases the key)."""
    async with httpx.AsyncClient(base_url=base, headers={"authorization": f"Bearer {token}"}) as http:
        for _ in range(600):
            try:
                response = await http.post("/graphql", json={"query": query, "variables": variables}, timeout=5)
            except httpx.HTTPError:
                await asyncio.sleep(0.05)
                continue
            body = response.json()
            payload = next(iter(body["data"].values()))
            codes = {e["code"] for e in payload["errors"]}
            if "IDEMPOTENCY_KEY_IN_PROGRESS" in codes:
                await asyncio.sleep(0.05)
                continue
            assert codes <= {"INSUFFICIENT_BALANCE"}, body
            return bool(codes)
    raise AssertionError("never answered")


USAGE_SENDERS, USAGE_BATCHES, USAGE_EVENTS = 4, 8, 200


async def send_usage_until_answered(base: str, token: str, batch: dict) -> list[str]:
    """A product's sender: the same batch again until it is answered; the statuses it got."""
    async with httpx.AsyncClient(base_url=base, headers={"authorization": f"Bearer {token}"}) as http:
        for _ in range(600):
            try:
                response = await http.post("/usage", json=batch, timeout=10)
            except httpx.HTTPError:
                await asyncio.sleep(0.05)
                continue
            assert response.status_code == 200, response.text
            return [
                r["status"] if r["status"] != "REFUSED" else f"REFUSED {r['reason']}"
                for r in response.json()["results"]
            ]
    raise AssertionError("never answered")


async def usage_setup(partner_id: int, workspace_ids: list[int]) -> tuple[str, list[int]]:
    """Rates, a project with plenty of credit per workspace, the product's key."""
    platform = Viewer(kind="PLATFORM", actor="test", permissions=PLATFORM_PERMISSIONS)
    await rate_cards.set_platform_rates(
        platform, currency="BRL", cells=[rate_cards.CellInput("*", MessageCategory.MARKETING, "0.0125")]
    )
    agency = Viewer(kind="PARTNER", actor="test", partner_id=partner_id, permissions=frozenset(Permission))
    projects = []
    for workspace_id in workspace_ids:
        project = await Project.get(workspace_id=workspace_id)
        await project_credit.assign(
            agency, project_id=project.id, amount=10**9, note="", idempotency_key=f"p{project.id}"
        )
        projects.append(project.id)
    await wallets.grant_partner_balance(
        platform, partner_id=partner_id, currency="BRL", amount=10**9, note="", idempotency_key="fund"
    )
    key = await api_keys.create_key(partner_id=None, name="product", permissions=frozenset({Permission.REPORT_USAGE}))
    return key.secret, projects


async def test_kill_minus_nine_mid_load_loses_and_doubles_nothing(database: Backend) -> None:
    if not database.is_postgres:
        pytest.skip("crash safety is measured on PostgreSQL, where server and workers are separate processes")
    partner = await a_partner()
    workspaces = [await a_workspace(partner, name=f"Client {i}") for i in range(4)]
    token = (await api_keys.create_key(partner_id=partner.id)).secret
    for i in range(300):  # outbox events for the worker to deliver while it is killed
        await audit.emit("crash.test", partner.id, {"n": i})
    product, projects = await usage_setup(partner.id, [w.id for w in workspaces])
    when = clock.now().isoformat()
    batches = [
        {
            "events": [
                {
                    "projectId": to_global_id("Project", projects[s]),
                    "eventId": f"s{s}-b{b}-e{e}",
                    "category": "MARKETING",
                    "occurredAt": when,
                    "recipient": f"+4420{b:03d}{e:05d}",
                    "count": 1 + e % 3,
                }
                for e in range(USAGE_EVENTS)
            ]
        }
        for s in range(USAGE_SENDERS)
        for b in range(USAGE_BATCHES)
    ]

    async def usage_sender(mine: list[dict]) -> list[str]:
        statuses = []
        for batch in mine:
            statuses += await send_usage_until_answered(base, product, batch)
        return statuses

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = start(["serve"], database, port)
    worker = start(["worker", "--poll", "0.05"], database)
    try:
        await wait_healthy(base)
        calls = []
        for i in range(240):
            workspace = to_global_id("Workspace", workspaces[i % 4].id)
            query = (GRANT, DEBIT, PURCHASE)[i % 3]
            calls.append(send_until_answered(base, token, query, {"id": workspace, "key": f"crash-{i}"}))
        per_sender = [batches[i * USAGE_BATCHES : (i + 1) * USAGE_BATCHES] for i in range(USAGE_SENDERS)]
        usage_load = asyncio.gather(*(usage_sender(mine) for mine in per_sender))
        load = asyncio.gather(*calls)
        await asyncio.sleep(1.0)
        assert not load.done(), "the load finished before the kill: nothing was tested"
        server.send_signal(signal.SIGKILL)
        worker.send_signal(signal.SIGKILL)
        server.wait()
        worker.wait()
        await asyncio.sleep(0.5)
        server = start(["serve"], database, port)
        # The killed worker's leases run out; the new worker takes its items again.
        await clock.advance(timedelta(minutes=2))
        worker = start(["worker", "--poll", "0.05"], database)
        refused = sum(await asyncio.wait_for(load, timeout=120))
        usage_statuses = [status for sender in await asyncio.wait_for(usage_load, timeout=120) for status in sender]
        for _ in range(200):
            left = await sql.fetch("SELECT count(*) AS n FROM outbox_event WHERE state <> 'DONE'")
            if left[0]["n"] == 0:
                break
            await asyncio.sleep(0.1)
    finally:
        for process in (server, worker):
            process.kill()
            process.wait()

    assert (await sql.fetch("SELECT count(*) AS n FROM outbox_event WHERE state <> 'DONE'"))[0]["n"] == 0
    mismatched = await sql.fetch(
        "SELECT w.id FROM wallet w LEFT JOIN ledger_entry e ON e.wallet_id = w.id"
        " GROUP BY w.id, w.balance HAVING w.balance <> COALESCE(SUM(e.amount), 0)"
    )
    assert mismatched == []
    # Each key moved money once: one posting per grant or debit key, one payment per purchase key.
    completed = await sql.fetch("SELECT key FROM idempotency_record WHERE status = 'COMPLETED' AND key LIKE 'crash-%'")
    assert len(completed) == 240 - refused
    postings = await sql.fetch("SELECT cause, count(*) AS n FROM posting GROUP BY cause")
    counts = {row["cause"]: row["n"] for row in postings}
    assert counts.get("GRANT", 0) == 80 + 1 and counts.get("PURCHASE", 0) == 80  # + the partner's balance
    # A debit refused for lack of balance moves nothing; each project's credit was one adjustment too.
    assert counts.get("ADJUSTMENT", 0) == 80 - refused + len(projects)
    payments = await sql.fetch("SELECT status, fulfilled_at FROM payment")
    assert len(payments) == 80 and all(p["status"] == "SUCCEEDED" and p["fulfilled_at"] for p in payments)
    per_payment = await sql.fetch(
        "SELECT caused_by_id, count(*) AS n FROM posting WHERE cause = 'PURCHASE'"
        " GROUP BY caused_by_id HAVING count(*) > 1"
    )
    assert per_payment == []

    # Usage: every event stored once, each charged once (a batch resent after the kill finds its
    # events as duplicates), every event traceable to a posting whose entries are its events' sums.
    assert set(usage_statuses) <= {"CHARGED", "DUPLICATE"}
    total = USAGE_SENDERS * USAGE_BATCHES * USAGE_EVENTS
    stored = await sql.fetch("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM usage_event")
    assert (stored[0]["n"], stored[0]["d"]) == (total, total)
    untraced = await sql.fetch("SELECT count(*) AS n FROM usage_event WHERE posting_id IS NULL")
    assert untraced[0]["n"] == 0
    # The usage entries and the wallets' usage remainders add up to the events' exact amounts, to the
    # fine unit, and no remainder reaches half a minor unit.
    [sums] = await sql.fetch(
        "SELECT (SELECT sum(charged_amount + platform_amount)::numeric * $1"
        " + sum(charged_fraction + platform_fraction) FROM usage_event) AS exact,"
        " (SELECT -sum(amount)::numeric * $1 FROM ledger_entry WHERE cause = 'USAGE') AS moved,"
        " (SELECT sum(usage_remainder) FROM wallet) AS remainders,"
        " (SELECT max(abs(usage_remainder)) FROM wallet) AS widest",
        FINE,
    )
    assert sums["exact"] == sums["moved"] + sums["remainders"]
    assert sums["widest"] <= FINE // 2
