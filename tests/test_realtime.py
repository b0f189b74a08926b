"""GraphQL subscriptions over graphql-transport-ws, with the `gql` client against real uvicorn
processes: on PostgreSQL a grant sent to a second server process reaches a subscriber of the first
(LISTEN/NOTIFY); on SQLite (one process by design) the same through one process. Another tenant's
subscriber hears nothing, and cannot subscribe to what is not its own."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from billing.core import realtime, sql
from billing.tenants import api_keys
from schema.ids import to_global_id
from tests.conftest import Backend, Server, serving
from tests.factories import PLATFORM, a_partner, a_workspace
from tests.graphql import GraphQLClient
from tests.shop import CREATE_PLAN

pytestmark = pytest.mark.usefixtures("database")

BALANCE = "subscription($w: ID!) { walletBalanceChanged(walletId: $w) { id unit balance { amount unit } } }"
STATUS = """subscription($ws: ID!) { workspaceStatusChanged(workspaceId: $ws) {
  id status statusReasons { kind } subscription { plan { name } } } }"""
GRANT = """mutation($ws: ID!, $amount: String!, $key: String!) {
  grantUnits(input: {workspaceId: $ws, unit: "POINTS", amount: $amount, idempotencyKey: $key}) {
    wallet { id balance { amount } } errors { code } } }"""
ASSIGN = """mutation($ws: ID!, $plan: ID!) {
  assignPlan(input: {workspaceId: $ws, planId: $plan, idempotencyKey: "assign"}) {
    subscription { id } errors { code } } }"""
WAIT = 10.0  # for an event that must come (generous: a loaded machine is slow, not wrong)
QUIET = 1.0  # how long an event that must not come is waited for, after the expected one arrived


@pytest.fixture(scope="session")
def second_server(backend: Backend, server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Another server process on the same database (PostgreSQL: that is how whitebill scales out)."""
    with serving(backend, tmp_path_factory.mktemp("server2") / f"{backend.name}.log") as started:
        yield started


@pytest.fixture
def other_process(database: Backend, server: Server, request: pytest.FixtureRequest) -> Server:
    """Where changes are made: a second server process on PostgreSQL; on SQLite, which is one
    process by design, the subscribers' own."""
    return request.getfixturevalue("second_server") if database.is_postgres else server


class Live:
    """What a subscription receives, gathered in the background: data, or a TransportQueryError."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[dict[str, Any] | Exception] = asyncio.Queue()

    async def next(self) -> dict[str, Any]:
        got = await asyncio.wait_for(self.received.get(), WAIT)
        if isinstance(got, Exception):
            raise got
        return got

    async def error(self) -> dict[str, Any]:
        got = await asyncio.wait_for(self.received.get(), WAIT)
        assert isinstance(got, TransportQueryError), f"expected an error answer, got {got!r}"
        assert got.errors, got
        return got.errors[0]

    async def closed(self) -> Exception:
        """The server closed the socket (the client's error, with the close frame as its cause)."""
        got = await asyncio.wait_for(self.received.get(), WAIT)
        assert isinstance(got, Exception) and not isinstance(got, TransportQueryError), got
        return got

    async def nothing(self) -> None:
        with contextlib.suppress(TimeoutError):
            got = await asyncio.wait_for(self.received.get(), QUIET)
            raise AssertionError(f"received what it must not: {got}")


@contextlib.asynccontextmanager
async def live(
    server: Server, query: str, variables: dict[str, Any], *, token: str, in_headers: bool = False
) -> AsyncIterator[Live]:
    """Subscribe with the credentials in the connection_init payload (as browsers must), or in the
    upgrade request's headers."""
    credentials = {"Authorization": f"Bearer {token}"}
    transport = WebsocketsTransport(
        url=server.url.replace("http://", "ws://", 1) + "/graphql",
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        headers=credentials if in_headers else None,
        init_payload=None if in_headers else credentials,
    )
    gathered = Live()
    async with Client(transport=transport) as session:

        async def gather() -> None:
            try:
                async for data in session.subscribe(GraphQLRequest(query, variable_values=variables)):
                    await gathered.received.put(data)
            except Exception as error:  # an error answer, or the server closing the socket
                await gathered.received.put(error)

        task = asyncio.create_task(gather())
        try:
            yield gathered
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def a_tenant(server: Server, name: str) -> tuple[str, str, str]:
    """A partner's API key, one of its workspaces and that workspace's POINTS wallet (10 points)."""
    partner = await a_partner(name)
    workspace = to_global_id("Workspace", (await a_workspace(partner)).id)
    key = (await api_keys.create_key(partner_id=partner.id)).secret
    return key, workspace, await grant(server, key, workspace, "10")


async def grant(server: Server, key: str, workspace: str, amount: str) -> str:
    """Points granted by hand through the API; returns the wallet's id."""
    variables = {"ws": workspace, "amount": amount, "key": str(uuid.uuid4())}
    made = await GraphQLClient(server.url, key).data(GRANT, variables)
    assert made["grantUnits"]["errors"] == [], made
    return made["grantUnits"]["wallet"]["id"]


def balance(message: dict[str, Any]) -> str:
    return message["walletBalanceChanged"]["balance"]["amount"]


async def test_a_grant_made_through_another_process_reaches_the_subscriber_and_no_other_tenant(
    server: Server, other_process: Server
) -> None:
    a_key, a_workspace_id, a_wallet = await a_tenant(server, "Agency A")
    b_key, _, b_wallet = await a_tenant(server, "Agency B")
    async with (
        live(server, BALANCE, {"w": a_wallet}, token=a_key) as a_sees,
        live(server, BALANCE, {"w": b_wallet}, token=b_key, in_headers=True) as b_sees,
    ):
        assert balance(await a_sees.next()) == "10"  # the current balance first: subscribed
        assert balance(await b_sees.next()) == "10"
        await grant(other_process, a_key, a_workspace_id, "500")
        changed = (await a_sees.next())["walletBalanceChanged"]
        assert changed == {"id": a_wallet, "unit": "POINTS", "balance": {"amount": "510", "unit": "POINTS"}}
        await grant(other_process, a_key, a_workspace_id, "1")
        assert balance(await a_sees.next()) == "511"
        await b_sees.nothing()  # B's subscriber heard nothing of A's grants


async def test_another_tenants_wallet_or_workspace_is_not_found_and_a_bad_token_unauthenticated(
    server: Server,
) -> None:
    _, a_workspace_id, a_wallet = await a_tenant(server, "Agency A")
    b_key, _, _ = await a_tenant(server, "Agency B")
    async with live(server, BALANCE, {"w": a_wallet}, token=b_key) as b_sees:
        error = await b_sees.error()
        assert error["extensions"]["code"] == "NOT_FOUND" and error["path"] == ["walletBalanceChanged"]
    async with live(server, STATUS, {"ws": a_workspace_id}, token=b_key) as b_sees:
        assert (await b_sees.error())["extensions"]["code"] == "NOT_FOUND"
    async with live(server, BALANCE, {"w": a_wallet}, token="wb_nope_nope") as nobody:
        assert (await nobody.error())["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_workspace_status_change_reaches_its_subscriber(server: Server, other_process: Server) -> None:
    key, workspace_id, _ = await a_tenant(server, "Agency")
    client = GraphQLClient(other_process.url, key)
    plan = (await client.data(CREATE_PLAN, {"name": "Basic", "amount": "49.90"}))["createPlan"]["plan"]["id"]
    async with live(server, STATUS, {"ws": workspace_id}, token=key) as sees:
        first = (await sees.next())["workspaceStatusChanged"]
        assert (first["status"], first["statusReasons"], first["subscription"]) == (
            "RESTRICTED",
            [{"kind": "NO_PLAN"}],
            None,
        )
        assigned = await client.data(ASSIGN, {"ws": workspace_id, "plan": plan})
        assert assigned["assignPlan"]["errors"] == [], assigned
        now = (await sees.next())["workspaceStatusChanged"]
        assert (now["status"], now["statusReasons"], now["subscription"]) == ("ACTIVE", [], {"plan": {"name": "Basic"}})


REVOKE = "mutation($id: ID!) { revokeApiKey(input: {keyId: $id}) { errors { code } } }"


async def test_a_revoked_key_ends_its_subscription_at_the_next_change(
    database: Backend, server: Server, other_process: Server
) -> None:
    """Revoked through the API (on PostgreSQL, through another server process, which tells every process
    to check credentials again), or in another process altogether (PostgreSQL: this test's own, heard
    through NOTIFY). The subscriber sharing the wallet's reads with the revoked one keeps receiving."""
    partner = await a_partner()
    workspace = to_global_id("Workspace", (await a_workspace(partner)).id)
    admin = (await api_keys.create_key(partner_id=partner.id)).secret
    wallet = await grant(server, admin, workspace, "10")
    ways = ["api", "elsewhere"] if database.is_postgres else ["api"]
    for way in ways:
        watcher = await api_keys.create_key(partner_id=partner.id, name="dashboard")
        async with (
            live(server, BALANCE, {"w": wallet}, token=watcher.secret) as sees,
            live(server, BALANCE, {"w": wallet}, token=admin) as stays,
        ):
            before = balance(await sees.next())
            assert balance(await stays.next()) == before
            if way == "api":
                revoked = await GraphQLClient(other_process.url, admin).data(
                    REVOKE, {"id": to_global_id("ApiKey", watcher.key.id)}
                )
                assert revoked["revokeApiKey"]["errors"] == []
            else:
                await api_keys.revoke_key(PLATFORM, watcher.key.id)
            await grant(server, admin, workspace, "5")
            assert (await sees.error())["extensions"]["code"] == "UNAUTHENTICATED"
            assert balance(await stays.next()) == str(int(before) + 5)


async def test_abuse_limits_hold_for_subscriptions(server: Server) -> None:
    key, _, wallet = await a_tenant(server, "Agency")
    deep = "subscription($w: ID!) { walletBalanceChanged(walletId: $w) { " + "id " * 2100 + "} }"
    async with live(server, deep, {"w": wallet}, token=key) as sees:
        closed = (await sees.closed()).__cause__  # a syntax error closes the socket (graphql-transport-ws)
        assert closed.rcvd.code == 4400 and "more than 2000 tokens" in closed.rcvd.reason
    aliased = (
        "subscription($w: ID!) { walletBalanceChanged(walletId: $w) { "
        + " ".join(f"a{i}: id" for i in range(40))
        + " } }"
    )
    async with live(server, aliased, {"w": wallet}, token=key) as sees:
        assert "alias" in (await sees.error())["message"].lower()


async def test_a_listener_that_lost_its_connection_listens_again_and_wakes_every_subscriber(
    database: Backend,
) -> None:
    if not database.is_postgres:
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; SQLite hands changes over in its one process")
    broker = realtime.Broker()
    listener = realtime.Listener(realtime.connect_like_the_pool(), into=broker, retry_seconds=0.05)
    await listener.start()
    try:
        with (
            broker.watch(realtime.WALLET, 42, partner_id=7) as watching,
            broker.watch(realtime.WALLET, 42, partner_id=8) as another_partner,
        ):
            await realtime.publish(realtime.Change(realtime.WALLET, 42, 7))
            await asyncio.wait_for(watching.changed(), WAIT)
            with pytest.raises(TimeoutError):  # the notification says it is partner 7's wallet
                await asyncio.wait_for(another_partner.changed(), QUIET)
            await sql.execute("SELECT pg_terminate_backend($1)", listener.backend_pid)
            # What was said while nobody listened is lost: everyone reads again once it listens again.
            await asyncio.wait_for(watching.changed(), WAIT)
            await asyncio.wait_for(another_partner.changed(), WAIT)
            await realtime.publish(realtime.Change(realtime.WALLET, 42, 7))
            await asyncio.wait_for(watching.changed(), WAIT)
    finally:
        await listener.stop()


async def test_subscribers_of_one_object_and_tenant_share_one_read_per_change() -> None:
    """1,000 subscribers woken by one change make one read for their tenant scope (and one per other
    scope), never a read started before the change they were woken by."""
    broker = realtime.Broker()
    key = (realtime.WALLET, 7)
    reads: list[str] = []
    state = {"balance": 10}

    def reader(scope: str):
        async def read() -> int:
            reads.append(scope)
            await asyncio.sleep(0.01)  # a round trip: the others ask meanwhile
            return state["balance"]

        return read

    with contextlib.ExitStack() as watching:
        watches = [watching.enter_context(broker.watch(*key, partner_id=3)) for _ in range(1000)]
        first = await asyncio.gather(*(broker.read(key, "partner:3", reader("partner:3")) for _ in watches))
        assert first == [10] * 1000 and reads == ["partner:3"]

        state["balance"] = 15  # committed, then heard
        broker.dispatch(realtime.Change(realtime.WALLET, 7, 3))
        await asyncio.gather(*(w.changed() for w in watches))
        after = await asyncio.gather(
            *(broker.read(key, "partner:3", reader("partner:3")) for _ in watches),
            broker.read(key, "workspace:9", reader("workspace:9")),
        )
        assert after == [15] * 1001 and reads == ["partner:3", "partner:3", "workspace:9"]

        # A read in flight when a change is heard is not reused by those the change woke.
        state["balance"] = 20
        broker.dispatch(realtime.Change(realtime.WALLET, 7, 3))
        racing = asyncio.ensure_future(broker.read(key, "partner:3", reader("partner:3")))
        await asyncio.sleep(0)
        state["balance"] = 25
        broker.dispatch(realtime.Change(realtime.WALLET, 7, 3))
        assert await broker.read(key, "partner:3", reader("partner:3")) == 25
        await racing
        assert reads.count("partner:3") == 4

        # A credential change wakes every subscriber (each checks its own) and reads nothing new.
        version = broker.credentials_version
        broker.dispatch(realtime.Change(realtime.CREDENTIALS, 0, None))
        assert broker.credentials_version == version + 1
        await asyncio.wait_for(asyncio.gather(*(w.changed() for w in watches)), 1)
        assert await broker.read(key, "partner:3", reader("partner:3")) == 25 and reads.count("partner:3") == 4
    assert broker.watching() == 0
    assert await broker.read(key, "partner:3", reader("partner:3")) == 25 and reads.count("partner:3") == 5


async def test_subscribers_are_woken_once_their_read_is_done_and_take_it_without_waiting() -> None:
    """A watch that says how it reads is woken only when the one read of its tenant scope has
    finished: what it then asks ``read`` for is there already (no second read, no wait)."""
    broker = realtime.Broker()
    key = (realtime.WALLET, 8)
    reads: list[str] = []
    release = asyncio.Event()
    state = {"balance": 1}

    def reader(scope: str):
        async def read() -> int:
            reads.append(scope)
            await release.wait()
            return state["balance"]

        return read

    with contextlib.ExitStack() as watching:
        watches = [
            watching.enter_context(broker.watch(*key, partner_id=3, scope="partner:3", read=reader("partner:3")))
            for _ in range(40)
        ]
        other = watching.enter_context(broker.watch(*key, partner_id=3, scope="workspace:9", read=reader("ws:9")))
        state["balance"] = 2
        broker.dispatch(realtime.Change(realtime.WALLET, 8, 3))
        for _ in range(5):
            await asyncio.sleep(0)
        assert sorted(reads) == ["partner:3", "ws:9"]  # one read per scope, started by the change itself
        assert not any(w._changed.is_set() for w in [*watches, other])  # nobody woken before it is done
        release.set()
        await asyncio.wait_for(asyncio.gather(*(w.changed() for w in [*watches, other])), 1)
        # Each takes the finished read at once: no suspension, no further read.
        for _ in watches:
            pending = asyncio.ensure_future(broker.read(key, "partner:3", reader("partner:3")))
            await asyncio.sleep(0)
            assert pending.done() and pending.result() == 2
        assert sorted(reads) == ["partner:3", "ws:9"]


async def test_a_thousand_subscribers_are_woken_a_batch_at_a_time() -> None:
    """Waking subscribers leaves the event loop free between batches (a request waiting to be
    answered gets its turn during a fan-out), and every subscriber is woken in the end."""
    watches = [realtime.Watch(None) for _ in range(1000)]
    realtime.wake(watches)
    assert sum(w._changed.is_set() for w in watches) == realtime.WAKE_BATCH
    turns = 0
    while not all(w._changed.is_set() for w in watches):
        await asyncio.sleep(0)
        turns += 1
        assert turns <= 1000 // realtime.WAKE_BATCH + 1
    assert turns >= 1000 // realtime.WAKE_BATCH - 1


async def test_websockets_are_compressed_with_small_windows_and_no_client_context(server: Server) -> None:
    """permessage-deflate is on, with the window sizes whitebill.websockets asks for and
    client_no_context_takeover; messages still arrive compressed and whole."""
    from websockets.asyncio.client import connect

    async with connect(
        server.url.replace("http://", "ws://", 1) + "/graphql", subprotocols=["graphql-transport-ws"]
    ) as socket:
        extensions = socket.response.headers["Sec-WebSocket-Extensions"]
        assert "permessage-deflate" in extensions
        assert "server_max_window_bits=9" in extensions and "client_max_window_bits=9" in extensions
        assert "client_no_context_takeover" in extensions
        await socket.send('{"type": "connection_init"}')
        assert await asyncio.wait_for(socket.recv(), WAIT) == '{"type":"connection_ack"}'
        await socket.send('{"type": "ping"}')
        assert await asyncio.wait_for(socket.recv(), WAIT) == '{"type":"pong"}'


async def test_a_wave_of_closed_websockets_is_collected_once_soon_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """What closed connections leave in reference cycles is freed by one full collection a little
    after every COLLECT_AFTER_CLOSED of them, not left for the collector's rare full pass."""
    from whitebill import websockets as ws

    collections: list[int] = []
    monkeypatch.setattr(ws, "COLLECT_AFTER_CLOSED", 3)
    monkeypatch.setattr(ws, "COLLECT_DELAY_SECONDS", 0.01)
    monkeypatch.setattr(ws.gc, "collect", lambda *args: collections.append(1) or 0)
    closed = ws._ClosedConnections()
    loop = asyncio.get_running_loop()
    for _ in range(5):  # the third schedules one collection; the fourth and fifth do not add another
        closed.count(loop)
    assert collections == []
    await asyncio.sleep(0.05)
    assert collections == [1] and closed.closed == 0
    for _ in range(3):
        closed.count(loop)
    await asyncio.sleep(0.05)
    assert collections == [1, 1]


PAYMENT = "subscription($p: ID!) { paymentChanged(paymentId: $p) { id status } }"


async def test_a_payment_paid_by_hand_reaches_its_subscriber_and_no_other_tenant(
    server: Server, other_process: Server
) -> None:
    """paymentChanged: PENDING first, then SUCCEEDED when the payment is recorded (through another process
    on PostgreSQL); another partner's key gets NOT_FOUND, another payment's subscriber hears nothing."""
    from tests.shop import CONFIGURE, CREATE_PACKAGE, buy

    partner = await a_partner("Agency A")
    key = (await api_keys.create_key(partner_id=partner.id)).secret
    api = GraphQLClient(server.url, key)
    assert (await api.data(CONFIGURE, {"provider": "manual", "methods": ["MANUAL"]}))["configureGateway"][
        "errors"
    ] == []
    package = (await api.data(CREATE_PACKAGE))["createCreditPackage"]["creditPackage"]["id"]
    shop = {"client": api, "ws": to_global_id("Workspace", (await a_workspace(partner)).id)}
    first = (await buy(shop, {"creditPackageId": package}, method="MANUAL"))["payment"]
    second = (await buy(shop, {"creditPackageId": package}, method="MANUAL"))["payment"]
    b_key = (await api_keys.create_key(partner_id=(await a_partner("Agency B")).id)).secret
    record = """mutation($p: ID!) { recordPayment(input: {paymentId: $p, note: "pix", idempotencyKey: "r"}) {
      errors { code } } }"""
    async with (
        live(server, PAYMENT, {"p": first["id"]}, token=key) as sees,
        live(server, PAYMENT, {"p": second["id"]}, token=key) as other_sees,
    ):
        assert (await sees.next())["paymentChanged"] == {"id": first["id"], "status": "PENDING"}
        assert (await other_sees.next())["paymentChanged"]["status"] == "PENDING"
        recorded = await GraphQLClient(other_process.url, key).data(record, {"p": first["id"]})
        assert recorded["recordPayment"]["errors"] == []
        assert (await sees.next())["paymentChanged"] == {"id": first["id"], "status": "SUCCEEDED"}
        await other_sees.nothing()
    async with live(server, PAYMENT, {"p": first["id"]}, token=b_key) as b_sees:
        error = await b_sees.error()
        assert error["extensions"]["code"] == "NOT_FOUND" and error["path"] == ["paymentChanged"]
