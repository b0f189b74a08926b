"""Opening the database for a command: a database it cannot reach, or one not migrated yet, is a problem
with the set-up, told in one line (exit code 2, ``whitebill.cli.main``), never a traceback from the first
statement that happens to touch it."""

from __future__ import annotations

import asyncio

from tortoise import Tortoise
from tortoise.exceptions import DBConnectionError

from whitebill import db
from whitebill.settings import Settings, SettingsError


class NotMigrated(SettingsError):
    """The database lacks migrations this release needs."""


def unreachable(error: BaseException) -> SettingsError | None:
    """``error`` as a problem with DATABASE_URL when it says the database cannot be reached or refused
    us (no server there, a wrong password, a database that does not exist); None for anything else."""
    if not isinstance(error, (OSError, TimeoutError, DBConnectionError)) and not type(error).__module__.startswith(
        "asyncpg"
    ):
        return None
    reason = str(error).splitlines()[0] if str(error) else "no answer"
    return SettingsError(
        [
            f"DATABASE_URL: cannot use the database ({type(error).__name__}: {reason}): "
            "check its host, port, user, password and database name"
        ]
    )


async def pending(settings: Settings) -> list[str]:
    """The migrations this release has that the database (connected) has not applied."""
    return await db.pending_migrations(settings.database_url)


async def connect(settings: Settings, *, migrated: bool = True) -> None:
    """Connect this process to the database, checking that it answers and (``migrated``) that every
    migration is applied: NotMigrated or SettingsError otherwise, the connection closed."""
    try:
        await db.connect(settings.database_url)
        # A statement first: reading which migrations are applied takes a failure to connect for "none".
        await asyncio.wait_for(Tortoise.get_connection("default").execute_query("SELECT 1"), timeout=30)
        missing = await asyncio.wait_for(pending(settings), timeout=30) if migrated else []
    except Exception as error:
        await Tortoise.close_connections()
        problem = unreachable(error)
        if problem is None:
            raise
        raise problem from error
    if missing:
        await Tortoise.close_connections()
        raise NotMigrated(
            [
                f"the database has {len(missing)} unapplied migration(s) ({_listed(missing)}): "
                "run `whitebill migrate` first"
            ]
        )


def _listed(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 3 else f"{names[0]} … {names[-1]}"
