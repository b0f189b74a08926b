"""The Starlette application: GraphQL at /graphql (subscriptions over graphql-transport-ws on the same
path), health, metrics, provider webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from datetime import timedelta
from typing import Any

import orjson
from cross_web import HTTPException
from graphql import GraphQLError, OperationType, get_operation_ast, parse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse, process_result
from strawberry.http.exceptions import NonJsonMessageReceived, NonTextMessageReceived, WebSocketDisconnected
from strawberry.http.types import QueryParams
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType
from tortoise import Tortoise

from billing.core import clock, realtime, sql
from billing.core.audit import request_id
from billing.core.errors import ErrorCode
from schema.context import Context, authenticate, bearer_token
from whitebill import cors, db, documents_http, metrics, operations, pay_page, ready, usage_http, web
from whitebill.boundary import GRAPHQL_PATH, BodyLimit, graphql_refusal
from whitebill.compiled.compiler import Fallback
from whitebill.schema import MAX_TOKENS, VALIDATION_RULES, schema
from whitebill.settings import Settings, configure_domain, load_settings
from whitebill.webhooks import handle_provider_webhook

log = logging.getLogger("whitebill.http")


MAX_SUBSCRIPTIONS_PER_CONNECTION = 20
YOUNG_COLLECTION_THRESHOLD = 10_000
CONNECTION_INIT_TIMEOUT = timedelta(seconds=10)


class TextWebSocket(ASGIWebSocketAdapter):
    """graphql-transport-ws messages are text frames (orjson gives bytes); a message that is not JSON,
    or holds a NUL, closes the socket with 4400 like any other malformed message; a close reason (a
    syntax error's message, say) is cut to the 123 bytes a close frame holds."""

    async def iter_json(self, *, ignore_parsing_errors: bool = False) -> AsyncGenerator[object, None]:
        try:
            while self.ws.application_state != WebSocketState.DISCONNECTED:
                text = await self.ws.receive_text()
                try:
                    yield self.view.decode_json(text)
                except HTTPException as error:
                    if not ignore_parsing_errors:
                        raise NonJsonMessageReceived from error
        except KeyError as error:
            raise NonTextMessageReceived from error
        except WebSocketDisconnect:
            pass

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(orjson.dumps(message).decode())
        except WebSocketDisconnect as error:
            raise WebSocketDisconnected from error

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, reason=reason.encode()[:123].decode(errors="ignore"))


class Refused(HTTPException):
    """A GraphQL request refused before it runs, with its code."""

    def __init__(self, status_code: int, code: ErrorCode, reason: str) -> None:
        super().__init__(status_code, reason)
        self.code = code


# Strawberry's own refusals carry only a status.
_CODE_OF_STATUS = {
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.BODY_TOO_LARGE,
}


def _query_too_large(query: object, max_bytes: int) -> bool:
    return isinstance(query, str) and len(query.encode("utf-8", "surrogatepass")) > max_bytes


@functools.lru_cache(maxsize=1000)
def _runs_to_its_end(document: str, operation_name: str | None) -> bool:
    """Whether an operation is a query or a mutation (a document that does not parse fails before
    any statement, and a subscription waits between its reads: those can be stopped at once)."""
    try:
        operation = get_operation_ast(parse(document, max_tokens=MAX_TOKENS), operation_name)
    except GraphQLError:
        return False  # strawberry refuses it before it runs
    return operation is not None and operation.operation is not OperationType.SUBSCRIPTION


class LimitedTransportWS(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws with our refusals: an operation over the connection's limit, or whose
    query is too large, gets an ``error`` message with its code (strawberry's own carries none).

    A query or mutation whose client completes it or goes away is not cancelled, as strawberry
    would: it runs to its end and its answer is dropped. Cancelled, it would stop between any two
    statements (a mutation half-way through its transaction) or in the middle of one, on a
    connection that other tasks of the operation may still be using."""

    view: GraphQLApp

    @functools.cached_property
    def finishing(self) -> set[asyncio.Task[Any]]:
        """Operations completed or left by the client, still running to their end: they count towards
        the connection's limit until they end, and the connection's end waits for them."""
        return set()

    async def cleanup_operation(self, operation_id: str) -> None:
        operation = self.operations.get(operation_id)
        if operation is not None and operation.task is not None and not operation.task.done():
            name = operation.operation_name
            if (name is None or isinstance(name, str)) and _runs_to_its_end(operation.query, name):
                operation.completed = True  # nothing more is sent for it
                del self.operations[operation_id]
                self.finishing.add(operation.task)
                operation.task.add_done_callback(self.finishing.discard)
                return
        await super().cleanup_operation(operation_id)

    async def shutdown(self) -> None:
        await super().shutdown()
        for task in list(self.finishing):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged and message["id"] not in self.operations:
            refused = None
            if not isinstance(message.get("payload"), dict):
                refused = GraphQLError(
                    "a subscribe message's payload is an object with the query",
                    extensions={"code": ErrorCode.MALFORMED_REQUEST.value},
                )
            elif not isinstance(message["payload"].get("operationName"), str | None):
                refused = GraphQLError(
                    "operationName is a string", extensions={"code": ErrorCode.MALFORMED_REQUEST.value}
                )
            elif len(self.operations) + len(self.finishing) >= MAX_SUBSCRIPTIONS_PER_CONNECTION:
                refused = GraphQLError(
                    f"at most {MAX_SUBSCRIPTIONS_PER_CONNECTION} operations at once on one connection",
                    extensions={"code": ErrorCode.RATE_LIMITED.value},
                )
            elif _query_too_large(message["payload"].get("query"), self.view.settings.max_query_bytes):
                refused = GraphQLError(
                    f"the query is larger than {self.view.settings.max_query_bytes} bytes",
                    extensions={"code": ErrorCode.QUERY_TOO_LARGE.value},
                )
            if refused is None:
                payload = message["payload"]
                try:
                    document = await self.view.operations.document_for(payload.get("query"), payload.get("extensions"))
                except operations.OperationRefused as error:
                    refused = GraphQLError(error.message, extensions={"code": error.code.value})
                else:
                    if document is None:
                        refused = GraphQLError(
                            "a subscribe message carries a query, or a persisted query's hash",
                            extensions={"code": ErrorCode.MALFORMED_REQUEST.value},
                        )
                    else:
                        payload["query"] = document
            if refused is not None:
                await self.send_message({"id": message["id"], "type": "error", "payload": [refused.formatted]})
                return
        await super().handle_subscribe(message)


class GraphQLApp(GraphQL):
    """Strawberry's ASGI app with our context, orjson, error counting, and refusals as JSON with a
    code (strawberry answers them in plain text)."""

    websocket_adapter_class = TextWebSocket  # type: ignore[assignment]
    graphql_transport_ws_handler_class = LimitedTransportWS  # type: ignore[assignment]

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.development else None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=CONNECTION_INIT_TIMEOUT,
            max_subscriptions_per_connection=MAX_SUBSCRIPTIONS_PER_CONNECTION,
            # Credentials travel only as bearer tokens (no cookies), so a page on another origin has
            # nothing to borrow: white-label dashboards on partners' own domains may subscribe.
            allowed_origins=("*",),
        )
        self.settings = settings
        self.operations = operations.Registry(settings.operations, schema._schema, VALIDATION_RULES, MAX_TOKENS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        response: Response
        try:
            response = await self.run(Request(scope, receive))  # type: ignore[assignment]
        except HTTPException as error:
            status = error.status_code
            if isinstance(error.__cause__, InvalidOperationTypeError):
                status = 405  # a mutation by GET: GraphQL over HTTP asks for 405, strawberry says 400
            code = error.code if isinstance(error, Refused) else _CODE_OF_STATUS.get(status)
            response = graphql_refusal(status, code or ErrorCode.MALFORMED_REQUEST, error.reason)
        await response(scope, receive, send)

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A GET naming a persisted query by its hash alone is a query, whatever the client accepts.
        return super().should_render_graphql_ide(request) and request.query_params.get("extensions") is None

    async def render_graphql_ide(self, request: Any) -> Any:
        return web.page("graphiql", web.GRAPHIQL_POLICY)  # our own build: no CDN (whitebill.web)

    async def parse_http_body(self, request: Any) -> Any:
        data = await super().parse_http_body(request)
        if _query_too_large(getattr(data, "query", None), self.settings.max_query_bytes):
            raise Refused(
                400, ErrorCode.QUERY_TOO_LARGE, f"the query is larger than {self.settings.max_query_bytes} bytes"
            )
        try:  # a persisted query's document, and registered operations only where so set
            data.query = await self.operations.document_for(data.query, data.extensions)
        except operations.OperationRefused as refused:
            raise Refused(refused.status, refused.code, refused.message) from None
        return data

    def parse_json(self, data: str | bytes) -> Any:
        """A request body: one JSON object (no batches, no bare values)."""
        decoded = self.decode_json(data)
        if isinstance(decoded, list):
            raise Refused(400, ErrorCode.MALFORMED_REQUEST, "batched requests are not supported: send one at a time")
        if not isinstance(decoded, dict):
            raise Refused(400, ErrorCode.MALFORMED_REQUEST, 'the body must be a JSON object such as {"query": ...}')
        return decoded

    def parse_query_params(self, params: QueryParams) -> dict[str, Any]:
        # GET: variables and extensions are JSON of any shape here (null included); strawberry
        # refuses what is not an object.
        parsed: dict[str, Any] = dict(params)
        for name in ("variables", "extensions"):
            if parsed.get(name):
                parsed[name] = self.decode_json(parsed[name])
        return parsed

    async def get_context(self, request: Any, response: Any) -> Context:  # type: ignore[override]
        token = bearer_token(request.headers.get("authorization", ""))
        client = getattr(request, "client", None)
        viewer = await authenticate(token)
        cors.note_caller(viewer)
        return Context(
            viewer=viewer,
            request_id=request_id.get() or "",
            request=request,
            response=response,
            token=token or None,
            client_address=client.host if client else None,
            origin=request.headers.get("origin"),
        )

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:  # type: ignore[override]
        """Browsers cannot set headers on a websocket: the connection_init payload may carry
        ``{"Authorization": "Bearer <api key or session token>"}``, which then stands instead of the
        upgrade request's header. Bad credentials are answered like over HTTP: operations that need
        a caller fail with UNAUTHENTICATED. A page of another partner than the credentials' is refused
        (4403): see ``whitebill.cors``."""
        params = context.connection_params or {}
        header = next((v for k, v in params.items() if k.lower() == "authorization"), None)
        if header is not None:
            token = bearer_token(header) if isinstance(header, str) else ""
            context.token = token or None
            context.viewer = await authenticate(token)
        if not cors.caller_may_use(context.request.scope, context.viewer):
            raise ConnectionRejectionError({"code": ErrorCode.FORBIDDEN.value})
        return UNSET

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def decode_json(self, data: str | bytes) -> object:
        # orjson refuses lone surrogates, which no database can store; NUL is refused in any string
        # because PostgreSQL cannot store it: both answer 400 instead of failing deep inside.
        try:
            decoded = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise Refused(400, ErrorCode.MALFORMED_REQUEST, f"Unable to parse request body as JSON: {error}") from None
        if _has_nul(decoded):
            raise Refused(400, ErrorCode.INVALID_INPUT, "Strings must not contain NUL characters")
        return decoded

    async def execute_single(  # type: ignore[override]
        self,
        request: Any,
        request_adapter: Any,
        sub_response: Any,
        context: Context,
        root_value: Any,
        request_data: Any,
    ) -> ExecutionResult:
        """A registered query that compiles runs as its one statement on PostgreSQL (whitebill.compiled);
        anything else, or anything the statement cannot answer as the general executor would, runs there."""
        query = request_data.query
        if isinstance(query, str) and sql.is_postgres():
            compiled = await self.operations.compiled(query)
            if compiled is not None and request_data.operation_name in (None, compiled.name):
                try:
                    text, parameters = compiled.prepare(self.schema._schema, context.viewer, request_data.variables)  # type: ignore[attr-defined]
                    answer = await compiled.run(text, parameters)
                except Fallback:
                    metrics.count_compiled("fallback")
                except Exception:  # a fault of the compiled path: the general executor still answers
                    log.exception("a compiled query failed: the general executor answers it")
                    metrics.count_compiled("fallback")
                else:
                    metrics.count_compiled("compiled")
                    return CompiledResult(answer)
        return await super().execute_single(
            request=request,
            request_adapter=request_adapter,
            sub_response=sub_response,
            context=context,
            root_value=root_value,
            request_data=request_data,
        )

    async def process_result(self, request: Any, result: ExecutionResult) -> GraphQLHTTPResponse:
        if isinstance(result, CompiledResult):
            return {"data": orjson.Fragment(result.json)}  # type: ignore[typeddict-item]
        for error in result.errors or ():
            if (error.extensions or {}).get("code") == "INTERNAL_ERROR":
                metrics.count_error("graphql")
        return process_result(result)


class CompiledResult(ExecutionResult):
    """The data of a compiled query as PostgreSQL wrote it: sent as it is."""

    def __init__(self, json: str) -> None:
        super().__init__(data=None, errors=None)
        self.json = json


def _has_nul(value: object) -> bool:
    """Whether any string in decoded JSON holds NUL. A loop, not recursion: orjson takes nesting
    1,024 deep, deeper than Python's recursion limit."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


_REQUEST_ID = re.compile(rb"[A-Za-z0-9-]{1,64}")


class RequestContext:
    """Gives every request an id (from X-Request-ID or new), logs it, and counts it."""

    def __init__(self, app: ASGIApp, settings: Settings, routes: list[BaseRoute]) -> None:
        self.app = app
        self.settings = settings
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"")
        # Echoed in a response header and written in logs: ASCII letters, digits and dashes only.
        rid = incoming.decode() if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        try:
            if self.settings.test_clock:
                await clock.refresh()
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            path = scope.get("path", "")
            if scope["type"] == "http":
                metrics.observe(scope.get("method", ""), metrics.route_of(self.routes, scope), status, elapsed)
                log.info(
                    "request",
                    extra={
                        "method": scope.get("method"),
                        "path": path,
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                    },
                )
            request_id.reset(token)


async def healthz(request: Request) -> Response:
    try:
        await asyncio.wait_for(sql.fetch("SELECT 1 AS ok"), timeout=2)
    except Exception:  # any failure to reach the database is "unhealthy"
        log.exception("health check failed")
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


async def metrics_endpoint(request: Request) -> Response:
    exposition = metrics.render(request.app.state.settings.metrics_dir)
    return Response(exposition, media_type=metrics.CONTENT_TYPE)


async def provider_webhook(request: Request) -> Response:
    return await handle_provider_webhook(request)


def create_app(settings: Settings | None = None, *, manage_database: bool = True) -> Starlette:
    """The ASGI app. With ``manage_database`` it opens the database on startup, refusing an
    unmigrated one, and closes it on shutdown; tests that own the connection pass False."""
    settings = settings or load_settings()
    configure_domain(settings)
    metrics.install()
    clock.use_shared_offset(settings.test_clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not manage_database:
            yield
            return
        await db.connect(settings.database_url)
        listener = None
        try:
            await ready.ensure_migrated(settings)
            # Everything loaded so far (modules, the schema, the pool) lives as long as the process:
            # keep the collector from scanning it again and again.
            gc.freeze()
            # Young objects are collected after this many allocations rather than 700: what a live
            # update allocates for its subscribers dies before a collection sees it, instead of
            # living on into the oldest generation, whose full collections (one object each of a
            # thousand subscribers' connections and more) paused the process for up to 190 ms.
            gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])
            if settings.is_postgres:
                # Subscribers hear of changes made by any process (servers, workers) through LISTEN, on a
                # connection of its own: straight to PostgreSQL when DATABASE_URL goes through pgbouncer.
                connect = (
                    realtime.connect_with(**db.listen_options(settings.listen_database_url))
                    if settings.listen_database_url
                    else realtime.connect_like_the_pool()
                )
                listener = realtime.Listener(connect)
                await listener.start()
            embedded_worker = None
            if not settings.is_postgres and settings.env != "test":
                # Embedded mode is one process: it does its own background work.
                from whitebill.worker import Worker

                embedded_worker = asyncio.create_task(Worker(settings, name="embedded").run_forever())
            yield
            if embedded_worker is not None:
                embedded_worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await embedded_worker
        finally:
            if listener is not None:
                await listener.stop()
            await Tortoise.close_connections()
            metrics.process_exiting(settings.metrics_dir)

    graphql = GraphQLApp(settings)
    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/metrics", metrics_endpoint),
        Route("/webhooks/{provider}/{config_id:int}", provider_webhook, methods=["POST"]),
        Route("/pay/{reference}/{mac}", pay_page.show, methods=["GET"]),
        Route("/pay/{reference}/{mac}", pay_page.go_on, methods=["POST"]),
        Route("/pay/{reference}/{mac}/return", pay_page.came_back, methods=["GET"]),
        Route(GRAPHQL_PATH, graphql, methods=["GET", "POST"]),
        Route("/usage", usage_http.report_usage, methods=["POST"]),
        Route("/reports/{report}.csv", usage_http.download_report, methods=["GET"]),
        Route("/reports/statement.pdf", usage_http.download_statement_pdf, methods=["GET"]),
        Route(
            "/documents/{document_id:int}/{language}/{expires:int}/{mac}.pdf", documents_http.download, methods=["GET"]
        ),
        WebSocketRoute("/graphql", graphql),
        Route("/portal", web.portal_without_slash, methods=["GET"]),
        Route("/portal/", web.portal, methods=["GET"]),
        Mount("/ui", web.Assets(), name="ui"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.settings = settings
    app.add_middleware(BodyLimit, default=settings.max_body_bytes, limits={"/usage": settings.max_usage_body_bytes})
    app.add_middleware(cors.BrandCORS)  # outside the body limit: a refusal for size is readable by the page
    app.add_middleware(RequestContext, settings=settings, routes=routes)
    return app
