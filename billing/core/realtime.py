"""Live changes for GraphQL subscriptions: "wallet 12 changed", "workspace 7 changed".

A notification names the object and its partner, nothing else: a subscriber re-reads the current
state through its tenant-scoped path. A rolled-back change, two changes heard in the wrong order, or
a notification lost while reconnecting can therefore never show a wrong value; at worst a subscriber
reads again and finds nothing new.

- PostgreSQL: ``publish`` runs ``pg_notify`` on the caller's connection, inside its transaction when
  there is one: PostgreSQL delivers it at commit and drops it on rollback. Each server process
  LISTENs on one dedicated connection (``Listener``) and hands what it hears to its ``broker``, so a
  change made by any process (another server, a worker) reaches every subscriber of every process.
- SQLite (one process): ``publish`` hands the change to this process's broker at once. A woken
  subscriber reads through the same connection, which the writer's transaction holds until it ends,
  so it reads committed state.

The payload is ``topic:id:partner_id`` (partner empty when there is none), on channel ``CHANNEL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from billing.core import sql

log = logging.getLogger("whitebill.realtime")

CHANNEL = "whitebill_changes"
LISTENER_NAME = "whitebill-listener"
WALLET = "wallet"
WORKSPACE = "workspace"


@dataclass(frozen=True, slots=True)
class Change:
    topic: str  # WALLET, WORKSPACE
    object_id: int
    partner_id: int | None

    def encode(self) -> str:
        return f"{self.topic}:{self.object_id}:{'' if self.partner_id is None else self.partner_id}"

    @classmethod
    def decode(cls, payload: str) -> Change | None:
        topic, _, rest = payload.partition(":")
        object_id, _, partner = rest.partition(":")
        if not object_id.isdigit() or not (partner == "" or partner.isdigit()):
            return None
        return cls(topic, int(object_id), int(partner) if partner else None)


def notify_sql(topic: str, id_column: str, partner_column: str) -> str:
    """The SQL expression that announces a change from inside a statement (a CTE, say), with the
    payload ``publish`` would send; PostgreSQL only."""
    return f"pg_notify('{CHANNEL}', '{topic}:' || {id_column} || ':' || COALESCE({partner_column}::text, ''))"


async def publish(*changes: Change) -> None:
    """Announce changes (see the module's notes on when subscribers hear them)."""
    if not changes:
        return
    if sql.is_postgres():
        await sql.execute(
            "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload",
            CHANNEL,
            [change.encode() for change in changes],
        )
        return
    for change in changes:
        broker.dispatch(change)


class Watch:
    """One subscriber's wake-up flag: changes that arrive before it looks again count as one."""

    __slots__ = ("_changed", "partner_id")

    def __init__(self, partner_id: int | None) -> None:
        self.partner_id = partner_id  # None: the platform, which sees every partner's objects
        self._changed = asyncio.Event()

    def wake(self) -> None:
        self._changed.set()

    async def changed(self) -> None:
        """Wait until the watched object may have changed."""
        await self._changed.wait()
        self._changed.clear()


class Broker:
    """Fans changes out to this process's subscribers, by topic and object id."""

    def __init__(self) -> None:
        self._watches: dict[tuple[str, int], set[Watch]] = {}

    @contextlib.contextmanager
    def watch(self, topic: str, object_id: int, *, partner_id: int | None) -> Iterator[Watch]:
        """Be woken by changes of one object; with a partner id, only by changes the notification
        says are that partner's (a cheap filter: the subscriber's scoped re-read decides)."""
        key = (topic, object_id)
        watch = Watch(partner_id)
        self._watches.setdefault(key, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(key)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[key]

    def dispatch(self, change: Change) -> None:
        for watch in self._watches.get((change.topic, change.object_id), ()):
            if watch.partner_id is None or watch.partner_id == change.partner_id:
                watch.wake()

    def wake_all(self) -> None:
        """Every subscriber reads again: changes may have been missed (the listener reconnected)."""
        for watches in self._watches.values():
            for watch in watches:
                watch.wake()

    def watching(self) -> int:
        return sum(len(watches) for watches in self._watches.values())


broker = Broker()

Connect = Callable[[], Awaitable[asyncpg.Connection]]


def connect_like_the_pool() -> Connect:
    """A way to open one more connection with the settings of Tortoise's PostgreSQL pool."""
    client: Any = sql.connection()
    options: dict[str, Any] = {
        "host": client.host,
        "port": client.port,
        "user": client.user,
        "password": client.password,
        "database": client.database,
        # Seen in pg_stat_activity as what it is.
        "server_settings": {**(client.server_settings or {}), "application_name": LISTENER_NAME},
    }
    if client.extra.get("ssl") is not None:
        options["ssl"] = client.extra["ssl"]

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(**options, timeout=10)

    return connect


class Listener:
    """This process's ear on PostgreSQL: one dedicated connection LISTENing on ``CHANNEL``, feeding
    ``broker``. A connection lost (or silent for ``ping_seconds`` and then unanswering) is opened
    again, and every subscriber then reads again, since changes made meanwhile were not heard."""

    def __init__(
        self,
        connect: Connect,
        *,
        into: Broker = broker,
        ping_seconds: float = 30.0,
        retry_seconds: float = 1.0,
        start_seconds: float = 10.0,
    ) -> None:
        self.connect = connect
        self.broker = into
        self.ping_seconds = ping_seconds
        self.retry_seconds = retry_seconds
        self.start_seconds = start_seconds
        self.listening = asyncio.Event()
        self.backend_pid: int | None = None  # the listening connection's, in pg_stat_activity
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start listening; returns once the first connection listens (TimeoutError if none does
        within ``start_seconds``)."""
        self._task = asyncio.create_task(self._run(), name="whitebill-realtime-listener")
        try:
            async with asyncio.timeout(self.start_seconds):
                await self.listening.wait()
        except TimeoutError:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                connection = await self.connect()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("cannot listen for changes yet: %r", error)
                await asyncio.sleep(self.retry_seconds)
                continue
            try:
                await self._listen(connection)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("lost the connection that listens for changes: %r", error)
            finally:
                self.listening.clear()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), self.retry_seconds)
            await asyncio.sleep(self.retry_seconds)

    async def _listen(self, connection: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _: lost.set())
        await connection.add_listener(CHANNEL, self._heard)
        self.backend_pid = connection.get_server_pid()
        self.listening.set()
        self.broker.wake_all()
        while not connection.is_closed():
            try:
                await asyncio.wait_for(lost.wait(), self.ping_seconds)
                return
            except TimeoutError:
                await asyncio.wait_for(connection.fetchval("SELECT 1"), self.ping_seconds)

    def _heard(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        change = Change.decode(payload)
        if change is not None:
            self.broker.dispatch(change)
