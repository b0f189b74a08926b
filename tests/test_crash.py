"""Crash safety on PostgreSQL: the server and a worker are killed with SIGKILL in the middle of
purchase and debit load, restarted, and every client retries with its idempotency key. Afterwards
every invariant holds: balances equal their entries, no payment is paid but unfulfilled or fulfilled
twice, no key moved money twice, and no outbox event is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import timedelta

import httpx
import pytest

from billing import api_keys, audit, clock, sql
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


async def test_kill_minus_nine_mid_load_loses_and_doubles_nothing(database: Backend) -> None:
    if not database.is_postgres:
        pytest.skip("crash safety is measured on PostgreSQL, where server and workers are separate processes")
    partner = await a_partner()
    workspaces = [await a_workspace(partner, name=f"Client {i}") for i in range(4)]
    token = (await api_keys.create_key(partner_id=partner.id)).secret
    for i in range(300):  # outbox events for the worker to deliver while it is killed
        await audit.emit("crash.test", partner.id, {"n": i})

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
    completed = await sql.fetch("SELECT key, result FROM idempotency_record WHERE status = 'COMPLETED'")
    assert len(completed) == 240 - refused
    postings = await sql.fetch("SELECT cause, count(*) AS n FROM posting GROUP BY cause")
    counts = {row["cause"]: row["n"] for row in postings}
    assert counts.get("GRANT", 0) == 80 and counts.get("PURCHASE", 0) == 80
    assert counts.get("ADJUSTMENT", 0) == 80 - refused  # a debit refused for lack of balance moves nothing
    payments = await sql.fetch("SELECT status, fulfilled_at FROM payment")
    assert len(payments) == 80 and all(p["status"] == "SUCCEEDED" and p["fulfilled_at"] for p in payments)
    per_payment = await sql.fetch(
        "SELECT caused_by_id, count(*) AS n FROM posting WHERE cause = 'PURCHASE'"
        " GROUP BY caused_by_id HAVING count(*) > 1"
    )
    assert per_payment == []
