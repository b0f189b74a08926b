"""Expected failures, each with a stable code the API exposes as an enum."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    NOT_FOUND = "NOT_FOUND"
    INVALID_ID = "INVALID_ID"
    INVALID_INPUT = "INVALID_INPUT"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    UNIT_MISMATCH = "UNIT_MISMATCH"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PAGE_SIZE_TOO_LARGE = "PAGE_SIZE_TOO_LARGE"
    INVALID_PAGE_SIZE = "INVALID_PAGE_SIZE"  # a negative page size
    INVALID_CURSOR = "INVALID_CURSOR"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENCY_KEY_IN_PROGRESS = "IDEMPOTENCY_KEY_IN_PROGRESS"
    INVALID_PAYMENT_TRANSITION = "INVALID_PAYMENT_TRANSITION"
    GATEWAY_NOT_CONFIGURED = "GATEWAY_NOT_CONFIGURED"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"  # too deep, too many aliases or tokens, too costly
    QUERY_TOO_LARGE = "QUERY_TOO_LARGE"  # the query text is longer than the server takes, in bytes
    INVALID_QUERY = "INVALID_QUERY"  # a GraphQL document that does not parse or validate
    MALFORMED_REQUEST = "MALFORMED_REQUEST"  # an HTTP request that is not a GraphQL request (not JSON, ...)
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"  # a hash this server does not know: send the query too
    PERSISTED_QUERY_HASH_MISMATCH = "PERSISTED_QUERY_HASH_MISMATCH"  # a query whose SHA-256 is not its hash
    OPERATION_NOT_REGISTERED = "OPERATION_NOT_REGISTERED"  # registered operations only (WHITEBILL_OPERATIONS)
    UNAVAILABLE = "UNAVAILABLE"  # the server cannot answer now (its database did not): retry
    BODY_TOO_LARGE = "BODY_TOO_LARGE"  # a request body over the server's limit (HTTP 413)
    RATE_LIMITED = "RATE_LIMITED"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    INVALID_TOKEN = "INVALID_TOKEN"  # noqa: S105 (an error code, not a secret)
    LAST_ADMIN = "LAST_ADMIN"
    LIMIT_BELOW_USAGE = "LIMIT_BELOW_USAGE"
    PLAN_REQUIRED = "PLAN_REQUIRED"
    PAYMENT_REQUIRED = "PAYMENT_REQUIRED"
    WORKSPACE_PAUSED = "WORKSPACE_PAUSED"
    PAYMENT_METHOD_REQUIRED = "PAYMENT_METHOD_REQUIRED"
    SUBSCRIPTION_REQUIRED = "SUBSCRIPTION_REQUIRED"
    GATEWAY_UNAVAILABLE = "GATEWAY_UNAVAILABLE"  # the provider did not answer: retry with the same key
    REFUND_REFUSED = "REFUND_REFUSED"
    CREDIT_BILLING_OFF = "CREDIT_BILLING_OFF"  # the partner does not sell add-ons for points
    INVALID_EVENT = "INVALID_EVENT"  # a usage event no report could show (occurredAt outside the window)
    URL_NOT_ALLOWED = "URL_NOT_ALLOWED"  # whitebill sends only to public https addresses (billing.core.outbound)
    COUPON_NOT_APPLICABLE = "COUPON_NOT_APPLICABLE"  # expired, not for this item, or not stackable here
    COUPON_EXHAUSTED = "COUPON_EXHAUSTED"  # no redemption left, in all or for this workspace


class BillingError(Exception):
    """An expected failure: the caller did something the rules do not allow."""

    def __init__(self, code: ErrorCode, message: str, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.details = details

    def __repr__(self) -> str:
        return f"BillingError({self.code}, {self.message!r}, field={self.field!r})"


def not_found(what: str, field: str | None = "id") -> BillingError:
    return BillingError(ErrorCode.NOT_FOUND, f"{what} not found", field=field)
