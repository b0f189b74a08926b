"""Business metrics, read from /metrics as Prometheus scrapes them, after real flows on real processes.

A partner records a manual purchase and its payment is counted CREATED then SUCCEEDED for the manual
gateway, with one PURCHASE posting; the product reports usage events and each result is counted with its
reason; a worker delivers one partner webhook and dead-letters another, and its own /metrics says so, with
how long each item waited. Nothing is counted before it commits: a posting rolled back, whole or in a
savepoint, is never counted. The worker's /healthz answers 200 while its loop goes round and 503 once it
is stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tortoise.transactions import in_transaction

from billing.accounts import ledger, opening
from billing.core import clock, observe
from billing.tenants import api_keys
from models.enums import ExternalAccount, LedgerCause
from models.operations import OutboxEvent
from models.wallets import Wallet
from schema.ids import to_global_id
from tests.conftest import Backend, serving
from tests.factories import a_partner, a_workspace
from tests.graphql import GraphQLClient
from tests.processes import stop
from tests.test_crash import usage_setup
from tests.test_partner_webhooks import an_endpoint, receiving
from whitebill import metrics
from whitebill.settings import load_settings
from whitebill.worker import Worker

pytestmark = pytest.mark.usefixtures("database")


def value(exposition: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 when there are none)."""
    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


PURCHASE = """mutation($w: ID!) { recordManualPurchase(input: {workspaceId: $w, unit: "MESSAGE_CREDITS",
quantity: "100", priceAmount: "5.00", priceCurrency: "USD", idempotencyKey: "buy-1"}) {
payment { status } errors { code } } }"""


async def test_a_manual_purchase_and_usage_events_are_counted_by_the_server(database: Backend, tmp_path: Path) -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    token = (await api_keys.create_key(partner_id=partner.id)).secret
    product, [project] = await usage_setup(partner.id, [workspace.id])  # done here: the server counts none of it
    when = clock.now().isoformat()

    def event(event_id: str, **more: object) -> dict[str, object]:
        return {
            "projectId": to_global_id("Project", project),
            "eventId": event_id,
            "category": "MARKETING",
            "occurredAt": when,
            "country": "BR",
            **more,
        }

    first = {
        "events": [
            event("e1"),
            event("e2"),
            event("e3", window="FREE_ENTRY"),
            event("e4", count=0),
            event("e5", projectId=to_global_id("Project", project + 1000)),
        ]
    }
    with serving(database, tmp_path / "server.log") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            before = (await http.get("/metrics")).text
            assert value(before, "whitebill_payment_transitions_total") == 0
            bought = await GraphQLClient(server.url, token).data(
                PURCHASE, {"w": to_global_id("Workspace", workspace.id)}
            )
            assert bought["recordManualPurchase"] == {"payment": {"status": "SUCCEEDED"}, "errors": []}
            headers = {"authorization": f"Bearer {product}"}
            answered = (await http.post("/usage", json=first, headers=headers)).json()["results"]
            assert [r["status"] for r in answered] == ["CHARGED", "CHARGED", "FREE", "REFUSED", "REFUSED"]
            again = (await http.post("/usage", json={"events": [event("e1")]}, headers=headers)).json()["results"]
            assert [r["status"] for r in again] == ["DUPLICATE"]
            after = (await http.get("/metrics")).text

    payments = "whitebill_payment_transitions_total"
    assert value(after, payments, provider="manual", status="CREATED") == 1
    assert value(after, payments, provider="manual", status="SUCCEEDED") == 1
    assert value(after, payments) == 2  # nothing else moved
    assert value(after, "whitebill_ledger_postings_total", cause="PURCHASE") == 1
    assert value(after, "whitebill_ledger_postings_total", cause="USAGE") >= 1
    assert value(after, "whitebill_ledger_postings_total", cause="GRANT") == 0  # the test's own, not the server's
    usage = "whitebill_usage_events_total"
    assert value(after, usage, result="CHARGED", reason="none") == 2
    assert value(after, usage, result="FREE", reason="none") == 1
    assert value(after, usage, result="DUPLICATE", reason="none") == 1
    assert value(after, usage, result="REFUSED", reason="INVALID_EVENT") == 1
    assert value(after, usage, result="REFUSED", reason="PROJECT_NOT_FOUND") == 1
    assert value(after, usage) == 6
    for family in text_string_to_metric_families(after):  # bounded labels: never an id
        for sample in family.samples:
            assert not any(str(partner.id) == v or str(project) == v for v in sample.labels.values()), sample


async def test_a_posting_is_counted_once_it_commits_and_never_when_it_rolls_back(database: Backend) -> None:
    metrics.install()
    partner = await a_partner()
    wallet = await opening.workspace_wallet(await a_workspace(partner), "POINTS")
    grant = [ledger.Leg(5, "POINTS", ExternalAccount.ISSUANCE, wallet.id)]

    def grants() -> float:
        return value(metrics.render(None).decode(), "whitebill_ledger_postings_total", cause="GRANT")

    start = grants()
    with pytest.raises(RuntimeError):
        async with in_transaction("default"):
            await ledger.post(grant, cause=LedgerCause.GRANT)
            assert grants() == start  # held while its transaction is open
            raise RuntimeError("undone")
    assert grants() == start
    assert (await Wallet.get(id=wallet.id)).balance == 0  # it really was undone

    async with in_transaction("default"):
        await ledger.post(grant, cause=LedgerCause.GRANT)
        assert grants() == start
    assert grants() == start + 1

    async with in_transaction("default"):  # a savepoint undone while its transaction goes on and commits
        with contextlib.suppress(RuntimeError):
            async with observe.savepoint():
                await ledger.post(grant, cause=LedgerCause.GRANT)
                raise RuntimeError("undone alone")
        await ledger.post(grant, cause=LedgerCause.GRANT)
    assert grants() == start + 2
    assert (await Wallet.get(id=wallet.id)).balance == 10

    await ledger.post(grant, cause=LedgerCause.GRANT)  # no transaction around it: counted at once
    assert grants() == start + 3


def start_worker(backend: Backend, **env: str) -> tuple[subprocess.Popen[str], str]:
    """``whitebill worker`` with its health endpoint on a free port; the address it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "whitebill.cli", "worker", "--name", "observed", "--poll", "0.05"],
        env=dict(
            os.environ,
            DATABASE_URL=backend.url,
            WHITEBILL_ENV="test",
            WHITEBILL_TEST_CLOCK="1",
            LOG_LEVEL="WARNING",
            WHITEBILL_WORKER_HEALTH_PORT="0",
            **getattr(backend, "pgbouncer_env", {}),  # through pgbouncer when the run says so
            **env,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("whitebill worker health on http://127.0.0.1:"), line
    return process, line.split(" on ", 1)[1].strip().removesuffix("/healthz")


@contextlib.contextmanager
def stopping(process: subprocess.Popen[str]) -> Iterator[None]:
    try:
        yield
    finally:
        stop(process)


async def until(check, *, within: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while True:
        got = await check()
        if got or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.1)


async def test_a_worker_serves_its_health_and_counts_deliveries_dead_letters_and_waits(database: Backend) -> None:
    with receiving() as (receiver, url):
        delivered_partner, _, _ = await an_endpoint(url + "/ok")
        dead_partner, _, _ = await an_endpoint(url + "/flaky", max_attempts=1)  # its first failure is its last
        for partner in (delivered_partner, dead_partner):
            await OutboxEvent.create(
                partner_id=partner.id, event_type="wallet.low_balance", payload={}, run_at=clock.now()
            )
        worker, base = start_worker(database)
        with stopping(worker):
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:

                async def counted() -> str | None:
                    """The metrics once both attempts are counted and the pass that made them has ended (the
                    deliveries may be sent in the same pass that fanned the events out: its end comes after)."""
                    text = (await http.get("/metrics")).text
                    done = value(text, "whitebill_webhook_attempts_total", result="delivered") == 1
                    done = done and value(text, "whitebill_webhook_attempts_total", result="dead") == 1
                    return text if done and value(text, "whitebill_worker_items_total") >= 4 else None

                exposition = await counted() or await until(counted)
                assert exposition, (await http.get("/metrics")).text
                health = await http.get("/healthz")
        assert len(receiver.ids()) == 1  # the dead one was never taken by its receiver
    assert value(exposition, "whitebill_webhook_attempts_total", result="failed") == 0
    # Each outbox event and each delivery was taken once, and how long it waited was observed.
    assert value(exposition, "whitebill_worker_lag_seconds_count", kind="outbox_event") == 2
    assert value(exposition, "whitebill_worker_lag_seconds_count", kind="webhook_delivery") == 2
    assert value(exposition, "whitebill_worker_lag_seconds_bucket", kind="webhook_delivery", le="+Inf") == 2
    assert value(exposition, "whitebill_worker_ticks_total") >= 1
    assert value(exposition, "whitebill_worker_items_total") >= 4
    assert health.status_code == 200 and health.headers["content-type"] == "application/json"
    body = health.json()
    assert body["status"] == "ok" and body["ticks"] >= 1 and body["items_handled"] >= 4
    assert 0 <= body["last_tick_age_seconds"] < 120 and body["stall_after_seconds"] == 120


async def test_a_failed_attempt_is_counted_apart_from_the_last_one_which_is_dead(database: Backend) -> None:
    def attempts() -> dict[str, float]:
        text = metrics.render(None).decode()
        return {r: value(text, "whitebill_webhook_attempts_total", result=r) for r in ("delivered", "failed", "dead")}

    with receiving() as (receiver, url):
        partner, _, _ = await an_endpoint(url + "/flaky", max_attempts=2)  # the receiver fails each event twice
        await OutboxEvent.create(partner_id=partner.id, event_type="wallet.low_balance", payload={}, run_at=clock.now())
        worker = Worker(load_settings())  # counts in this process
        start = attempts()
        while await worker.tick():
            pass
        assert attempts() == {**start, "failed": start["failed"] + 1}
        await clock.advance(timedelta(seconds=30))  # its back-off: the second attempt is its last
        while await worker.tick():
            pass
        assert attempts() == {**start, "failed": start["failed"] + 1, "dead": start["dead"] + 1}
        assert receiver.ids() == []


@contextlib.asynccontextmanager
async def database_held(backend: Backend):  # type: ignore[no-untyped-def]
    """Another client holds what the worker needs, so that no pass of its loop can finish."""
    if backend.is_postgres:
        conn = await asyncpg.connect(backend.url.split("?")[0].replace("postgres://", "postgresql://", 1))
        try:
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute("LOCK TABLE outbox_event IN ACCESS EXCLUSIVE MODE")
            yield
            await transaction.rollback()
        finally:
            await conn.close()
        return
    path = backend.url.removeprefix("sqlite://").split("?")[0]
    held = sqlite3.connect(path, isolation_level=None)
    try:
        held.execute("BEGIN EXCLUSIVE")
        yield
        held.execute("ROLLBACK")
    finally:
        held.close()


async def test_a_stuck_worker_answers_503_and_200_again_once_it_goes_round(database: Backend) -> None:
    if getattr(database, "listen_url", None) is not None:
        pytest.skip("the lock is taken straight on PostgreSQL; the worker's health is the same through pgbouncer")
    worker, base = start_worker(database, WHITEBILL_WORKER_STALL_SECONDS="2")
    with stopping(worker):
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:

            def status(code: int):  # type: ignore[no-untyped-def]
                async def check() -> httpx.Response | None:
                    answer = await http.get("/healthz")
                    return answer if answer.status_code == code and answer.json()["ticks"] else None

                return check

            going = await until(status(200), within=30)  # a pass done: it was not merely starting
            assert going is not None and going.json()["status"] == "ok"
            async with database_held(database):
                stalled = await until(status(503), within=30)
                assert stalled is not None, (await http.get("/healthz")).text
                body = stalled.json()
                assert body["status"] == "stalled" and body["last_tick_age_seconds"] > 2
                assert (await http.get("/metrics")).status_code == 200  # still answering while stuck
            recovered = await until(status(200), within=30)
            assert recovered is not None and recovered.json()["status"] == "ok"


def test_a_worker_health_port_that_is_taken_is_one_line_and_exit_2(backend: Backend) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "whitebill.cli", "worker"],
            env=dict(
                os.environ, DATABASE_URL=backend.url, WHITEBILL_ENV="test", WHITEBILL_WORKER_HEALTH_PORT=str(port)
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stderr
    assert (
        done.stderr.strip().count("\n") == 0 and f"127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr
    )
    bad = subprocess.run(
        [sys.executable, "-m", "whitebill.cli", "worker"],
        env=dict(os.environ, DATABASE_URL=backend.url, WHITEBILL_ENV="test", WHITEBILL_WORKER_HEALTH_PORT="http"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "WHITEBILL_WORKER_HEALTH_PORT" in bad.stderr and "Traceback" not in bad.stderr


def test_the_health_body_is_json_of_the_last_pass() -> None:
    from whitebill.worker import Health

    health = Health(stall_seconds=60)
    healthy, body = health.report()
    assert healthy and body["status"] == "ok" and body["last_tick_age_seconds"] is None and body["ticks"] == 0
    health.ticked(3)
    health.ticked(0)
    healthy, body = health.report()
    assert healthy and body["ticks"] == 2 and body["items_handled"] == 3
    health.last_tick = time.monotonic() - 61
    healthy, body = health.report()
    assert not healthy and body["status"] == "stalled" and json.dumps(body)
