"""Every database test runs on SQLite and on PostgreSQL: the backend is in the test id.

PostgreSQL: a fresh, randomly named database per test session on the server named by
WHITEBILL_TEST_POSTGRES (default: the local one). When it cannot be reached, the PostgreSQL half
is skipped with a notice, or fails the run when WHITEBILL_REQUIRE_POSTGRES=true (CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from tortoise import Tortoise
from tortoise.backends.base import executor
from tortoise.transactions import in_transaction

from billing.catalog import rate_cards
from billing.core import clock
from billing.tenants import ratelimit
from gateways import registry
from tests import pgbouncer as pgbouncer_harness
from tests.fake_asaas.control import FakeAsaasController
from tests.fake_asaas.fixtures import asaas, fake_asaas  # noqa: F401
from tests.localstripe_server import LocalStripe, localstripe  # noqa: F401
from tests.processes import stop
from whitebill import db
from whitebill.settings import configure_domain, load_settings

os.environ.setdefault("WHITEBILL_CHEAP_PASSWORD_HASH", "1")
# Gateway credentials are stored encrypted: the suite makes its own key (the server inherits it).
os.environ.setdefault("WHITEBILL_SECRET_KEY", Fernet.generate_key().decode())
PLUGIN_SOURCE = Path(__file__).parent / "plugins" / "whitebill-ledgerpay"

# Every Hypothesis failure can be replayed. Locally examples are random (and remembered in
# .hypothesis/), and a failure prints the blob for @reproduce_failure. In CI (CI=true, as GitHub
# Actions and most runners set it) the examples are derived from each test's name alone, so a red
# run fails the same way on a laptop with CI=true; no example database, which CI would not keep.
# Both start from Hypothesis's defaults, not from whatever profile it picked itself (recent versions
# load a "ci" profile of their own when they see CI): the CI one says in full what it relies on,
# its deadline and health check as Hypothesis's own CI profile has them (shared runners are slow).
# A test's own @settings still wins for what it sets (test_fuzz's seeds, the ledger machine's).
_hypothesis_defaults = hypothesis_settings.get_profile("default")
hypothesis_settings.register_profile("dev", _hypothesis_defaults, print_blob=True)
hypothesis_settings.register_profile(
    "ci",
    _hypothesis_defaults,
    derandomize=True,
    database=None,
    print_blob=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
hypothesis_settings.load_profile("ci" if IN_CI else "dev")

PG_ADMIN = os.environ.get("WHITEBILL_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("WHITEBILL_REQUIRE_POSTGRES", "").lower() in {"1", "true", "yes"}
_pg_skipped: list[str] = []
_pgbouncer_skipped: list[str] = []


@dataclass(frozen=True)
class Backend:
    name: str
    url: str
    # --via-pgbouncer: url goes through pgbouncer in transaction mode, and this goes straight to PostgreSQL
    # (the servers' WHITEBILL_LISTEN_DATABASE_URL).
    listen_url: str | None = None

    @property
    def is_postgres(self) -> bool:
        return self.name == "postgres"

    @property
    def pgbouncer_env(self) -> dict[str, str]:
        """What a server needs besides DATABASE_URL when that goes through pgbouncer."""
        if self.listen_url is None:
            return {}
        return {"WHITEBILL_PGBOUNCER": "1", "WHITEBILL_LISTEN_DATABASE_URL": self.listen_url}


def _pg_url(database: str, **params: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0] + "/" + database
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{base}?{query}" if query else base


def _run(coro):
    return asyncio.run(coro)


async def _pg_reachable() -> str | None:
    try:
        conn = await asyncpg.connect(PG_ADMIN.replace("postgres://", "postgresql://", 1), timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


def as_production(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production's settings with what production requires: a key, a public address, and SQLite allowed
    (the SQLite half runs these tests too)."""
    from billing.core.credentials import new_key

    monkeypatch.setenv("WHITEBILL_ENV", "production")
    monkeypatch.setenv("WHITEBILL_SECRET_KEY", new_key())
    monkeypatch.setenv("WHITEBILL_PUBLIC_URL", "https://billing.example")
    monkeypatch.setenv("WHITEBILL_ALLOW_SQLITE_IN_PRODUCTION", "1")


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "whitebill.sqlite3"
        url = f"sqlite://{path}"
        _run(db.migrate(url, quiet=True))
        yield Backend("sqlite", url)
        return
    problem = _run(_pg_reachable())
    if problem:
        message = f"PostgreSQL at {PG_ADMIN} is unreachable ({problem})"
        if REQUIRE_PG:
            pytest.fail(f"{message}, and WHITEBILL_REQUIRE_POSTGRES is set", pytrace=False)
        _pg_skipped.append(message)
        pytest.skip(message)
    name = f"whitebill_test_{secrets.token_hex(4)}"
    url = _pg_url(name, minsize="1", maxsize="20")
    if request.config.getoption("via_pgbouncer"):
        # Everything goes through pgbouncer in transaction mode as WHITEBILL_PGBOUNCER=1 has it, the
        # database's creation and migrations included: no statement cache, and LISTEN straight to PostgreSQL.
        bouncer: pgbouncer_harness.PgBouncer = request.getfixturevalue("pgbouncer")
        bounced = bouncer.url(name, minsize="1", maxsize="20", statement_cache_size="0")
        _run(db.migrate(bounced, quiet=True))
        yield Backend("postgres", bounced, url)
    else:
        _run(db.migrate(url, quiet=True))
        yield Backend("postgres", url)

    async def drop() -> None:
        conn = await asyncpg.connect(PG_ADMIN.replace("postgres://", "postgresql://", 1))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    _run(drop())


_TABLES_SQL = {
    "postgres": "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'",
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
}
_KEEP = {"tortoise_migrations"}


_rate_cards_made = 0


# A connection of this database other than the wipe's, in a transaction for longer than this, is stuck.
_STUCK = (
    "SELECT pid, state, wait_event, (now() - xact_start)::text AS age, left(query, 300) AS query"
    " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    " AND xact_start < now() - interval '5 seconds'"
)


async def _truncate(conn: Any, tables: list[str]) -> None:
    """TRUNCATE every table, waiting at most 5 seconds at a time for its locks. Between tests no connection
    should be in a transaction: one that is (a server process's connection left mid-statement when a
    websocket operation was cancelled, seen once in the browser tests) would hold the wipe, and the whole
    run, for ever. It is ended, and the test session warns, naming its statement."""
    statement = "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
    for attempt in range(3):
        try:
            async with in_transaction("default") as tx:
                await tx.execute_script("SET LOCAL lock_timeout = '5s'")
                await tx.execute_script(statement)
            return
        except Exception as error:
            if "lock timeout" not in str(error) or attempt == 2:
                raise
        for row in await conn.execute_query_dict(_STUCK):
            warnings.warn(
                f"a connection in a transaction for {row['age']} ({row['state']}, {row['wait_event']}) held the"
                f" wipe: ended. Its statement: {row['query']}",
                stacklevel=1,
            )
            await conn.execute_query("SELECT pg_terminate_backend($1)", [row["pid"]])


async def _wipe(backend: Backend) -> None:
    rate_cards.forget_cached()  # ids and versions start again: a cached card would be another's
    conn = Tortoise.get_connection("default")
    tables = [r["name"] for r in await conn.execute_query_dict(_TABLES_SQL[backend.name])]
    tables = [t for t in tables if t not in _KEEP and "migration" not in t]
    if backend.is_postgres:
        await _truncate(conn, tables)
        # Rate cards are cached by id and version in the server processes, which outlive a wipe: their ids go
        # on across the session, as SQLite's AUTOINCREMENT does, so a new card never passes for an old one.
        global _rate_cards_made
        _rate_cards_made += 1000
        await conn.execute_script(f"SELECT setval(pg_get_serial_sequence('rate_card', 'id'), {_rate_cards_made})")
    else:
        await conn.execute_script(
            "PRAGMA foreign_keys = OFF;" + "".join(f'DELETE FROM "{t}";' for t in tables) + "PRAGMA foreign_keys = ON;"
        )


@pytest.fixture(autouse=True)
def domain_config() -> None:
    """The domain configured from this process's environment before each test, as a process does at
    start-up. A test that changes the environment (monkeypatch.setenv) configures it again:
    ``configure_domain(load_settings())``."""
    configure_domain(load_settings())


# Logged by schema.mutations when a typed error names a field its mutation's input does not have.
MISNAMED_FIELD = "which is not a field of its input"


class _Misnamed(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if MISNAMED_FIELD in record.getMessage():
            self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
def error_fields_name_the_input() -> Iterator[None]:
    """Every typed error a test provokes in this process names a path inside its mutation's input."""
    handler = _Misnamed()
    logger = logging.getLogger("whitebill.errors")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    assert not handler.messages, handler.messages


@pytest.fixture
async def database(backend: Backend) -> AsyncIterator[Backend]:
    """A connected, migrated, empty database of the test's backend."""
    # Tortoise caches INSERT statements per connection name: switching backends must forget them.
    executor.EXECUTOR_CACHE.clear()
    await db.connect(backend.url)
    await _wipe(backend)
    clock.use_shared_offset(True)
    await clock.reset()
    await ratelimit.reset()
    try:
        yield backend
    finally:
        await clock.reset()
        clock.use_shared_offset(False)
        await Tortoise.close_connections()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def ledgerpay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Install the third-party LedgerPay gateway from its own package, as an operator would, into a
    directory on the path of this process and of every server it starts. No core file names it."""
    target = tmp_path_factory.mktemp("plugins")
    source = shutil.copytree(PLUGIN_SOURCE, tmp_path_factory.mktemp("plugin-source") / PLUGIN_SOURCE.name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(target))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))
    os.environ["LEDGERPAY_STATE"] = str(target / "ledgerpay-state.json")
    registry.refresh()
    return target


@pytest.fixture(scope="session")
def providers(ledgerpay: Path, localstripe: LocalStripe, fake_asaas: FakeAsaasController) -> Iterator[None]:  # noqa: F811
    """Every provider the servers may call, on 127.0.0.1: LedgerPay (installed), localstripe, the fake
    Asaas. Servers started after this reach them; provider calls time out after 3 seconds."""
    os.environ["WHITEBILL_STRIPE_API_BASE"] = localstripe.url
    os.environ["WHITEBILL_ASAAS_API_BASE"] = fake_asaas.url
    os.environ["WHITEBILL_GATEWAY_TIMEOUT_SECONDS"] = "3"
    yield


@contextlib.contextmanager
def serving(
    backend: Backend, log_path: Path, *, args: tuple[str, ...] = (), extra_env: dict[str, str] | None = None
) -> Iterator[Server]:
    """A real uvicorn process serving the app on 127.0.0.1 against the backend's database
    (``args`` after ``whitebill serve``, ``extra_env`` on top of the test environment)."""
    port = _free_port()
    env = dict(
        os.environ,
        DATABASE_URL=backend.url,
        PORT=str(port),
        WHITEBILL_ENV="test",
        WHITEBILL_TEST_CLOCK="1",
        # Every test request comes from 127.0.0.1 and the isolation probes sign in and ask for resets
        # many times a minute: limits would make the suite flaky. Their behaviour is tested in-process.
        WHITEBILL_LOGIN_LIMIT_PER_ADDRESS="100000/minute",
        WHITEBILL_RESET_LIMIT_PER_ADDRESS="100000/minute",
        WHITEBILL_LOGIN_LIMIT_PER_EMAIL="100000/minute",
        WHITEBILL_RESET_LIMIT_PER_EMAIL="100000/minute",
        **backend.pgbouncer_env,
        **(extra_env or {}),
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "whitebill.cli", "serve", *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"server did not start:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.1)
    try:
        yield Server(url, process, log_path)
    finally:
        stop(process)


@pytest.fixture(scope="session")
def server(backend: Backend, providers: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real uvicorn process serving the app on 127.0.0.1 against the backend's database."""
    with serving(backend, tmp_path_factory.mktemp("server") / f"{backend.name}.log") as started:
        yield started
    misnamed = [line for line in started.log_path.read_text(errors="replace").splitlines() if MISNAMED_FIELD in line]
    assert not misnamed, misnamed


@pytest.fixture(scope="session")
def pgbouncer() -> Iterator[pgbouncer_harness.PgBouncer]:
    """pgbouncer in transaction mode in front of the test PostgreSQL (tests/pgbouncer.py). Not installed:
    skipped with a notice, or failing the run when WHITEBILL_REQUIRE_POSTGRES=true (CI)."""
    if pgbouncer_harness.binary() is None:
        if REQUIRE_PG:
            pytest.fail(f"{pgbouncer_harness.MISSING}, and WHITEBILL_REQUIRE_POSTGRES is set", pytrace=False)
        _pgbouncer_skipped.append(pgbouncer_harness.MISSING)
        pytest.skip(pgbouncer_harness.MISSING)
    with pgbouncer_harness.running(PG_ADMIN) as bouncer:
        yield bouncer


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--via-pgbouncer",
        action="store_true",
        help="the PostgreSQL tests' traffic goes through pgbouncer in transaction mode (tests/pgbouncer.py),"
        " as WHITEBILL_PGBOUNCER=1 runs whitebill",
    )
    parser.addoption(
        "--backend",
        choices=("sqlite", "postgres"),
        default=None,
        help="run one half only: the SQLite half with the tests of neither backend, or the PostgreSQL half"
        " (`make test` runs the two side by side)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    half = config.getoption("backend")
    if half is None:
        return
    kept, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        (kept if params.get("backend", "sqlite") == half else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests import browser

    if browser.skipped:
        terminalreporter.write_sep("!", "browser tests SKIPPED", red=True, bold=True)
        terminalreporter.write_line(browser.skipped[0])
        terminalreporter.write_line("Install Debian's chromium and run `make web` to run them (CI fails without).")
    if _pg_skipped:
        terminalreporter.write_sep("!", "PostgreSQL half SKIPPED", red=True, bold=True)
        terminalreporter.write_line(_pg_skipped[0])
        terminalreporter.write_line("Only the SQLite half ran. Start PostgreSQL (see README) to run both.")
    if _pgbouncer_skipped:
        terminalreporter.write_sep("!", "pgbouncer tests SKIPPED", red=True, bold=True)
        terminalreporter.write_line(_pgbouncer_skipped[0])
