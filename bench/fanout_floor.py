"""P6's floor: the least a fan-out server can do. One process LISTENs for whitebill's change notices
(``billing.core.realtime.CHANNEL``), reads a changed wallet once, and writes the same message to every
socket subscribed to it (``websockets.broadcast``: no waiting on a slow socket). It speaks just enough
graphql-transport-ws for P6's clients (connection_init, subscribe, next) and checks no credentials.

    python -m bench.fanout_floor --port 8123 --dsn postgresql://...
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
from collections import defaultdict

import asyncpg
import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve

from billing.core.realtime import CHANNEL, WALLET, Change


class Floor:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.subscribers: dict[int, dict[ServerConnection, str]] = defaultdict(dict)  # wallet -> socket -> op id
        self.pending: set[int] = set()
        self.wake = asyncio.Event()

    def heard(self, connection: object, pid: int, channel: str, payload: str) -> None:
        change = Change.decode(payload)
        if change is not None and change.topic == WALLET and change.object_id in self.subscribers:
            self.pending.add(change.object_id)
            self.wake.set()

    async def deliver(self) -> None:
        """Read each changed wallet once and send its state to all its subscribers."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            changed, self.pending = self.pending, set()
            for wallet_id in changed:
                row = await self.pool.fetchrow("SELECT balance, unit FROM wallet WHERE id = $1", wallet_id)
                if row is not None:
                    self.send(wallet_id, row["balance"], row["unit"])

    def send(self, wallet_id: int, balance: int, unit: str) -> None:
        by_operation: dict[str, list[ServerConnection]] = defaultdict(list)
        for socket, operation in self.subscribers[wallet_id].items():
            by_operation[operation].append(socket)
        for operation, sockets in by_operation.items():
            data = {"walletBalanceChanged": {"balance": {"amount": str(balance), "unit": unit}}}
            broadcast(sockets, orjson.dumps({"id": operation, "type": "next", "payload": {"data": data}}).decode())

    async def handle(self, socket: ServerConnection) -> None:
        wallet_id = None
        try:
            async for raw in socket:
                message = orjson.loads(raw)
                if message.get("type") == "connection_init":
                    await socket.send('{"type":"connection_ack"}')
                elif message.get("type") == "subscribe":
                    global_id = message["payload"]["variables"]["w"]
                    wallet_id = int(base64.b64decode(global_id).decode().partition(":")[2])
                    self.subscribers[wallet_id][socket] = message["id"]
                    row = await self.pool.fetchrow("SELECT balance, unit FROM wallet WHERE id = $1", wallet_id)
                    data = {"walletBalanceChanged": {"balance": {"amount": str(row["balance"]), "unit": row["unit"]}}}
                    await socket.send(orjson.dumps({"id": message["id"], "type": "next", "payload": {"data": data}}))
        finally:
            if wallet_id is not None:
                self.subscribers[wallet_id].pop(socket, None)


async def run(port: int, dsn: str) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=5)
    listening = await asyncpg.connect(dsn)
    floor = Floor(pool)
    await listening.add_listener(CHANNEL, floor.heard)
    delivering = asyncio.create_task(floor.deliver())
    async with serve(floor.handle, "127.0.0.1", port, subprotocols=["graphql-transport-ws"]) as server:  # type: ignore[list-item]
        with contextlib.suppress(asyncio.CancelledError):
            await server.serve_forever()
    delivering.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", required=True)
    args = parser.parse_args()
    asyncio.run(run(args.port, args.dsn))


if __name__ == "__main__":
    main()
