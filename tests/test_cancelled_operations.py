"""Operations stopped half-way give their database connection back.

A websocket client that goes away used to cost the server a pooled connection, left in the middle of
a transaction: a query's read transaction was cancelled during its BEGIN, or while a DataLoader's
batch still had a statement on it. Once the pool was empty the server answered nothing more, not even
``{ __typename }``, and the connection held its locks until the process ended."""

from __future__ import annotations

import asyncio
import json
import random
import uuid

import httpx
import pytest
import websockets

from billing.core import sql
from tests.conftest import Server
from tests.graphql import GraphQLClient
from tests.test_realtime import GRANT, a_tenant

pytestmark = pytest.mark.usefixtures("database")

POOL_SIZE = 20  # the test database's maxsize (tests/conftest.py)
WORKSPACE = """query($ws: ID!) { node(id: $ws) { ... on Workspace {
  id name status limits { name value } wallets { unit balance { amount } } subscription { status } } } }"""
WALLET = "query($w: ID!) { node(id: $w) { ... on Wallet { balance { amount } } } }"


@pytest.fixture
def postgres(database):
    if not database.is_postgres:
        pytest.skip("SQLite has one connection and no read transaction per query")
    return database


async def stuck_in_a_transaction() -> list[dict[str, object]]:
    """Other connections to the test database inside a transaction a second after all was stopped."""
    await asyncio.sleep(1)
    return await sql.fetch(
        "SELECT pid, state, wait_event, query FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND xact_start IS NOT NULL AND now() - xact_start > interval '1 second'"
    )


async def the_whole_pool_at_once() -> None:
    """Every connection of the pool taken at the same time: one leaked, and this waits for ever."""
    started = asyncio.Event()
    taken = 0

    async def hold() -> None:
        nonlocal taken
        async with sql.read_transaction():
            await sql.fetch("SELECT 1")
            taken += 1
            if taken == POOL_SIZE:
                started.set()
            await started.wait()

    await asyncio.wait_for(asyncio.gather(*(hold() for _ in range(POOL_SIZE))), 10)


async def test_a_read_transaction_cancelled_anywhere_gives_its_connection_back(postgres) -> None:
    chance = random.Random(7)

    async def reads() -> None:
        async with sql.read_transaction():
            # Like a DataLoader's batch: a task of its own on the transaction's connection, which a
            # cancelled operation does not wait for.
            batch = asyncio.ensure_future(sql.fetch("SELECT pg_sleep(0.003)"))
            await sql.fetch("SELECT pg_sleep(0.002)")
            await batch

    for _ in range(3 * POOL_SIZE):
        task = asyncio.create_task(reads())
        await asyncio.sleep(chance.random() * 0.006)  # during BEGIN, a statement, the commit, or after
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await the_whole_pool_at_once()
    assert await stuck_in_a_transaction() == []


async def test_websocket_clients_that_leave_mid_operation_cost_the_server_nothing(server: Server, postgres) -> None:
    key, workspace, _ = await a_tenant(server, "leaves early")
    url = server.url.replace("http://", "ws://", 1) + "/graphql"
    chance = random.Random(11)
    for _ in range(4 * POOL_SIZE):
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"], open_timeout=10) as socket:
            await socket.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}))
            assert json.loads(await socket.recv())["type"] == "connection_ack"
            for n in range(5):
                query = {"query": WORKSPACE, "variables": {"ws": workspace}}
                await socket.send(json.dumps({"type": "subscribe", "id": str(n), "payload": query}))
            if chance.random() < 0.5:
                await socket.send(json.dumps({"type": "complete", "id": "0"}))
            await asyncio.sleep(chance.random() * 0.01)
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(f"{server.url}/graphql", json={"query": "{ __typename }"})
    assert answer.json() == {"data": {"__typename": "Query"}}
    assert await stuck_in_a_transaction() == []


async def test_a_mutation_whose_client_leaves_at_once_is_carried_out_once(server: Server) -> None:
    """Not stopped half-way: the grant is made, once, though nobody hears the answer."""
    key, workspace, wallet = await a_tenant(server, "grants and leaves")
    url = server.url.replace("http://", "ws://", 1) + "/graphql"
    grant = {"query": GRANT, "variables": {"ws": workspace, "amount": "5", "key": str(uuid.uuid4())}}
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        await socket.send(json.dumps({"type": "subscribe", "id": "grant", "payload": grant}))
        await socket.send(json.dumps({"type": "complete", "id": "grant"}))
    balance = None
    for _ in range(50):
        balance = (await GraphQLClient(server.url, key).data(WALLET, {"w": wallet}))["node"]["balance"]["amount"]
        if balance != "10":
            break
        await asyncio.sleep(0.1)
    assert balance == "15"
    await asyncio.sleep(0.5)  # nothing more comes of it
    assert (await GraphQLClient(server.url, key).data(WALLET, {"w": wallet}))["node"]["balance"]["amount"] == "15"
