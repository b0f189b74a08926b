"""P6: live updates fanned out to many subscribers of one wallet, and of 50 wallets.

N subscribers (BENCH_P6_SUBSCRIBERS, by default 100 and 1,000) open graphql-transport-ws connections
(permessage-deflate on, as browsers ask) to server A and follow ``walletBalanceChanged``: all on one
wallet, then spread over 50. Grants of one point go out at a steady BENCH_P6_RATE a second (5) for
BENCH_P6_SECONDS (10), through A itself and through another server process B. Reported per run:

- event latency: for each grant and each subscriber of its wallet, from the grant's answer to the first
  message showing that balance or a later one (a subscriber that is behind gets the latest state, so a
  later balance covers an earlier grant); p50 and p99 (an event may come before the answer: 0);
- the grants' own latency (p50, p99), missed final states (a subscriber whose last message is not its
  wallet's final balance within 5 s of the last answer) and duplicated messages (the same balance twice
  in a row);
- deliveries a second, server and client CPU per delivery, A's RSS before the subscribers come, while
  they are connected, and 5 s after they leave.

Floor (``bench.fanout_floor``): the same subscribers on a hand-written websocket server that reads a
changed wallet once and broadcasts it, with grants through B. The result line compares deliveries a
second for N=1,000 on one wallet through A. The load generator is this one process (the ``websockets``
client): its CPU per delivery is reported beside the servers', and its share of a core tells whether it
could have been the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import orjson
from tortoise import Tortoise
from websockets.asyncio.client import connect

from bench.common import (
    LeanHttp,
    asyncpg_dsn,
    cpu_seconds,
    database_url,
    free_port,
    memory_mb,
    report,
    scratch_database,
    server,
)
from bench.lean_websocket import LeanWebSocket
from billing.accounts import wallets
from billing.core.tenancy import Viewer
from billing.tenants import api_keys, partners
from models.enums import PARTNER_PERMISSIONS, PLATFORM_PERMISSIONS
from schema.ids import to_global_id
from whitebill import db

COUNTS = [int(n) for n in os.environ.get("BENCH_P6_SUBSCRIBERS", "100,1000").split(",")]
RATE = float(os.environ.get("BENCH_P6_RATE", "5"))
SECONDS = float(os.environ.get("BENCH_P6_SECONDS", "10"))
SPREAD = 50  # wallets in the spread layout
# BENCH_P6_LAYOUTS=one: only the subscribers all on one wallet (to look at the hot case alone).
ONLY_ONE = os.environ.get("BENCH_P6_LAYOUTS") == "one"
SETTLE = 5.0  # how long after the last answer a subscriber may take to show the final balance
KEYS = itertools.count()  # idempotency keys, unique over the whole run
PLATFORM = Viewer(kind="PLATFORM", actor="bench", permissions=PLATFORM_PERMISSIONS)

SUBSCRIBE = "subscription($w: ID!) { walletBalanceChanged(walletId: $w) { balance { amount unit } } }"
GRANT = """mutation($ws: ID!, $key: String!) { grantUnits(input: {workspaceId: $ws, unit: "POINTS", amount: "1",
idempotencyKey: $key}) { wallet { balance { amount } } errors { code } } }"""


@dataclass(frozen=True)
class Target:
    workspace: str  # global ids
    wallet: str


async def seed(url: str) -> tuple[str, list[Target]]:
    await db.connect(url)
    try:
        partner = await partners.create_partner(PLATFORM, name="Fan-out", slug="fanout")
        agency = Viewer(kind="PARTNER", actor="bench", partner_id=partner.id, permissions=PARTNER_PERMISSIONS)
        targets = []
        for n in range(SPREAD):
            workspace = await partners.create_workspace(agency, name=f"W{n}", owner_email=f"w{n}@bench.example")
            made = await wallets.adjust_workspace_balance(
                agency, workspace_id=workspace.id, unit="POINTS", amount=1, note="", idempotency_key=f"open{n}"
            )
            targets.append(Target(to_global_id("Workspace", workspace.id), to_global_id("Wallet", made.wallet_id)))
        return (await api_keys.create_key(partner_id=partner.id)).secret, targets
    finally:
        await Tortoise.close_connections()


@dataclass
class Subscriber:
    wallet: str
    seen: list[tuple[float, int]] = field(default_factory=list)  # (when, balance), the first one included
    socket: LeanWebSocket | None = None

    async def open(self, uri: str, token: str) -> None:
        setup: asyncio.Queue[str] = asyncio.Queue()
        self.socket = socket = await LeanWebSocket.connect(uri, setup.put_nowait)
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        socket.send_text(orjson.dumps(init).decode())
        assert orjson.loads(await setup.get())["type"] == "connection_ack"
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE, "variables": {"w": self.wallet}}}
        socket.send_text(orjson.dumps(subscribe).decode())
        self.take(await setup.get())
        # From now on a message is noted in the callback that completes its frame.
        socket.on_message = self.take
        while not setup.empty():
            self.take(setup.get_nowait())

    def take(self, raw: str | bytes) -> None:
        message = orjson.loads(raw)
        assert message["type"] == "next", message
        amount = message["payload"]["data"]["walletBalanceChanged"]["balance"]["amount"]
        self.seen.append((time.monotonic(), int(amount)))

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()


@dataclass(frozen=True)
class Grant:
    wallet: str
    balance: int
    sent: float
    answered: float


@dataclass
class Run:
    label: str
    event_ms: list[float]
    grant_ms: list[float]
    deliveries: int
    seconds: float
    missed: int
    duplicated: int
    server_cpu: float
    client_cpu: float
    rss: tuple[float, float, float]

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        def pct(values: list[float], q: float) -> float:
            return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else (values[0] if values else 0.0)

        per = max(self.deliveries, 1)
        return (
            f"P6 {self.label}: events p50 {pct(self.event_ms, 50):.1f} ms p99 {pct(self.event_ms, 99):.1f} ms;"
            f" grants p50 {pct(self.grant_ms, 50):.1f} ms p99 {pct(self.grant_ms, 99):.1f} ms;"
            f" {self.rate:.0f} deliveries/s; missed {self.missed}, duplicated {self.duplicated};"
            f" CPU per delivery: server {1e6 * self.server_cpu / per:.0f} us,"
            f" client {1e6 * self.client_cpu / per:.0f} us"
            f" (client busy {100 * self.client_cpu / self.seconds:.0f}% of a core);"
            f" RSS {self.rss[0]:.0f} -> {self.rss[1]:.0f} -> {self.rss[2]:.0f} MB"
        )


async def run(
    label: str,
    uri: str,
    server_pid: int,
    grants_to: str,
    token: str,
    targets: Sequence[Target],
    count: int,
) -> Run:
    rss_before = memory_mb(server_pid)
    subscribers = [Subscriber(targets[n % len(targets)].wallet) for n in range(count)]
    for batch in range(0, count, 100):
        await asyncio.gather(*(s.open(uri, token) for s in subscribers[batch : batch + 100]))
    by_wallet = {t.wallet: [s for s in subscribers if s.wallet == t.wallet] for t in targets}
    grants: list[Grant] = []
    async with LeanHttp(grants_to, 4, {"Authorization": f"Bearer {token}"}) as http:

        async def one(target: Target) -> None:
            body = orjson.dumps({"query": GRANT, "variables": {"ws": target.workspace, "key": f"g{next(KEYS)}"}})
            sent = time.monotonic()
            status, answer = await http.post("/graphql", body)
            answered = time.monotonic()
            data = orjson.loads(answer)["data"]["grantUnits"]
            assert status == 200 and data["errors"] == [], answer
            grants.append(Grant(target.wallet, int(data["wallet"]["balance"]["amount"]), sent, answered))

        await asyncio.sleep(1)  # the subscribers' first messages are in; nothing else moves
        delivered_before = sum(len(s.seen) for s in subscribers)
        client_cpu, server_cpu = time.process_time(), cpu_seconds(server_pid)
        started = time.monotonic()
        tasks = []
        for n in range(int(RATE * SECONDS)):
            await asyncio.sleep(max(0.0, started + n / RATE - time.monotonic()))
            tasks.append(asyncio.create_task(one(targets[n % len(targets)])))
        await asyncio.gather(*tasks)
    last_answer = max(g.answered for g in grants)
    final = {}
    for g in grants:
        final[g.wallet] = max(final.get(g.wallet, 0), g.balance)
    while time.monotonic() < last_answer + SETTLE:
        if all(s.seen[-1][1] == final[s.wallet] for s in subscribers if s.wallet in final):
            break
        await asyncio.sleep(0.05)
    ended = max(s.seen[-1][0] for s in subscribers)
    client_cpu, server_cpu = time.process_time() - client_cpu, cpu_seconds(server_pid) - server_cpu
    rss_during = memory_mb(server_pid)
    event_ms = []
    for g in grants:
        for s in by_wallet[g.wallet]:
            shown = next((when for when, balance in s.seen if balance >= g.balance), None)
            if shown is not None:
                event_ms.append(max(0.0, shown - g.answered) * 1000)
    missed = sum(1 for s in subscribers if s.wallet in final and s.seen[-1][1] != final[s.wallet])
    duplicated = sum(1 for s in subscribers for a, b in itertools.pairwise(s.seen) if a[1] == b[1])
    deliveries = sum(len(s.seen) for s in subscribers) - delivered_before
    await asyncio.gather(*(s.close() for s in subscribers))
    await asyncio.sleep(5)
    return Run(
        label,
        event_ms,
        [(g.answered - g.sent) * 1000 for g in grants],
        deliveries,
        max(ended - started, 1e-9),
        missed,
        duplicated,
        server_cpu,
        client_cpu,
        (rss_before, rss_during, memory_mb(server_pid)),
    )


@contextlib.contextmanager
def floor_server(url: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    argv = [sys.executable, "-m", "bench.fanout_floor", "--port", str(port), "--dsn", asyncpg_dsn(url)]
    process = subprocess.Popen(argv)
    try:
        yield f"ws://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


async def wait_for_socket(uri: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            async with connect(uri, subprotocols=["graphql-transport-ws"]):  # type: ignore[list-item]
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def layouts(one: list[Target], spread: list[Target]) -> list[tuple[str, list[Target]]]:
    layouts = [("one wallet", one), (f"{SPREAD} wallets", spread)]
    return layouts[:1] if ONLY_ONE else layouts


async def main() -> None:
    async with scratch_database() as name:
        url = database_url(name)
        token, targets = await seed(url)
        one, spread = targets[:1], targets
        results: dict[str, Run] = {}
        with server(url) as (a_base, a), server(url) as (b_base, _), floor_server(url) as (floor_uri, floor_pid):
            a_uri = a_base.replace("http://", "ws://", 1) + "/graphql"
            await wait_for_socket(floor_uri)
            for count in COUNTS:
                for layout, chosen in layouts(one, spread):
                    for via, base in (("same", a_base), ("other", b_base)):
                        label = f"N={count} {layout}, grants via {via} server"
                        results[label] = await run(label, a_uri, a.pid, base, token, chosen, count)
                        print(results[label].line(), flush=True)
                    label = f"floor N={count} {layout}"
                    results[label] = await run(label, floor_uri, floor_pid, b_base, token, chosen, count)
                    print(results[label].line(), flush=True)
        top = max(COUNTS)
        ours, floor = results[f"N={top} one wallet, grants via same server"], results[f"floor N={top} one wallet"]
        report("P6", ours.rate, "deliveries/s", floor.rate)


if __name__ == "__main__":
    asyncio.run(main())
