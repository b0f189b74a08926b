"""Schema extensions of our own."""

from __future__ import annotations

from collections.abc import AsyncIterator

from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType
from tortoise.transactions import in_transaction

from billing import sql


class OneConnectionPerQuery(SchemaExtension):
    """On PostgreSQL, a query runs all its statements on one pooled connection (one read
    transaction) instead of taking and resetting a connection for each statement. Mutations open
    their own transactions. SQLite has a single connection anyway, and a long transaction there
    would serialise every request, so it is left alone."""

    async def on_execute(self) -> AsyncIterator[None]:  # type: ignore[override]
        if self.execution_context.operation_type is not OperationType.QUERY or not sql.is_postgres():
            yield
            return
        async with in_transaction("default"):
            yield
