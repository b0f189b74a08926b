"""CORS by brand: Starlette's ``CORSMiddleware``, asked per request which origin it may allow.

Origins belong to partners (their custom domain and ``allowedOrigins``) or to the platform
(``WHITEBILL_CORS_ORIGINS``): ``billing.tenants.origins`` knows which. For ``/graphql``, ``/usage`` and
``/reports/*``:

- a preflight carries no credentials, so any origin someone listed is allowed;
- an actual request's answer carries ``Access-Control-Allow-Origin`` when its origin is the platform's,
  or belongs to the partner of the credentials it sent (``note_caller``, told by the app once it has
  authenticated them); a request with no credentials (``branding``, ``login``) is allowed from any
  listed origin, since it reads only what is public;
- a websocket upgrade from an origin nobody listed is refused (403), unless the page is this server's own
  (its Origin names the host the upgrade went to: GraphiQL); once ``connection_init`` names the
  credentials, ``caller_may_use`` refuses (4403) a page of another partner than theirs.

Credentials travel only as bearer tokens, never cookies: ``Access-Control-Allow-Credentials`` is never sent.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing.core.errors import ErrorCode
from billing.core.tenancy import Viewer
from billing.tenants import origins
from whitebill.boundary import refusal

CORS_PATHS = ("/graphql", "/usage")
CORS_PREFIXES = ("/reports/",)
OWNER_KEY = "whitebill.origin_owner"  # the scope's key for the origin's owner, for the websocket's check


@dataclass
class _Decision:
    owner: origins.Owner | None
    caller_known: bool = False  # the app authenticated some credentials
    caller_partner: int | None = None  # their partner; None for the platform's


_decision: contextvars.ContextVar[_Decision | None] = contextvars.ContextVar("cors_decision", default=None)


def note_caller(viewer: Viewer | None) -> None:
    """The app authenticated the request's credentials as ``viewer``: the answer may be read by a page of
    that viewer's partner (or the platform's), and by no other."""
    decision = _decision.get()
    if decision is not None and viewer is not None:
        decision.caller_known = True
        decision.caller_partner = None if viewer.is_platform else viewer.partner_id


def caller_may_use(scope: Scope, viewer: Viewer | None) -> bool:
    """Whether a websocket opened from the scope's origin may act with ``viewer``'s credentials."""
    owner: origins.Owner | None = scope.get(OWNER_KEY)
    if owner is None or owner.is_platform or viewer is None:
        return True  # no origin (not a browser), the platform's page, or nothing to act as
    return not viewer.is_platform and viewer.partner_id == owner.partner_id


def _same_origin(origin: str, headers: Headers) -> bool:
    """Whether the page is one this server served itself: the Origin names the host (and port) the request
    went to. The scheme is not compared: behind a proxy that ends TLS the server sees ws:// for https pages."""
    host = headers.get("host", "").lower()
    _, _, named = origin.lower().partition("://")
    return bool(host) and named in (host, host.removesuffix(":80"), host.removesuffix(":443"))


def _covered(path: str) -> bool:
    return path in CORS_PATHS or path.startswith(CORS_PREFIXES)


class BrandCORS(CORSMiddleware):
    def __init__(self, app: ASGIApp) -> None:
        super().__init__(
            app,
            allow_origins=(),
            allow_methods=("GET", "POST"),
            allow_headers=("Authorization", "Content-Type", "X-Request-ID"),
            expose_headers=("X-Request-ID",),
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not _covered(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        owner = await origins.owner_of(origin)
        if scope["type"] == "websocket":
            # A page nobody listed may still connect from this server's own origin (GraphiQL).
            if origin is not None and owner is None and not _same_origin(origin, headers):
                await receive()  # websocket.connect; closing now answers the upgrade with 403
                await send({"type": "websocket.close", "code": 1008, "reason": "this origin may not connect"})
                return
            scope[OWNER_KEY] = owner
            await self.app(scope, receive, send)
            return
        token = _decision.set(_Decision(owner))

        async def varying(message: Message) -> None:
            # Whether the page may read the answer depends on the credentials too: caches must key on them.
            if message["type"] == "http.response.start" and origin is not None:
                MutableHeaders(scope=message).add_vary_header("Authorization")
            await send(message)

        try:
            await super().__call__(scope, receive, varying)
        finally:
            _decision.reset(token)

    def preflight_response(self, request_headers: Headers) -> Response:
        """Starlette's answer; a refusal in our shape (JSON with a code, as every 4xx here), same headers."""
        answer = super().preflight_response(request_headers)
        if answer.status_code == 200:
            return answer
        refused = refusal(answer.status_code, ErrorCode.FORBIDDEN, bytes(answer.body).decode())
        for name in ("vary", "access-control-allow-methods", "access-control-max-age", "access-control-allow-headers"):
            if name in answer.headers:
                refused.headers[name] = answer.headers[name]
        return refused

    def is_allowed_origin(self, origin: str) -> bool:
        decision = _decision.get()
        if decision is None or decision.owner is None:
            return False
        if decision.owner.is_platform or not decision.caller_known:
            return True  # the platform's page; or a preflight, or a request with no credentials
        return decision.caller_partner == decision.owner.partner_id
