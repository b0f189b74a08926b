"""Partner webhooks: signed, retried with back-off under the movable clock, delivered at least once
with a stable event id; four worker processes share 2,000 due events, each delivered exactly once
when nothing crashes, and nothing lost when a worker is killed mid-delivery."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from billing.core import clock, work
from billing.outbox import partner_webhooks, signing
from billing.tenants import api_keys
from models.enums import Permission, WorkState
from models.operations import OutboxEvent, WebhookDelivery, WebhookEndpoint
from schema.ids import to_global_id
from tests.factories import a_partner, partner_viewer
from tests.graphql import GraphQLClient
from whitebill.settings import load_settings
from whitebill.worker import Worker

pytestmark = pytest.mark.usefixtures("database")


class Receiver:
    """A partner's webhook receiver on 127.0.0.1: /ok answers 200, /flaky fails each event twice.
    Run in its own process (``python -m tests.test_partner_webhooks PORT LOG``) so that a busy test
    process never slows its answers; it appends what it receives to LOG, one JSON line each."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.failures: Counter[str] = Counter()

    async def ok(self, request: Request) -> Response:
        record = {
            "id": request.headers["whitebill-event-id"],
            "body": (await request.body()).decode(),
            "signature": request.headers["whitebill-signature"],
            "received_at": time.time(),  # a partner checks the timestamp when the request arrives
        }
        with self.log.open("a") as out:
            out.write(json.dumps(record) + "\n")
        if self.log.with_suffix(".slow").exists():  # received, but the answer takes a while
            await asyncio.sleep(0.5)
        return Response(status_code=200)

    async def flaky(self, request: Request) -> Response:
        event_id = request.headers["whitebill-event-id"]
        if self.failures[event_id] < 2:
            self.failures[event_id] += 1
            return Response(status_code=500)
        return await self.ok(request)

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/ok", self.ok, methods=["POST"]), Route("/flaky", self.flaky, methods=["POST"])]
        )


class Received:
    """What the receiver process got, read back from its log."""

    def __init__(self, log: Path) -> None:
        self.log = log

    @property
    def received(self) -> list[tuple[str, bytes, dict[str, str]]]:
        return [(event_id, body, headers) for event_id, body, headers, _ in self.arrivals]

    @property
    def arrivals(self) -> list[tuple[str, bytes, dict[str, str], float]]:
        """What was received, each with the (real) time it arrived."""
        if not self.log.exists():
            return []
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        return [(r["id"], r["body"].encode(), {"whitebill-signature": r["signature"]}, r["received_at"]) for r in lines]

    def ids(self) -> list[str]:
        return [event_id for event_id, _, _ in self.received]

    def answer_slowly(self) -> None:
        self.log.with_suffix(".slow").touch()


@contextlib.contextmanager
def receiving() -> Iterator[tuple[Received, str]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = Path(tempfile.mkdtemp()) / "received.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "tests.test_partner_webhooks", str(port), str(log)])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(500):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            time.sleep(0.02)
        yield Received(log), url
    finally:
        process.terminate()
        process.wait(timeout=10)


def verifies(secret: str, body: bytes, header: str, *, now: float | None = None) -> bool:
    """What the README ("Partner webhooks") tells a partner to do, to the letter: the header is
    ``t=<unix time>,v1=<hex>``, in that order; the HMAC-SHA256 of ``f"{t}." + raw body`` under the secret,
    compared in constant time; and ``t``, in seconds, within 300 s of now (``time.time()`` when the
    request arrives unless ``now`` says otherwise)."""
    try:
        t, v1 = (part.split("=", 1)[1] for part in header.split(","))
        timestamp = int(t)
    except ValueError:  # not two parts, a part without "=", or a t that is not an integer
        return False
    if header != f"t={t},v1={v1}":
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    current = time.time() if now is None else now
    return hmac.compare_digest(expected, v1) and abs(current - timestamp) < 300


def test_the_verifier_checks_the_timestamp_as_the_readme_says() -> None:
    """A signature is good only with the timestamp it was made with, in seconds, within 300 s of now."""
    secret, body, now = "whsec_test", b'{"id": "evt_1"}', int(time.time())
    header = signing.sign(secret, body, now)
    assert verifies(secret, body, header)
    assert not verifies("whsec_other", body, header)
    assert not verifies(secret, body + b" ", header)
    digest = header.split(",v1=", 1)[1]
    for t in (now + 1, now - 1, now * 1000):  # another t, even a fresh one, breaks the signature
        assert not verifies(secret, body, f"t={t},v1={digest}")
    assert not verifies(secret, body, f"v1={digest},t={now}")  # the README's order
    # Signed correctly but too old, or too far ahead: refused (299 s is still fine).
    assert verifies(secret, body, signing.sign(secret, body, now - 299), now=now)
    assert not verifies(secret, body, signing.sign(secret, body, now - 300), now=now)
    assert not verifies(secret, body, signing.sign(secret, body, now + 300), now=now)
    # A millisecond timestamp, properly signed, is ~1000 times now in seconds: every partner rejects it.
    assert not verifies(secret, body, signing.sign(secret, body, int(time.time() * 1000)))


def serve_receiver(port: int, log: Path) -> None:
    import uvicorn

    app = Receiver(log).app()
    app.add_route("/ready", lambda request: Response(status_code=200), methods=["GET"])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def an_endpoint(url: str, *, max_attempts: int = 8):
    partner = await a_partner()
    endpoint, secret = await partner_webhooks.create_endpoint(
        partner_viewer(partner), partner_id=partner.id, url=url, events=[], max_attempts=max_attempts
    )
    return partner, endpoint, secret


async def drain(worker: Worker) -> None:
    while await worker.tick():
        pass


async def test_a_receiver_that_fails_twice_gets_the_event_on_the_third_try() -> None:
    with receiving() as (receiver, url):
        partner, endpoint, secret = await an_endpoint(url + "/flaky")
        worker = Worker(load_settings())
        events = []
        for n in range(3):
            events.append(
                await OutboxEvent.create(
                    partner_id=partner.id, event_type="wallet.low_balance", payload={"n": n}, run_at=clock.now()
                )
            )
        await drain(worker)
        assert receiver.received == []
        first = await WebhookDelivery.filter(endpoint_id=endpoint.id)
        assert [(d.attempts, d.last_status) for d in first] == [(1, 500)] * 3
        await clock.advance(timedelta(seconds=30))  # the first back-off
        await drain(worker)
        assert receiver.received == []
        await clock.advance(timedelta(seconds=60))  # the second, twice as long
        await drain(worker)
        assert sorted(receiver.ids()) == sorted(f"evt_{e.id}" for e in events)
        for _, body, headers, received_at in receiver.arrivals:
            header = headers["whitebill-signature"]
            assert verifies(secret, body, header, now=received_at)
            t, v1 = (part.split("=", 1)[1] for part in header.split(","))
            assert not verifies(secret, body, f"t={int(t) + 1},v1={v1}", now=received_at)  # t is signed too
            assert json.loads(body)["type"] == "wallet.low_balance"
        deliveries = await WebhookDelivery.filter(endpoint_id=endpoint.id)
        assert all(d.state is WorkState.DONE and d.attempts == 3 for d in deliveries)


async def test_a_dead_delivery_can_be_resent_and_a_test_event_sent(server) -> None:
    with receiving() as (receiver, url):
        partner, endpoint, secret = await an_endpoint(url + "/flaky", max_attempts=1)
        client = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
        worker = Worker(load_settings())
        sent = await client.data(
            "mutation($e: ID!) { sendTestWebhook(input: {endpointId: $e}) { eventId errors { code } } }",
            {"e": to_global_id("WebhookEndpoint", endpoint.id)},
        )
        event_id = sent["sendTestWebhook"]["eventId"]
        await drain(worker)
        listed = await client.data(
            """query($p: ID!) { node(id: $p) { ... on Partner { webhookEndpoints { nodes { url secretHint
              deliveries { nodes { id eventId state attempts lastStatus } } } } } } }""",
            {"p": to_global_id("Partner", partner.id)},
        )
        endpoint_view = listed["node"]["webhookEndpoints"]["nodes"][0]
        assert secret not in json.dumps(listed) and endpoint_view["secretHint"].startswith("…")
        delivery = endpoint_view["deliveries"]["nodes"][0]
        assert delivery["eventId"] == event_id and delivery["state"] == "DEAD" and delivery["lastStatus"] == 500
        for _ in range(2):  # resent by hand: the receiver fails it once more, then takes it
            resent = await client.data(
                "mutation($d: ID!) { resendWebhookDelivery(input: {deliveryId: $d})"
                " { delivery { state } errors { code } } }",
                {"d": delivery["id"]},
            )
            assert resent["resendWebhookDelivery"]["delivery"]["state"] == "PENDING"
            await drain(worker)
        assert receiver.ids() == [event_id]
        assert json.loads(receiver.received[0][1])["type"] == "webhook.test"
        [(_, body, headers, received_at)] = receiver.arrivals
        assert verifies(secret, body, headers["whitebill-signature"], now=received_at)


async def test_endpoints_are_listed_a_page_at_a_time_to_those_who_manage_billing(server) -> None:
    """Three endpoints, two a page; a key without MANAGE_BILLING lists none; an id that is not the
    caller's is refused naming the input field that carried it."""
    partner = await a_partner()
    viewer = partner_viewer(partner)
    for path in ("/a", "/b", "/c"):
        await partner_webhooks.create_endpoint(
            viewer, partner_id=partner.id, url=f"https://hooks.agency.example{path}", events=[]
        )
    manager = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    page = """query($p: ID!, $after: String) { node(id: $p) { ... on Partner {
      webhookEndpoints(first: 2, after: $after) { nodes { url } pageInfo { hasNextPage endCursor } } } } }"""
    partner_id = to_global_id("Partner", partner.id)
    first = (await manager.data(page, {"p": partner_id}))["node"]["webhookEndpoints"]
    assert [n["url"] for n in first["nodes"]] == ["https://hooks.agency.example/a", "https://hooks.agency.example/b"]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = (await manager.data(page, {"p": partner_id, "after": first["pageInfo"]["endCursor"]}))["node"]
    assert [n["url"] for n in rest["webhookEndpoints"]["nodes"]] == ["https://hooks.agency.example/c"]
    assert rest["webhookEndpoints"]["pageInfo"]["hasNextPage"] is False

    reader_key = await api_keys.create_key(partner_id=partner.id, permissions=frozenset({Permission.READ_REPORTS}))
    reader = GraphQLClient(server.url, reader_key.secret)
    assert (await reader.data(page, {"p": partner_id}))["node"]["webhookEndpoints"]["nodes"] == []

    other = GraphQLClient(server.url, (await api_keys.create_key(partner_id=(await a_partner("Other")).id)).secret)
    endpoint = await WebhookEndpoint.filter(partner_id=partner.id).first()
    refused = await other.data(
        "mutation($e: ID!) { sendTestWebhook(input: {endpointId: $e}) { eventId errors { code field } } }",
        {"e": to_global_id("WebhookEndpoint", endpoint.id)},
    )
    assert refused["sendTestWebhook"] == {"eventId": None, "errors": [{"code": "NOT_FOUND", "field": "endpointId"}]}
    missing = await manager.data(
        "mutation($d: ID!) { resendWebhookDelivery(input: {deliveryId: $d})"
        " { delivery { id } errors { code field } } }",
        {"d": to_global_id("WebhookDelivery", 999_999)},
    )
    assert missing["resendWebhookDelivery"] == {
        "delivery": None,
        "errors": [{"code": "NOT_FOUND", "field": "deliveryId"}],
    }


def start_worker(backend, name: str) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ, DATABASE_URL=backend.url, WHITEBILL_ENV="test", WHITEBILL_TEST_CLOCK="1", LOG_LEVEL="WARNING"
    )
    return subprocess.Popen(
        [sys.executable, "-m", "whitebill.cli", "worker", "--name", name, "--poll", "0.02"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def delivered(count: int, *, within: float = 180.0) -> None:
    """Wait for ``count`` deliveries to be DONE (generous: a loaded machine is slow, not wrong)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await WebhookDelivery.filter(state=WorkState.DONE).count() >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {await WebhookDelivery.filter(state=WorkState.DONE).count()} of {count} delivered")


async def killed_workers_claims(prefix: str, *, within: float = 120.0) -> set[str]:
    """Wait until every unfinished outbox event and delivery is leased to the killed worker; its event ids."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        events = await OutboxEvent.exclude(state=WorkState.DONE).values_list("lease_owner", flat=True)
        deliveries = await WebhookDelivery.exclude(state=WorkState.DONE).values_list("lease_owner", "event_id")
        if all((owner or "").startswith(prefix) for owner in events) and all(
            (owner or "").startswith(prefix) for owner, _ in deliveries
        ):
            return {f"evt_{event_id}" for _, event_id in deliveries}
        await asyncio.sleep(0.05)
    raise AssertionError("the live workers did not finish what the killed worker did not hold")


async def test_four_workers_deliver_2000_events_exactly_once_and_a_killed_one_loses_nothing(database) -> None:
    if not database.is_postgres:
        pytest.skip("several worker processes share one database on PostgreSQL")
    with receiving() as (receiver, url):
        partner, _, secret = await an_endpoint(url + "/ok")
        now = clock.now()
        await OutboxEvent.bulk_create(
            [
                OutboxEvent(partner_id=partner.id, event_type="payment.succeeded", payload={"n": n}, run_at=now)
                for n in range(2000)
            ]
        )
        workers = [start_worker(database, f"w{i}") for i in range(4)]
        try:
            await delivered(2000)
            ids = receiver.ids()
            assert len(ids) == 2000 and len(set(ids)) == 2000  # exactly once each, without a crash
            assert all(
                verifies(secret, body, headers["whitebill-signature"], now=received_at)
                for _, body, headers, received_at in receiver.arrivals
            )

            # Another 500, to a receiver that takes a while to answer; one worker is killed while it holds
            # deliveries, some of them received but not yet answered.
            receiver.answer_slowly()
            await OutboxEvent.bulk_create(
                [
                    OutboxEvent(partner_id=partner.id, event_type="payment.succeeded", payload={"n": n}, run_at=now)
                    for n in range(2000, 2500)
                ]
            )
            # Sent 8 at a time, each answered after 0.5 s, a batch of 32 keeps its worker busy for 2 s.
            deadline = time.monotonic() + 60
            held_by_w0 = WebhookDelivery.filter(lease_owner__startswith="w0:").exclude(state=WorkState.DONE)
            while not await held_by_w0.exists():
                assert workers[0].poll() is None, f"worker w0 ended by itself ({workers[0].returncode})"
                assert time.monotonic() < deadline, "worker w0 took no delivery"
                await asyncio.sleep(0.01)
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait(timeout=10)
            killed_at = time.monotonic()
            died_holding = {f"evt_{event_id}" for event_id in await held_by_w0.values_list("event_id", flat=True)}
            assert died_holding  # it died holding deliveries
            # The live workers finish everything else; what the killed worker held stays leased to it. (Moving
            # the clock while live workers still hold claims would expire their leases too, which no real clock
            # does: a batch ends well inside its lease.)
            held = await killed_workers_claims("w0:")
            assert held <= died_holding
            if time.monotonic() - killed_at < work.DEFAULT_LEASE.total_seconds() / 2:
                # Well inside the killed worker's lease nobody else may take what it held. (On a machine so
                # loaded that the others need longer than the lease, its claims run out and are taken again,
                # as they should: then only the at-most-once-more check below applies.)
                assert held == died_holding
            # What the killed worker held comes back when its lease runs out (under the movable clock).
            await clock.advance(work.DEFAULT_LEASE + timedelta(minutes=1))
            await delivered(2500)
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.terminate()
            for worker in workers:
                worker.wait(timeout=10)
    ids = receiver.ids()
    expected = {f"evt_{e.id}" for e in await OutboxEvent.filter(partner_id=partner.id)}
    assert set(ids) == expected  # nothing lost
    resent = [event_id for event_id, times in Counter(ids).items() if times > 1]
    assert set(resent) <= died_holding  # at least once: only what the killed worker was sending comes again
    assert max(Counter(ids).values()) <= 2
    assert await OutboxEvent.filter(state=WorkState.PENDING).count() == 0


async def test_a_password_e_mail_never_reaches_a_partner_endpoint() -> None:
    with receiving() as (receiver, url):
        partner, _, _ = await an_endpoint(url + "/ok")  # wants every event
        await OutboxEvent.create(
            partner_id=partner.id,
            event_type="email.password_reset",
            payload={"to": "ana@client.example", "token": "s3cret-reset-token"},
            run_at=clock.now(),
        )
        await OutboxEvent.create(partner_id=partner.id, event_type="plan.renewed", payload={}, run_at=clock.now())
        await drain(Worker(load_settings()))
        assert [json.loads(body)["type"] for _, body, _ in receiver.received] == ["plan.renewed"]


if __name__ == "__main__":
    serve_receiver(int(sys.argv[1]), Path(sys.argv[2]))


async def test_a_worker_slowed_past_its_lease_leaves_a_delivery_another_worker_took() -> None:
    """A worker starved of CPU past its lease (here: the clock moved past it between claim and send) must not
    send what another worker claimed since: that one sends it, once. Holding a claim, a send renews it, so
    nobody takes it while it is on the wire."""
    with receiving() as (receiver, url):
        partner, endpoint, _ = await an_endpoint(url + "/ok")
        await OutboxEvent.create(partner_id=partner.id, event_type="plan.renewed", payload={}, run_at=clock.now())
        slow, quick = Worker(load_settings(), name="slow"), Worker(load_settings(), name="quick")
        for item in await work.claim("outbox_event", slow.owner):  # fan out: one delivery
            await partner_webhooks.fan_out({**item.row, "payload": {}})
            await work.finish("outbox_event", item.id, slow.owner)
        [held] = await work.claim("webhook_delivery", slow.owner)
        await clock.advance(work.DEFAULT_LEASE + timedelta(seconds=1))  # the slow worker's lease runs out...
        [taken] = await work.claim("webhook_delivery", quick.owner)  # ...and the quick one takes the delivery
        assert taken.id == held.id
        assert not await slow.webhooks.send(slow.owner, held)  # not sent: it is the quick worker's now
        assert receiver.received == []
        assert await quick.webhooks.send(quick.owner, taken)
        assert receiver.ids() == [f"evt_{taken.row['event_id']}"]
        delivery = await WebhookDelivery.get(id=taken.id)
        assert delivery.state is WorkState.DONE and delivery.endpoint_id == endpoint.id

        # A lease that ran out with nobody taking the delivery since is still the worker's: renewed, it sends.
        await OutboxEvent.create(partner_id=partner.id, event_type="plan.renewed", payload={}, run_at=clock.now())
        for item in await work.claim("outbox_event", slow.owner):
            await partner_webhooks.fan_out({**item.row, "payload": {}})
            await work.finish("outbox_event", item.id, slow.owner)
        [late] = await work.claim("webhook_delivery", slow.owner)
        await clock.advance(work.DEFAULT_LEASE + timedelta(seconds=1))
        assert await slow.webhooks.send(slow.owner, late)
        assert len(receiver.ids()) == 2


async def test_a_delivery_that_fails_in_the_worker_holds_up_neither_the_others_nor_the_tick(caplog) -> None:
    """One endpoint's secret cannot be opened (a key rotated away, say): its delivery fails in the worker
    itself. The tick goes on, the other endpoint gets the event, and the failed one waits for its lease."""
    with receiving() as (receiver, url):
        partner, good, _ = await an_endpoint(url + "/ok")
        broken, _ = await partner_webhooks.create_endpoint(
            partner_viewer(partner), partner_id=partner.id, url=url + "/ok?broken", events=[]
        )
        await WebhookEndpoint.filter(id=broken.id).update(secret_encrypted=b"not a token")
        await OutboxEvent.create(partner_id=partner.id, event_type="plan.renewed", payload={}, run_at=clock.now())
        worker = Worker(load_settings())
        await drain(worker)  # does not raise
        assert len(receiver.ids()) == 1
        states = {d.endpoint_id: d.state for d in await WebhookDelivery.filter(partner_id=partner.id)}
        assert states == {good.id: WorkState.DONE, broken.id: WorkState.PENDING}
        assert any("webhook delivery" in r.getMessage() and r.exc_info for r in caplog.records)
