"""Typed errors in mutation payloads, and the shape of errors in the response's errors list."""

from __future__ import annotations

import logging
import re

import strawberry
from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.extensions import MaskErrors

from billing.core.audit import request_id
from billing.core.errors import BillingError
from billing.core.errors import ErrorCode as DomainErrorCode

log = logging.getLogger("whitebill.errors")

ErrorCode = strawberry.enum(DomainErrorCode, name="ErrorCode", description="Why an operation was refused.")


@strawberry.type(description="An expected failure: what was wrong and with which input field.")
class UserError:
    code: ErrorCode
    message: str
    field: str | None = None

    @classmethod
    def of(cls, error: BillingError) -> UserError:
        return cls(code=error.code, message=error.message, field=error.field)


def _domain_error(error: GraphQLError) -> BillingError | None:
    original = error.original_error
    while isinstance(original, GraphQLError) and original.original_error is not None:
        original = original.original_error
    return original if isinstance(original, BillingError) else None


def _bad_variable(error: GraphQLError) -> bool:
    """A variable's value the schema could not take (``"one"`` for an Int): graphql-core reports it before
    anything runs (no path), wrapping the scalar's own GraphQLError, not an exception of ours."""
    original = error.original_error
    while isinstance(original, GraphQLError):
        if original.original_error is None:
            return error.path is None
        original = original.original_error
    return False


# graphql-core's parser stops at the token limit with this message (graphql.language.parser).
_TOKEN_LIMIT = re.compile(r"Syntax Error: Document contains more than \d+ tokens\b")


def _request_error_code(error: GraphQLError) -> str:
    """The code of a parse or validation error that names none: the token limit is a limit like
    depth and aliases; anything else is a document that is not a valid query."""
    code = (error.extensions or {}).get("code")
    if isinstance(code, str):
        return code
    if isinstance(error, GraphQLSyntaxError) and _TOKEN_LIMIT.match(error.message):
        return DomainErrorCode.QUERY_TOO_COMPLEX.value
    return DomainErrorCode.INVALID_QUERY.value


class ShapeErrors(MaskErrors):
    """Expected failures keep their message and gain ``extensions.code``; parse and validation errors
    keep their message and gain a code if they have none; anything else is masked, and carries the
    request id under which it was logged."""

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        shaped: list[GraphQLError] = []
        for error in errors:
            domain = _domain_error(error)
            if domain is not None:
                extensions = {"code": domain.code.value}
                if domain.field:
                    extensions["field"] = domain.field
                shaped.append(GraphQLError(domain.message, nodes=error.nodes, path=error.path, extensions=extensions))
            elif _bad_variable(error):
                shaped.append(
                    GraphQLError(
                        error.message, nodes=error.nodes, extensions={"code": DomainErrorCode.INVALID_INPUT.value}
                    )
                )
            elif error.original_error is None:
                code = _request_error_code(error)
                if (error.extensions or {}).get("code") != code:
                    error.extensions = {**(error.extensions or {}), "code": code}
                shaped.append(error)
            else:
                shaped.append(
                    GraphQLError(
                        "Unexpected error.",
                        nodes=error.nodes,
                        path=error.path,
                        extensions={"code": "INTERNAL_ERROR", "requestId": request_id.get()},
                    )
                )
        return shaped


def log_unexpected(errors: list[GraphQLError]) -> None:
    for error in errors:
        if error.original_error is not None and _domain_error(error) is None and not _bad_variable(error):
            log.error("unexpected error in %s", error.path, exc_info=error.original_error)
