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

Fan-out costs one read per change, not one per subscriber: the subscribers of an object that share a
tenant scope share one read of its state after each change (``Broker.read``), and check their
credentials again only when some credential changed (a key revoked, a session ended, permissions
changed: ``CREDENTIALS``) or their session expired, not on every event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from billing.core import sql

log = logging.getLogger("whitebill.realtime")

CHANNEL = "whitebill_changes"
LISTENER_NAME = "whitebill-listener"
WALLET = "wallet"
WORKSPACE = "workspace"
PAYMENT = "payment"
# A key revoked, a session ended, a person's permissions changed: every subscriber checks its own again.
CREDENTIALS = "credentials"

T = TypeVar("T")
# Subscribers woken in one turn of the event loop (see ``wake``).
WAKE_BATCH = 16


@dataclass(frozen=True, slots=True)
class Change:
    topic: str  # WALLET, WORKSPACE, PAYMENT
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


def credentials_changed() -> Change:
    """The change that makes every subscriber, in every process, check its credentials again."""
    return Change(CREDENTIALS, 0, None)


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

    __slots__ = ("_changed", "partner_id", "reader", "scope")

    def __init__(
        self,
        partner_id: int | None,
        scope: Hashable = None,
        reader: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        self.partner_id = partner_id  # None: the platform, which sees every partner's objects
        self.scope = scope  # the tenant scope its reads are made in
        self.reader = reader  # how it reads the object in that scope
        self._changed = asyncio.Event()

    def wake(self) -> None:
        self._changed.set()

    async def changed(self) -> None:
        """Wait until the watched object may have changed."""
        await self._changed.wait()
        self._changed.clear()


Key = tuple[str, int]


class Broker:
    """Fans changes out to this process's subscribers, by topic and object id, and shares the reads
    that follow a change between the subscribers that would make the same one."""

    def __init__(self) -> None:
        self._watches: dict[Key, set[Watch]] = {}
        # Per watched object: how many changes were heard, and the latest read of each tenant scope,
        # with the count it was started at (it sees every change committed before that one was heard).
        self._versions: dict[Key, int] = {}
        self._reads: dict[Key, dict[Hashable, tuple[int, asyncio.Future[Any]]]] = {}
        self.credentials_version = 0

    @contextlib.contextmanager
    def watch(
        self,
        topic: str,
        object_id: int,
        *,
        partner_id: int | None,
        scope: Hashable = None,
        read: Callable[[], Awaitable[Any]] | None = None,
    ) -> Iterator[Watch]:
        """Be woken by changes of one object; with a partner id, only by changes the notification
        says are that partner's (a cheap filter: the subscriber's scoped re-read decides). A watch that
        says how it reads the object (``read``, in tenant ``scope``) is woken once that read is done, by
        then shared with the other watches of its scope: they take it from ``read`` without waiting."""
        key = (topic, object_id)
        watch = Watch(partner_id, scope, read)
        self._watches.setdefault(key, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(key)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[key]
                    self._versions.pop(key, None)
                    self._reads.pop(key, None)

    def dispatch(self, change: Change) -> None:
        if change.topic == CREDENTIALS:
            self.credentials_version += 1
            self._wake_every_watch()  # each checks its credentials; its state is read once more at most
            return
        key = (change.topic, change.object_id)
        watches = self._watches.get(key)
        if not watches:
            return
        self._versions[key] = self._versions.get(key, 0) + 1
        readers: dict[Hashable, list[Watch]] = {}
        plain: list[Watch] = []
        for watch in watches:
            if watch.partner_id is None or watch.partner_id == change.partner_id:
                if watch.reader is None:
                    plain.append(watch)
                else:
                    readers.setdefault(watch.scope, []).append(watch)
        wake(plain)
        for scope, woken in readers.items():
            reader = woken[0].reader
            assert reader is not None
            self._start_read(key, scope, reader).add_done_callback(functools.partial(_wake_once_read, woken))

    def wake_all(self) -> None:
        """Every subscriber reads again and checks its credentials again: changes may have been missed
        (the listener reconnected)."""
        for key in self._watches:
            self._versions[key] = self._versions.get(key, 0) + 1
        self.credentials_version += 1
        self._wake_every_watch()

    def _wake_every_watch(self) -> None:
        wake([watch for watches in self._watches.values() for watch in watches])

    async def read(self, key: Key, scope: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        """The watched object's state as tenant ``scope`` sees it: read by ``read`` at most once per
        change heard, however many of its subscribers ask (the later ones share the first one's read,
        or its error). A read started after the latest change was heard is never stale."""
        done = self._start_read(key, scope, read)
        if done.done() and not done.cancelled() and done.exception() is None:
            return done.result()  # type: ignore[no-any-return]
        return await asyncio.shield(done)

    def _start_read(self, key: Key, scope: Hashable, read: Callable[[], Awaitable[Any]]) -> asyncio.Future[Any]:
        """The read of the object in ``scope`` that has seen every change heard so far: the one under
        way or done, or a new one (also when the last one failed)."""
        heard = self._versions.get(key, 0)
        reads = self._reads.setdefault(key, {})
        latest = reads.get(scope)
        if (
            latest is None
            or latest[0] < heard
            or (latest[1].done() and (latest[1].cancelled() or latest[1].exception()))
        ):
            latest = (heard, asyncio.ensure_future(read()))
            reads[scope] = latest
        return latest[1]

    def watching(self) -> int:
        return sum(len(watches) for watches in self._watches.values())


def _wake_once_read(watches: list[Watch], _read: asyncio.Future[Any]) -> None:
    wake(watches)


def wake(watches: Sequence[Watch], start: int = 0) -> None:
    """Wake ``watches`` ``WAKE_BATCH`` at a time, the event loop serving what else is ready (a
    request, another change) between two batches: a change with a thousand subscribers in this
    process does not hold a request up for the whole fan-out."""
    end = start + WAKE_BATCH
    for watch in watches[start:end]:
        watch.wake()
    if end < len(watches):
        asyncio.get_running_loop().call_soon(wake, watches, end)


broker = Broker()

Connect = Callable[[], Awaitable[asyncpg.Connection]]


def connect_like_the_pool() -> Connect:
    """A way to open one more connection with the settings of Tortoise's PostgreSQL pool."""
    client: Any = sql.connection()
    return connect_with(
        host=client.host,
        port=client.port,
        user=client.user,
        password=client.password,
        database=client.database,
        server_settings=client.server_settings,
        ssl=client.extra.get("ssl"),
    )


def connect_with(
    *,
    host: str | None,
    port: int,
    user: str | None,
    password: Any,
    database: str | None,
    server_settings: dict[str, str] | None = None,
    ssl: Any = None,
) -> Connect:
    """A way to open the listening connection to the PostgreSQL server named: straight to it, not through
    a pooler in transaction mode (pgbouncer's), which gives the session that LISTENs to other clients
    after each statement, and with it the notifications."""
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "user": user,
        "password": password,
        "database": database,
        # Seen in pg_stat_activity as what it is.
        "server_settings": {**(server_settings or {}), "application_name": LISTENER_NAME},
    }
    if ssl is not None:
        options["ssl"] = ssl

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
