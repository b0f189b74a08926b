"""Schema extensions of our own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from graphql import ExecutionResult, GraphQLError
from strawberry.extensions import ParserCache, SchemaExtension
from strawberry.types.graphql import OperationType

from billing.core import sql
from billing.core.errors import BillingError, ErrorCode
from schema.context import Loaders


class OneConnectionPerQuery(SchemaExtension):
    """On PostgreSQL, a query runs all its statements on one pooled connection (one read
    transaction) instead of taking and resetting a connection for each statement. Mutations open
    their own transactions. SQLite has a single connection anyway, and a long transaction there
    would serialise every request, so it is left alone."""

    async def on_execute(self) -> AsyncIterator[None]:  # type: ignore[override]
        if self.execution_context.operation_type is not OperationType.QUERY or not sql.is_postgres():
            yield
            return
        async with sql.read_transaction():
            yield


class ParseOnce(ParserCache):
    """Strawberry's ParserCache, except that a document that does not parse is left for strawberry to
    parse again and report. The cache parses before strawberry's own error handling starts: over a
    websocket its error would escape and end the operation without a word (HTTP catches it)."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        try:
            context.graphql_document = self.cached_parse_document(context.query, **context.parse_options)
        except GraphQLError:
            pass  # strawberry parses it again and answers with the syntax error
        yield


class SubscriptionsOverWebsockets(SchemaExtension):
    """A subscription sent over HTTP is refused (strawberry would run it as a query, which fails):
    subscriptions travel over graphql-transport-ws, whose connection_init gives the context its
    ``connection_params``."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        if (
            context.operation_type is OperationType.SUBSCRIPTION
            and getattr(context.context, "connection_params", None) is None
        ):
            refused = BillingError(
                ErrorCode.INVALID_INPUT, "subscriptions are served over a websocket (graphql-transport-ws on /graphql)"
            )
            context.result = ExecutionResult(data=None, errors=[GraphQLError(refused.message, original_error=refused)])
        yield


class FreshLoadersOnWebsockets(SchemaExtension):
    """Every operation sent on a websocket shares the connection's context: each starts with empty
    DataLoaders, or it would be answered from what an earlier one cached."""

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context.context
        if getattr(context, "connection_params", None) is not None:
            context.loaders = Loaders()
        yield
