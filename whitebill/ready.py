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


# What says the database cannot be reached or refused us; anything else (a lock, a timeout inside a
# statement, a full disk) is not a settings problem and keeps its own message.
_REFUSALS = (
    "CannotConnectNowError",
    "ClientConfigurationError",
    "ConnectionDoesNotExistError",
    "InvalidAuthorizationSpecificationError",
    "InvalidCatalogNameError",
    "InvalidPasswordError",
    "TooManyConnectionsError",
)


def unreachable(error: BaseException) -> SettingsError | None:
    """``error`` as a problem with DATABASE_URL when it says the database cannot be reached or refused
    us (no server there, an unknown host, a wrong user or password, a database that does not exist, no
    connection left); None for anything else."""
    refused = type(error).__module__.startswith("asyncpg") and type(error).__name__ in _REFUSALS
    connecting = isinstance(error, OSError) and not isinstance(error, TimeoutError)  # a timeout may be a statement's
    if not (refused or connecting or isinstance(error, DBConnectionError)):
        return None
    reason = str(error).splitlines()[0] if str(error) else "no answer"
    return SettingsError(
        [
            f"DATABASE_URL: cannot use the database ({type(error).__name__}: {reason}): "
            "check its host, port, user, password and database name"
        ]
    )


async def ensure_migrated(settings: Settings) -> None:
    """NotMigrated unless the database (connected) has every migration this release has."""
    missing = await db.pending_migrations(settings.database_url)
    if missing:
        raise NotMigrated(
            [
                f"the database has {len(missing)} unapplied migration(s) ({_listed(missing)}): "
                "run `whitebill migrate` first"
            ]
        )


async def connect(settings: Settings, *, migrated: bool = True) -> None:
    """Connect this process to the database, checking that it answers and (``migrated``) that every
    migration is applied: NotMigrated or SettingsError otherwise, the connection closed."""
    try:
        await db.connect(settings.database_url)
        # A statement first: reading which migrations are applied takes a failure to connect for "none".
        try:
            await asyncio.wait_for(Tortoise.get_connection("default").execute_query("SELECT 1"), timeout=30)
        except TimeoutError:
            raise SettingsError(
                ["DATABASE_URL: the database did not answer within 30 s: check its host and port"]
            ) from None
        if migrated:
            await ensure_migrated(settings)
    except Exception as error:
        await Tortoise.close_connections()
        problem = unreachable(error)
        if problem is None:
            raise
        raise problem from error


def _listed(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 3 else f"{names[0]} … {names[-1]}"
