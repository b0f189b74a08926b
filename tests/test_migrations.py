"""Migrations applied to a database as an older release left it, with rows in it, on SQLite and on
PostgreSQL: the schema change goes through and the rows come out as the new code reads them."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from tortoise.backends.base import executor
from tortoise.context import TortoiseContext

from billing.core import audit, clock, sql
from models.catalog import AddOn
from models.enums import AddOnState
from models.subscriptions import WorkspaceAddOn
from tests.factories import a_partner, a_workspace
from whitebill import db


@pytest.fixture
def fresh_url(backend, tmp_path) -> Iterator[str]:
    """An empty database of the test's backend, not migrated (dropped afterwards on PostgreSQL)."""
    if not backend.is_postgres:
        yield f"sqlite://{tmp_path / 'older.sqlite3'}"
        return
    name = f"whitebill_test_{secrets.token_hex(4)}_older"
    parts = urlsplit(backend.url)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    admin = urlunsplit(("postgresql", parts.netloc, "/postgres", "", ""))

    async def drop() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


async def _connected(url: str, act: Callable[[], Awaitable[None]]) -> None:
    # Tortoise caches INSERT statements per connection name: another backend's must be forgotten.
    executor.EXECUTOR_CACHE.clear()
    async with TortoiseContext() as ctx:
        await ctx.init(config=db.tortoise_config(url))
        await act()


def _upgrade(url: str, older: str, fill: Callable[[], Awaitable[None]]) -> list[str]:
    """Migrate ``url`` up to ``older``, let ``fill`` write rows as that release would, then migrate
    to the newest; returns the migrations the second step applied."""

    async def run() -> list[str]:
        await db.migrate(url, quiet=True, upto=older)
        await _connected(url, fill)
        return await db.migrate(url, quiet=True)

    return asyncio.run(run())


def _read(url: str, read: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(_connected(url, read))


def test_0012_applies_on_a_database_at_0011_and_tells_lapsed_add_ons_from_removed_ones(fresh_url: str) -> None:
    """At 0011 a lapsed add-on and a removed one were the same row (inactive, quantity 0); the lapse
    had written its add_on.lapsed event. After 0012 the lapsed one reads LAPSED since its latest
    lapse, the removed one REMOVED, the held one ACTIVE; neither of the last two has a lapse date."""
    lapse = clock.now() - timedelta(days=3)
    ids: dict[str, int] = {}

    async def at_0011() -> None:
        partner = await a_partner()
        workspace = await a_workspace(partner)
        for name, quantity, active in (("lapsed", 0, False), ("removed", 0, False), ("held", 2, True)):
            add_on = await AddOn.create(partner_id=partner.id, name=name, currency="BRL", points_cost=10)
            await sql.execute(
                "INSERT INTO workspace_add_on (created_at, partner_id, workspace_id, add_on_id, quantity, active,"
                " paid_through) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                clock.now(),
                partner.id,
                workspace.id,
                add_on.id,
                quantity,
                active,
                lapse,
            )
            ids[name] = add_on.id
        for when in (lapse - timedelta(days=30), lapse):  # lapsed twice: the latest counts
            await audit.emit(
                "add_on.lapsed",
                partner.id,
                {"workspace_id": workspace.id, "add_on_id": ids["lapsed"], "points_needed": 10},
            )
            await sql.execute("UPDATE outbox_event SET run_at = $1 WHERE id = (SELECT MAX(id) FROM outbox_event)", when)

    assert _upgrade(fresh_url, "0011_reset_tokens_off_the_outbox", at_0011) == ["models.0012_add_on_lapsed_at"]

    async def after() -> None:
        rows = {row.add_on_id: row for row in await WorkspaceAddOn.all()}
        lapsed, removed, held = (rows[ids[name]] for name in ("lapsed", "removed", "held"))
        assert (lapsed.state, lapsed.lapsed_at, lapsed.quantity) == (AddOnState.LAPSED, lapse, 0)
        assert (removed.state, removed.lapsed_at, removed.quantity) == (AddOnState.REMOVED, None, 0)
        assert (held.state, held.lapsed_at, held.quantity) == (AddOnState.ACTIVE, None, 2)
        assert held.paid_through == lapse  # the rest of the row as it was

    _read(fresh_url, after)
