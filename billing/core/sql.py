"""Raw SQL for the few hot statements the ORM cannot express in one round trip.

Statements are written once with PostgreSQL's ``$n`` placeholders; SQLite runs them as ``?n``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, TypeVar

import asyncpg
from tortoise.backends.base.client import BaseDBAsyncClient, TransactionalDBClient
from tortoise.connection import get_connection, get_connections
from tortoise.exceptions import IntegrityError, OperationalError
from tortoise.models import Model
from tortoise.transactions import in_transaction as tortoise_transaction

_PLACEHOLDER = re.compile(r"\$(\d+)")
M = TypeVar("M", bound=Model)


def connection() -> BaseDBAsyncClient:
    """The current connection: the open transaction's if there is one."""
    return get_connection("default")


def in_transaction(conn: BaseDBAsyncClient | None = None) -> bool:
    """Whether statements run inside an open transaction (``tortoise.transactions.in_transaction``)."""
    return isinstance(conn or connection(), TransactionalDBClient)


@contextlib.asynccontextmanager
async def read_transaction() -> AsyncIterator[None]:
    """One pooled connection and one transaction for a block of reads, given back to the pool
    whatever happens, cancellation included.

    Tortoise's ``in_transaction`` keeps its connection for good when it is cancelled during its
    BEGIN (its exit never runs), and cannot roll back while another task still has a statement on
    the connection (a DataLoader's batch, which a cancelled operation does not wait for). A
    websocket operation is cancelled whenever its client goes away, so both happen: each time, one
    connection of the pool was lost, mid-transaction, until none was left. Here, when anything but
    a clean end leaves the block, the connection is closed instead of rolled back. Closing needs no
    round trip, so a second cancellation cannot interrupt it; PostgreSQL rolls the transaction
    back, and the pool opens a fresh connection when it next needs one."""
    context = tortoise_transaction("default")
    try:
        await context.__aenter__()
    except BaseException:
        _abandon(context)
        raise
    try:
        yield
    except BaseException:
        _abandon(context)
        raise
    try:
        await context.__aexit__(None, None, None)
    except BaseException:
        _abandon(context)
        raise


def _abandon(context: Any) -> None:
    """Close the transaction's connection, which gives its slot back to the pool, and forget it."""
    client = getattr(context, "client", None)
    pooled = getattr(client, "_connection", None)
    if pooled is not None:
        with contextlib.suppress(asyncpg.InterfaceError):  # already given back
            pooled.terminate()
    token = getattr(context, "token", None)
    if token is not None:
        with contextlib.suppress(ValueError):  # already reset
            get_connections().reset(token)


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


class PlainRow(SimpleNamespace):
    """A row read without the ORM: its columns as attributes, each converted as the model's field converts
    it (what Tortoise's ``_init_from_db`` does), with no model behind it: for read paths only."""

    def __repr__(self) -> str:  # like a model's: its id, never its other columns (e-mails, tax ids...)
        return f"<PlainRow: {getattr(self, 'id', '?')}>"


def placeholders(values: Sequence[Any], first: int = 1) -> str:
    """``$first, $first+1, ...`` for an ``IN (...)`` of ``values`` (both databases take the list this way)."""
    return ", ".join(f"${n}" for n in range(first, first + len(values)))


async def plain_rows(model: type[M], query: str, *params: Any) -> list[M]:
    """The rows of ``model``'s table ``query`` selects (``SELECT *``, or aliases named as its columns), read
    as the model would read them, without building models: the ORM's query building and model objects
    cost more than the statement on a page's read path. Typed as the model for the read-only code that
    takes either (``Wallet.of``...)."""
    meta = model._meta
    native = [(key, name) for key, name, _ in meta.db_native_fields]
    default = [(key, name, field.field_type) for key, name, field in meta.db_default_fields]
    complex_ = [(key, name, field.to_python_value) for key, name, field in meta.db_complex_fields]
    found = []
    for row in await fetch(query, *params):
        values = {name: row[key] for key, name in native}
        for key, name, kind in default:
            value = row[key]
            values[name] = value if value is None else kind(value)
        for key, name, convert in complex_:
            values[name] = convert(row[key])
        found.append(PlainRow(**values))
    return found  # type: ignore[return-value]


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


Statement = tuple[str, Sequence[Any]]  # SQL text with $n placeholders, and its parameters


async def write_then_read(writes: Sequence[Statement], read: Statement) -> tuple[list[int], list[dict[str, Any]]]:
    """Run ``writes`` (INSERT/UPDATE/DELETE without RETURNING) and then ``read`` (a SELECT), and return
    the number of rows each write changed and the read's rows.

    On PostgreSQL this is one statement (data-modifying CTEs), so one round trip: what a transaction
    holding a hot row lock wants between its last change and its commit. Its parts share one snapshot,
    so ``read`` must not depend on ``writes``; placeholders are renumbered, so none may appear inside
    a string literal. SQLite runs them one after the other."""
    client = connection()
    if not is_postgres(client):
        counts = [await execute(text, *params, conn=client) for text, params in writes]
        return counts, await fetch(read[0], *read[1], conn=client)
    parts: list[str] = []
    values: list[Any] = []
    for n, (text, params) in enumerate(writes):
        parts.append(f"_w{n} AS ({_shift(text, len(values))} RETURNING 1)")
        values.extend(params)
    # Only our own statements and generated names are put together here, never a value.
    names = [f"_w{n}_rows" for n in range(len(writes))]
    columns = "".join(f"(SELECT count(*) FROM _w{n}) AS _w{n}_rows, " for n in range(len(writes)))  # noqa: S608
    text = (
        f"WITH {', '.join(parts)} SELECT {columns}r.* FROM (SELECT 1) AS _one LEFT JOIN LATERAL "  # noqa: S608
        f"(SELECT TRUE AS _found, q.* FROM ({_shift(read[0], len(values))}) AS q) AS r ON TRUE"
    )
    rows = await fetch(text, *values, *read[1], conn=client)
    hidden = {*names, "_found"}
    found = [{k: v for k, v in row.items() if k not in hidden} for row in rows if row["_found"]]
    return [int(rows[0][name]) for name in names], found


def _shift(text: str, offset: int) -> str:
    return _PLACEHOLDER.sub(lambda m: f"${int(m.group(1)) + offset}", text) if offset else text


def _sqlite_time(value: datetime) -> str:
    # Always six fractional digits, so that text comparison orders times correctly.
    return value.isoformat(" ", timespec="microseconds")


def as_datetime(value: datetime | str | None) -> datetime | None:
    """A time read by raw SQL: PostgreSQL gives a datetime, SQLite the ISO text the ORM wrote."""
    if value is None or isinstance(value, datetime):
        return value
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
