"""The GraphQL schema, assembled: each domain's Query, Mutation and live-update parts merged into one
root each (resolvers/<domain>), with the request limits and the extensions every operation runs."""

from __future__ import annotations

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from billing.core.errors import ErrorCode
from resolvers import accounts, auto_billing, catalog, documents, live, outbox, sales, subscriptions, tenants, usage
from schema.errors import ShapeErrors, log_unexpected
from schema.execution import lean_resolvers
from schema.extensions import (
    FreshLoadersOnWebsockets,
    OneConnectionPerQuery,
    ParseOnce,
    SubscriptionsOverWebsockets,
)
from schema.limits import LimitRules, StorableStrings, coded, cost_rule
from schema.live import LeanExtensionsRunner, SharedEvents
from schema.relay import DEFAULT_PAGE, MAX_PAGE
from schema.tenants.types import Partner, Workspace

DOMAINS = (tenants, catalog, subscriptions, accounts, sales, documents, usage, auto_billing, outbox)

Query = merge_types("Query", tuple(d.Query for d in DOMAINS if hasattr(d, "Query")))
Mutation = merge_types("Mutation", tuple(d.Mutation for d in DOMAINS if hasattr(d, "Mutation")))
LiveUpdates = live.LiveUpdates

MAX_DEPTH = 12
MAX_TOKENS = 2000
MAX_ALIASES = 30
MAX_COST = 50_000


VALIDATION_RULES = [
    *(coded(rule, ErrorCode.QUERY_TOO_COMPLEX) for rule in QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules),
    *(coded(rule, ErrorCode.QUERY_TOO_COMPLEX) for rule in MaxAliasesLimiter(MAX_ALIASES).validation_rules),
    cost_rule(MAX_COST, MAX_PAGE, DEFAULT_PAGE),
    StorableStrings,
]


class WhitebillSchema(strawberry.Schema):
    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> SchemaExtensionsRunner:
        return LeanExtensionsRunner(execution_context, extensions)

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        # Expected failures are not logged as errors; unexpected ones are, with the request id.
        log_unexpected(errors)


def build_schema() -> strawberry.Schema:
    built = WhitebillSchema(
        query=Query,
        mutation=Mutation,
        subscription=LiveUpdates,
        types=[Partner, Workspace],
        config=StrawberryConfig(relay_max_results=MAX_PAGE),
        execution_context_class=SharedEvents,  # a live update executed once for its subscribers alike
        extensions=[
            lambda: ParseOnce(maxsize=512),
            lambda: ValidationCache(maxsize=512),
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
            # The same rule classes for every request: ValidationCache keys on them.
            lambda: LimitRules(VALIDATION_RULES),
            ShapeErrors,
            OneConnectionPerQuery,
            SubscriptionsOverWebsockets,
            FreshLoadersOnWebsockets,
        ],
    )
    lean_resolvers(built)  # a page's object fields called directly by graphql-core (schema/execution.py)
    return built


schema = build_schema()
