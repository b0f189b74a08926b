"""whitebill behind pgbouncer in transaction mode (docs/operations/pgbouncer.md).

pgbouncer 1.18 gives each transaction whichever server connection is free, so nothing may outlive a
transaction on a connection: asyncpg's named prepared statements (its statement cache) would be looked
for on another server connection, and a LISTEN would hear nothing. WHITEBILL_PGBOUNCER=1 turns the
cache off, and WHITEBILL_LISTEN_DATABASE_URL sends the LISTEN straight to PostgreSQL. These tests start
their own pgbouncer (tests/pgbouncer.py); ``--via-pgbouncer`` runs the money tests through one too, the
test database's creation and migrations included.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from tortoise import Tortoise

from billing.core import realtime, sql
from models.wallets import Wallet
from tests import pgbouncer as harness
from tests.conftest import PG_ADMIN, Backend, Server, serving
from tests.test_realtime import BALANCE, a_tenant, balance, grant, live
from whitebill import db
from whitebill.settings import SettingsError, load_settings

WAIT = 10.0
QUIET = 1.0
DIRECT = "postgres://whitebill@db.internal:5432/billing"
BOUNCED = "postgres://whitebill@pgbouncer.internal:6432/billing"


# -- the settings -----------------------------------------------------------------------------------------


def test_pgbouncer_mode_turns_the_statement_cache_off_and_listens_straight_to_postgresql(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", BOUNCED)
    plain = load_settings()
    assert plain.database_url == BOUNCED and not plain.pgbouncer and plain.listen_database_url is None

    monkeypatch.setenv("WHITEBILL_PGBOUNCER", "1")
    monkeypatch.setenv("WHITEBILL_LISTEN_DATABASE_URL", DIRECT)
    settings = load_settings()
    assert settings.pgbouncer
    assert settings.database_url == BOUNCED + "?statement_cache_size=0"
    assert settings.listen_database_url == DIRECT
    assert (
        db.tortoise_config(settings.database_url)["connections"]["default"]["credentials"]["statement_cache_size"] == 0
    )
    assert DIRECT not in repr(settings)  # it may hold a password

    for given, used in [
        (BOUNCED + "?maxsize=30", BOUNCED + "?maxsize=30&statement_cache_size=0"),
        (BOUNCED + "?statement_cache_size=0&maxsize=30", BOUNCED + "?statement_cache_size=0&maxsize=30"),
    ]:
        monkeypatch.setenv("DATABASE_URL", given)
        assert load_settings().database_url == used


def test_the_listening_connection_reaches_the_server_its_url_names() -> None:
    options = db.listen_options("postgresql://someone:secret@db.internal:6543/billing?maxsize=30&ssl=true")
    assert options == {
        "host": "db.internal",
        "port": 6543,
        "user": "someone",
        "password": "secret",
        "database": "billing",
        "ssl": True,
    }


@pytest.mark.parametrize(
    ("environment", "problem"),
    [
        ({"DATABASE_URL": "sqlite://whitebill.sqlite3"}, "WHITEBILL_PGBOUNCER=1 is for a PostgreSQL DATABASE_URL"),
        ({"DATABASE_URL": BOUNCED + "?statement_cache_size=100"}, "statement_cache_size='100' is 0 through pgbouncer"),
        ({"WHITEBILL_LISTEN_DATABASE_URL": ""}, "set WHITEBILL_LISTEN_DATABASE_URL to PostgreSQL itself"),
        ({"WHITEBILL_LISTEN_DATABASE_URL": "db.internal:5432"}, "WHITEBILL_LISTEN_DATABASE_URL is postgres://"),
    ],
)
def test_a_pgbouncer_setting_that_cannot_work_is_one_line_saying_what_to_set(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], problem: str
) -> None:
    monkeypatch.setenv("WHITEBILL_PGBOUNCER", "1")
    monkeypatch.setenv("DATABASE_URL", BOUNCED)
    monkeypatch.setenv("WHITEBILL_LISTEN_DATABASE_URL", DIRECT)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert len(raised.value.problems) == 1 and problem in raised.value.problems[0], raised.value.problems
    assert "\n" not in raised.value.problems[0]


# -- through a real pgbouncer -----------------------------------------------------------------------------


ON_POSTGRESQL = pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # what pgbouncer pools


def _database_of(backend: Backend) -> str:
    """The test database's name (the backend's URL may go through the session's pgbouncer)."""
    return urlsplit(backend.listen_url or backend.url).path.lstrip("/")


@pytest.fixture
def small_pgbouncer(backend: Backend, pgbouncer: harness.PgBouncer) -> Iterator[harness.PgBouncer]:
    """A pgbouncer of its own with two server connections for the pool's ten clients: as in production,
    clients take turns on few server connections."""
    with harness.running(PG_ADMIN, pool_size=2) as bouncer:
        yield bouncer


async def _concurrent_reads(rounds: int = 200) -> list[Exception]:
    """Reads as whitebill makes them (the ORM's, and billing.core.sql's raw statements), ten at a time on
    the pool: the errors they met."""
    failures: list[Exception] = []

    async def read(n: int) -> None:
        try:
            if n % 2:
                await Wallet.filter(id__gt=n % 7).count()
            else:
                await sql.fetch(f"SELECT count(*) AS n FROM wallet WHERE id > $1 AND {n % 5} = {n % 5}", n)
        except Exception as error:
            failures.append(error)

    await asyncio.gather(*(read(n) for n in range(rounds)))
    return failures


@ON_POSTGRESQL
async def test_the_statement_cache_fails_through_transaction_mode_and_pgbouncer_mode_does_not(
    backend: Backend, small_pgbouncer: harness.PgBouncer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = small_pgbouncer.url(_database_of(backend), minsize="10", maxsize="10")
    await db.connect(url)  # asyncpg's default: named prepared statements, cached per connection
    try:
        failures = await _concurrent_reads()
    finally:
        await Tortoise.close_connections()
    assert failures, "named prepared statements should have been looked for on other server connections"
    assert all("prepared statement" in str(failure) for failure in failures), failures[:3]

    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("WHITEBILL_PGBOUNCER", "1")
    monkeypatch.setenv("WHITEBILL_LISTEN_DATABASE_URL", backend.listen_url or backend.url)
    await db.connect(load_settings().database_url)
    try:
        assert await _concurrent_reads() == []
    finally:
        await Tortoise.close_connections()


@ON_POSTGRESQL
async def test_a_listener_through_pgbouncer_hears_nothing_and_one_straight_to_postgresql_hears(
    database: Backend, pgbouncer: harness.PgBouncer
) -> None:
    """Why the listener has a URL of its own: after its LISTEN, transaction mode gives its server
    connection to other clients, and the notifications with it."""
    through = db.listen_options(pgbouncer.url(_database_of(database)))
    straight = db.listen_options(database.listen_url or database.url)
    for options, hears in [(through, False), (straight, True)]:
        broker = realtime.Broker()
        listener = realtime.Listener(realtime.connect_with(**options), into=broker)
        await listener.start()
        try:
            with broker.watch(realtime.WALLET, 42, partner_id=7) as watching:
                for _ in range(3):
                    await realtime.publish(realtime.Change(realtime.WALLET, 42, 7))
                if hears:
                    await asyncio.wait_for(watching.changed(), WAIT)
                else:
                    with pytest.raises(TimeoutError):
                        await asyncio.wait_for(watching.changed(), QUIET)
        finally:
            await listener.stop()


@pytest.fixture
def servers_through_pgbouncer(
    database: Backend, providers: None, pgbouncer: harness.PgBouncer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    """Two server processes whose DATABASE_URL goes through pgbouncer (WHITEBILL_PGBOUNCER=1) and whose
    listeners go straight to PostgreSQL (WHITEBILL_LISTEN_DATABASE_URL)."""
    name = _database_of(database)
    bounced = Backend("postgres", pgbouncer.url(name, maxsize="20"), database.listen_url or database.url)
    logs = tmp_path_factory.mktemp("pgbouncer-servers")
    with serving(bounced, logs / "one.log") as one, serving(bounced, logs / "two.log") as two:
        yield one, two


@ON_POSTGRESQL
async def test_live_updates_reach_a_subscriber_when_the_database_goes_through_pgbouncer(
    servers_through_pgbouncer: tuple[Server, Server],
) -> None:
    subscribed_to, changed_through = servers_through_pgbouncer
    key, workspace, wallet = await a_tenant(changed_through, "Bounced")
    async with live(subscribed_to, BALANCE, {"w": wallet}, token=key) as sees:
        assert balance(await sees.next()) == "10"  # the current balance first: subscribed
        await grant(changed_through, key, workspace, "5")
        assert balance(await sees.next()) == "15"
        await grant(changed_through, key, workspace, "1")
        assert balance(await sees.next()) == "16"
