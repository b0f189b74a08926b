"""Raw SQL for the few hot statements the ORM cannot express in one round trip.

Statements are written once with PostgreSQL's ``$n`` placeholders; SQLite runs them as ``?n``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import asyncpg
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.connection import get_connection
from tortoise.exceptions import IntegrityError, OperationalError

_PLACEHOLDER = re.compile(r"\$(\d+)")


def connection() -> BaseDBAsyncClient:
    """The current connection: the open transaction's if there is one."""
    return get_connection("default")


def is_postgres(conn: BaseDBAsyncClient | None = None) -> bool:
    return (conn or connection()).capabilities.dialect == "postgres"


def _adapt(conn: BaseDBAsyncClient, sql: str, params: list[Any]) -> tuple[str, list[Any]]:
    if is_postgres(conn):
        return sql, params
    # SQLite keeps datetimes as ISO text, the way the ORM writes them.
    return _PLACEHOLDER.sub(r"?\1", sql), [_sqlite_time(p) if isinstance(p, datetime) else p for p in params]


async def fetch(sql: str, *params: Any, conn: BaseDBAsyncClient | None = None) -> list[dict[str, Any]]:
    """Run one statement and return its rows (RETURNING rows included)."""
    client = conn or connection()
    text, values = _adapt(client, sql, list(params))
    return await client.execute_query_dict(text, values)


async def execute(sql: str, *params: Any, conn: BaseDBAsyncClient | None = None) -> int:
    """Run one statement and return the number of rows it changed."""
    client = conn or connection()
    text, values = _adapt(client, sql, list(params))
    if is_postgres(client):
        # Tortoise reads the count from the command tag's second word, which for INSERT is the
        # OID ("INSERT 0 1"): read the last word ourselves.
        try:
            async with client.acquire_connection() as raw:
                tag = await raw.execute(text, *values)
        except asyncpg.IntegrityConstraintViolationError as error:
            raise IntegrityError(error) from error
        except asyncpg.PostgresError as error:
            raise OperationalError(error) from error
        return int(tag.rsplit(" ", 1)[-1]) if tag and tag.rsplit(" ", 1)[-1].isdigit() else 0
    count, _ = await client.execute_query(text, values)
    return count


def _sqlite_time(value: datetime) -> str:
    # Always six fractional digits, so that text comparison orders times correctly.
    return value.isoformat(" ", timespec="microseconds")
