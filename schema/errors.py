"""Typed errors in mutation payloads, and the shape of errors in the response's errors list."""

from __future__ import annotations

import logging

import strawberry
from graphql import GraphQLError
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


class ShapeErrors(MaskErrors):
    """Expected failures keep their message and gain ``extensions.code``; parse and validation errors
    pass as they are; anything else is masked, and carries the request id under which it was logged."""

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        shaped: list[GraphQLError] = []
        for error in errors:
            domain = _domain_error(error)
            if domain is not None:
                extensions = {"code": domain.code.value}
                if domain.field:
                    extensions["field"] = domain.field
                shaped.append(GraphQLError(domain.message, nodes=error.nodes, path=error.path, extensions=extensions))
            elif error.original_error is None:
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
        if error.original_error is not None and _domain_error(error) is None:
            log.error("unexpected error in %s", error.path, exc_info=error.original_error)
