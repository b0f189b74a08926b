"""The suite's own hygiene: a connection left in a transaction (a server's, say) cannot hold the wipe between
tests, and the whole run with it, for ever."""

from __future__ import annotations

import asyncpg
import pytest

from models.tenancy import Workspace
from tests.conftest import _wipe
from tests.factories import a_partner, a_workspace


async def test_a_connection_stuck_in_a_transaction_is_ended_with_a_warning_and_the_wipe_goes_on(database) -> None:
    if not database.is_postgres:
        pytest.skip("SQLite has one connection: none can be stuck beside the wipe's")
    await a_workspace(await a_partner())
    stuck = await asyncpg.connect(database.url.split("?")[0].replace("postgres://", "postgresql://", 1))
    try:
        await stuck.execute("BEGIN")
        await stuck.fetch("SELECT * FROM workspace")  # holds a lock the TRUNCATE waits for
        with pytest.warns(UserWarning, match="held the wipe"):
            await _wipe(database)
        assert await Workspace.all().count() == 0
        ended = (
            asyncpg.exceptions.InterfaceError,
            asyncpg.exceptions.AdminShutdownError,
            asyncpg.exceptions.ConnectionDoesNotExistError,
        )
        with pytest.raises(ended):  # the server ended it
            await stuck.fetch("SELECT 1")
    finally:
        await stuck.close()
