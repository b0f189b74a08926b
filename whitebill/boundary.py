"""The HTTP boundary: a body limit in front of every route, and one shape for every refusal.

Every 4xx answer is JSON with a code from ``ErrorCode``. Plain HTTP routes (/usage, the report
downloads, webhooks) answer ``{"errors": [{"code", "message", "field"}]}``; /graphql answers as
GraphQL does, ``{"errors": [{"message", "extensions": {"code"}}]}``, so a GraphQL client reads a
refused request like a refused query.

The body limit reads the body as it arrives and stops at the limit: a declared Content-Length over
it is refused before anything is read, and a body that turns out longer than declared (or chunked,
declaring nothing) is refused as soon as it passes the limit. The app then gets the body in one piece.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing.core.errors import ErrorCode

GRAPHQL_PATH = "/graphql"


def refusal(status: int, code: ErrorCode, message: str, field: str | None = None) -> Response:
    """A plain HTTP route's refusal."""
    body = {"errors": [{"code": code.value, "message": message, "field": field}]}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def graphql_refusal(status: int, code: ErrorCode, message: str) -> Response:
    """A refusal of a GraphQL request that never reached execution."""
    body = {"errors": [{"message": message, "extensions": {"code": code.value}}]}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def refusal_at(path: str, status: int, code: ErrorCode, message: str) -> Response:
    if path == GRAPHQL_PATH:
        return graphql_refusal(status, code, message)
    return refusal(status, code, message)


class BodyLimit:
    """Refuses with 413 a request body longer than its route's limit (``limits`` by path, else
    ``default``), having read no more than that."""

    def __init__(self, app: ASGIApp, *, default: int, limits: Mapping[str, int]) -> None:
        self.app = app
        self.default = default
        self.limits = dict(limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = self.limits.get(path, self.default)
        too_large = refusal_at(path, 413, ErrorCode.BODY_TOO_LARGE, f"the request body is larger than {limit} bytes")
        for name, value in scope.get("headers") or ():
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await too_large(scope, receive, send)
                return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before it finished sending
            body += message.get("body", b"")
            if len(body) > limit:
                await too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        whole: Message | None = {"type": "http.request", "body": bytes(body), "more_body": False}

        async def replay() -> Message:
            nonlocal whole
            if whole is not None:
                message, whole = whole, None
                return message
            return await receive()  # after the body: a disconnect, for streamed answers

        await self.app(scope, replay, send)
