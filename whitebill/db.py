"""Database configuration and lifecycle shared by the server, the worker, the CLI and the tests."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tortoise import Tortoise
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.connection import get_connection
from tortoise.context import TortoiseContext
from tortoise.migrations.api import migrate as migrate_api
from tortoise.migrations.executor import MigrationExecutor

from billing import dispatch
from models import MODEL_MODULES

APP_LABEL = "models"
MIGRATIONS_MODULE = "models.migrations"


def normalise_url(url: str) -> str:
    for alias in ("postgresql://", "asyncpg://"):
        if url.startswith(alias):
            return "postgres://" + url[len(alias) :]
    if url.startswith("sqlite://") and "busy_timeout" not in url:
        # Wait for a lock held by another process (a worker, a test) instead of failing at once.
        return url + ("&" if "?" in url else "?") + "busy_timeout=10000"
    return url


async def _release_as_is(connection: Any) -> None:
    """What the pool does to a connection handed back, after asyncpg has rolled back a transaction left
    open: nothing more. asyncpg's default also resets session state (settings, LISTENs, cursors,
    advisory locks) in one more round trip per release; whitebill never leaves any on a pooled connection
    (its LISTEN has a dedicated connection, its settings and locks are transaction-scoped)."""


def _connection(database_url: str) -> str | dict[str, Any]:
    url = normalise_url(database_url)
    if not url.startswith("postgres://"):
        return url
    config = expand_db_url(url)
    config["credentials"]["reset"] = _release_as_is
    return config


def listen_options(database_url: str) -> dict[str, Any]:
    """How to reach the PostgreSQL server a URL names, for the connection that LISTENs
    (WHITEBILL_LISTEN_DATABASE_URL): its address, user, password, database and TLS; the URL's pool
    options are not for it."""
    credentials = expand_db_url(normalise_url(database_url))["credentials"]
    options = {key: credentials.get(key) for key in ("host", "port", "user", "password", "database")}
    options["ssl"] = credentials.get("ssl")
    return options


def tortoise_config(database_url: str) -> dict[str, Any]:
    return {
        "connections": {"default": _connection(database_url)},
        "apps": {
            APP_LABEL: {
                "models": list(MODEL_MODULES),
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


async def connect(database_url: str) -> None:
    """Connect this process to the database, the domain's dispatch tables installed with it."""
    dispatch.install()
    await Tortoise.init(config=tortoise_config(database_url), _enable_global_fallback=True)


async def pending_migrations(database_url: str) -> list[str]:
    """Names of migrations not yet applied to the database Tortoise is connected to."""
    config = tortoise_config(database_url)
    executor = MigrationExecutor(get_connection("default"), {APP_LABEL: config["apps"][APP_LABEL]})
    steps = await executor.plan(None)
    return [f"{s.migration.app_label}.{s.migration.name}" for s in steps if not s.backward]


TLS_PARAMETERS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "sslcrl")


def direct_url(url: str, path: str) -> str:
    """``url`` (postgres://) as asyncpg connects to it by itself, to the database at ``path``: the pool's
    own parameters (minsize, statement_cache_size...) left out, its TLS ones kept, so that a connection made
    outside the pool is as private as the pool's."""
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query) if k in TLS_PARAMETERS]
    return urlunsplit(("postgresql", parts.netloc, path, urlencode(kept), ""))


async def create_database_if_missing(database_url: str) -> None:
    """PostgreSQL only: create the named database so a fresh install needs no manual step."""
    url = normalise_url(database_url)
    if not url.startswith("postgres://"):
        return
    import asyncpg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    # A database that exists is not looked for in the server's list: through pgbouncer, the list's database
    # (postgres) may not be one pgbouncer serves. No named statements either: through pgbouncer in
    # transaction mode, another client's may hold the name.
    try:
        target = await asyncpg.connect(direct_url(url, parts.path))
    except (asyncpg.InvalidCatalogNameError, asyncpg.ProtocolViolationError):  # pgbouncer says the latter
        pass
    else:
        await target.close()
        return
    admin = direct_url(url, "/postgres")
    conn = await asyncpg.connect(admin, statement_cache_size=0)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def migrate(database_url: str, *, quiet: bool = False, upto: str | None = None) -> list[str]:
    """Apply every pending migration, or those up to and including ``upto`` (a migration's name, e.g.
    "0011_reset_tokens_off_the_outbox": how a test builds a database as an older release left it);
    returns the names applied."""
    await create_database_if_missing(database_url)
    applied: list[str] = []

    def progress(event: str, app_label: str, name: str) -> None:
        if event == "apply_done":
            applied.append(f"{app_label}.{name}")
            if not quiet:
                print(f"applied {app_label}.{name}")

    async with TortoiseContext() as ctx:
        await ctx.init(config=tortoise_config(database_url))
        target = f"{APP_LABEL}.{upto}" if upto else None
        await migrate_api(config=tortoise_config(database_url), target=target, progress=progress)
    return applied
