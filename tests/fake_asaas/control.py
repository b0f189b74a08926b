"""Run the fake Asaas in a background thread and drive it over HTTP.

``running_fake_asaas()`` starts the server on 127.0.0.1 (port 0: the system picks one) and yields a
:class:`FakeAsaasController`. The controller talks to the ``/_fake/`` control endpoints over HTTP only,
so ``FakeAsaasController(url, token)`` drives a server started in another process exactly the same way.

Controller methods are synchronous. When the webhook receiver runs on the caller's own event loop
(e.g. an app served in-process by the test), call the waiting ones off the loop:
``await anyio.to_thread.run_sync(asaas.wait_deliveries)``.

``running_webhook_sink()`` is a small receiver for tests: it records every webhook (raw body and
headers) and answers with ``sink.status`` (200 unless a test sets another).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fake_asaas.server import create_app

DEFAULT_TOKEN = "$aact_hmlg_fake_asaas_test_key_000000000000000000000000"
APPROVED_CARD = "4444444444444444"
REFUSED_CARDS = ("5184019740373151", "4916561358240741")


class FakeAsaasControlError(RuntimeError):
    """A control request was refused (the body says why, in Asaas's error shape)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"fake Asaas control answered {status}: {body}")
        self.status = status
        self.body = body


class ServerThread:
    """An ASGI app served by uvicorn (h11) in a daemon thread, on 127.0.0.1 and a port of the system's choosing."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(
            app, http="h11", lifespan="on", log_config=None, access_log=False, log_level="warning", loop="asyncio"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


class FakeAsaasController:
    """Drives a fake Asaas (in this process or another) through its HTTP control endpoints."""

    def __init__(self, url: str, token: str = DEFAULT_TOKEN, *, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FakeAsaasController:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FakeAsaasController(url={self.url!r})"

    def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        answer = self._http.request(method, path, json=json, params=params)
        body = answer.json() if answer.content else None
        if answer.status_code >= 400:
            raise FakeAsaasControlError(answer.status_code, body)
        return body

    def _api(self, method: str, path: str, *, json: Any = None) -> Any:
        answer = self._http.request(method, path, json=json, headers={"access_token": self.token})
        body = answer.json() if answer.content else None
        if answer.status_code >= 400:
            raise FakeAsaasControlError(answer.status_code, body)
        return body

    # -- state -----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every customer, payment, card, webhook, event, fault and logged request."""
        self._call("POST", "/_fake/reset")

    def health(self) -> bool:
        return bool(self._call("GET", "/_fake/health")["ok"])

    def payments(self, external_reference: str | None = None) -> list[dict[str, Any]]:
        """Every payment the fake holds (deleted ones included), as Asaas would show them."""
        params = {"externalReference": external_reference} if external_reference is not None else None
        return list(self._call("GET", "/_fake/payments", params=params)["data"])

    def requests(self) -> list[dict[str, Any]]:
        """Every /v3 request received: ``{method, path, query, status, fault}`` (status "dropped" for a drop)."""
        return list(self._call("GET", "/_fake/requests")["data"])

    # -- the payer and the card networks ---------------------------------------------------------

    def pay(
        self, payment_id: str, card_number: str | None = None, *, billing_type: str | None = None
    ) -> dict[str, Any]:
        """The payer pays: boleto/pix → RECEIVED; a card on the hosted invoice page → CONFIRMED with
        ``creditCard`` (4444444444444444 approves; 5184019740373151, 4916561358240741 and numbers that are not
        13 to 19 digits are refused: the payment stays as it was and PAYMENT_CREDIT_CARD_CAPTURE_REFUSED is sent).
        Returns the payment."""
        body: dict[str, Any] = {}
        if card_number is not None:
            body["cardNumber"] = card_number
        if billing_type is not None:
            body["billingType"] = billing_type
        return dict(self._call("POST", f"/_fake/payments/{payment_id}/pay", json=body))

    def settle(self, payment_id: str) -> dict[str, Any]:
        """A CONFIRMED card payment is credited: RECEIVED."""
        return dict(self._call("POST", f"/_fake/payments/{payment_id}/settle"))

    def mark_overdue(self, payment_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/_fake/payments/{payment_id}/overdue"))

    def open_chargeback(self, payment_id: str, reason: str = "ABSENT_CARD_FRAUD") -> dict[str, Any]:
        return dict(self._call("POST", f"/_fake/payments/{payment_id}/chargeback", json={"reason": reason}))

    def dispute_chargeback(self, payment_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/_fake/payments/{payment_id}/chargeback/dispute"))

    def resolve_chargeback(self, payment_id: str, *, won: bool, event: str | None = None) -> dict[str, Any]:
        """Won → AWAITING_CHARGEBACK_REVERSAL; lost → chargeback DISPUTE_LOST (DONE if never disputed)."""
        body: dict[str, Any] = {"won": won}
        if event is not None:
            body["event"] = event
        return dict(self._call("POST", f"/_fake/payments/{payment_id}/chargeback/resolve", json=body))

    def refunds_wait(self, wait: bool = True) -> None:
        """Refunds made from now on stay PENDING until :meth:`finish_refund` (False: DONE at once)."""
        self._call("POST", "/_fake/refunds/mode", json={"mode": "pending" if wait else "instant"})

    def finish_refund(self, payment_id: str, *, done: bool) -> dict[str, Any]:
        """The payment's oldest pending refund ends DONE or DENIED, with Asaas's event."""
        return dict(
            self._call(
                "POST", f"/_fake/payments/{payment_id}/refunds/finish", json={"result": "DONE" if done else "DENIED"}
            )
        )

    def card_tokenization(self, enabled: bool) -> None:
        """False: like a production account not approved for card tokenization."""
        self._call("POST", "/_fake/account", json={"tokenization": enabled})

    def refuse_card_token(self, token: str) -> None:
        """From now on, charges with this saved card are refused (expired, blocked...)."""
        self._call("POST", f"/_fake/cards/{token}/refuse")

    def tokenize_card(self, customer_id: str, card_number: str = APPROVED_CARD) -> dict[str, Any]:
        """A saved card for a customer, through the real ``POST /v3/creditCard/tokenizeCreditCard``."""
        body = {
            "customer": customer_id,
            "creditCard": {
                "holderName": "Test Holder",
                "number": card_number,
                "expiryMonth": "12",
                "expiryYear": "2035",
                "ccv": "123",
            },
            "creditCardHolderInfo": {"name": "Test Holder", "email": "holder@example.com", "cpfCnpj": "24971563792"},
            "remoteIp": "127.0.0.1",
        }
        return dict(self._api("POST", "/v3/creditCard/tokenizeCreditCard", json=body))

    # -- faults ----------------------------------------------------------------------------------

    def fault(
        self,
        mode: str,
        method: str = "*",
        path_prefix: str = "/v3",
        count: int = 1,
        *,
        seconds: float = 0.0,
        act_first: bool = False,
        body: str = "text",
    ) -> str:
        """Make the next ``count`` requests matching ``method`` ("*" for any) and ``path_prefix`` fail:
        ``slow`` (answer after ``seconds``), ``error500``, ``drop`` (close without answering) or
        ``malformed`` (200 with ``body`` "text" | "json" | "list"). ``act_first`` performs the action
        before failing. Returns the fault's id."""
        fault = self._call(
            "POST",
            "/_fake/faults",
            json={
                "mode": mode,
                "method": method,
                "path_prefix": path_prefix,
                "count": count,
                "seconds": seconds,
                "act_first": act_first,
                "body": body,
            },
        )
        return str(fault["id"])

    def faults(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/_fake/faults")["data"])

    def clear_faults(self) -> None:
        self._call("DELETE", "/_fake/faults")

    # -- webhooks and events ---------------------------------------------------------------------

    def add_webhook(
        self,
        url: str,
        auth_token: str | None = None,
        *,
        events: list[str] | None = None,
        send_type: str = "SEQUENTIALLY",
        name: str = "whitebill",
    ) -> dict[str, Any]:
        """Register a webhook through the real ``POST /v3/webhooks`` (an empty ``events`` list: every event)."""
        body: dict[str, Any] = {
            "name": name,
            "url": url,
            "email": "ops@example.com",
            "enabled": True,
            "interrupted": False,
            "apiVersion": 3,
            "sendType": send_type,
            "events": events or [],
        }
        if auth_token is not None:
            body["authToken"] = auth_token
        return dict(self._api("POST", "/v3/webhooks", json=body))

    def event_log(self) -> list[dict[str, Any]]:
        """Every event built: ``{body, deliveries: [{webhook, url, status, error, at}], pending_webhooks}``."""
        return list(self._call("GET", "/_fake/events")["data"])

    def events(self, event: str | None = None, payment_id: str | None = None) -> list[dict[str, Any]]:
        """The bodies of the events built, oldest first, optionally of one type and/or one payment."""
        bodies = [record["body"] for record in self.event_log()]
        return [
            b
            for b in bodies
            if (event is None or b["event"] == event)
            and (payment_id is None or (b.get("payment") or {}).get("id") == payment_id)
        ]

    def emit_event(self, event: str) -> dict[str, Any]:
        """The account makes an event about something else than a payment (``TRANSFER_DONE``,
        ``INVOICE_CREATED``, ``ACCOUNT_STATUS_GENERAL_APPROVAL_APPROVED``...): queued to every webhook that
        wants it, like any other. Returns its body."""
        return dict(self._call("POST", "/_fake/events", json={"event": event}))

    def webhooks(self) -> list[dict[str, Any]]:
        """The webhooks as ``GET /v3/webhooks`` shows them (``interrupted``, ``penalizedRequestsCount``...)."""
        return list(self._api("GET", "/v3/webhooks")["data"])

    def update_webhook(self, webhook_id: str, **fields: Any) -> dict[str, Any]:
        """``PUT /v3/webhooks/{id}`` (e.g. ``authToken=...``, or ``interrupted=False`` to reactivate it)."""
        return dict(self._api("PUT", f"/v3/webhooks/{webhook_id}", json=fields))

    def delete_webhook(self, webhook_id: str) -> None:
        self._api("DELETE", f"/v3/webhooks/{webhook_id}")

    def retry_failed_deliveries_every(self, seconds: float | None) -> None:
        """Failed deliveries are tried again by themselves after ``seconds`` (Asaas waits 30 s, then longer);
        None: only on the next event or :meth:`retry_webhooks`."""
        self._call("POST", "/_fake/webhooks/penalty", json={"seconds": seconds})

    def retry_webhooks(self) -> None:
        """Try the deliveries that failed again (in order, per webhook)."""
        self._call("POST", "/_fake/webhooks/retry")

    def wait_deliveries(self, timeout: float = 5.0) -> None:
        """Block until the delivery worker has nothing it can do (failed deliveries stay pending)."""
        if not self._call("GET", "/_fake/webhooks/idle", params={"timeout": timeout})["idle"]:
            raise TimeoutError(f"webhook deliveries still running after {timeout} s")


@contextlib.contextmanager
def running_fake_asaas(token: str = DEFAULT_TOKEN, *, webhook_timeout: float = 5.0) -> Iterator[FakeAsaasController]:
    """A fake Asaas on 127.0.0.1 in a background thread, for as long as the block runs."""
    server = ServerThread(create_app(token, webhook_timeout=webhook_timeout))
    server.start()
    controller = FakeAsaasController(server.url, token)
    try:
        yield controller
    finally:
        controller.close()
        server.stop()


@dataclass
class ReceivedWebhook:
    body: bytes
    headers: dict[str, str]


@dataclass
class WebhookSink:
    url: str
    status: int = 200
    received: list[ReceivedWebhook] = field(default_factory=list)

    def clear(self) -> None:
        self.received.clear()
        self.status = 200


@contextlib.contextmanager
def running_webhook_sink(path: str = "/asaas/webhook") -> Iterator[WebhookSink]:
    """A webhook receiver on 127.0.0.1 that keeps what it is sent and answers ``sink.status``."""
    sink = WebhookSink(url="")

    async def receive(request: Request) -> Response:
        sink.received.append(ReceivedWebhook(await request.body(), dict(request.headers)))
        return Response(status_code=sink.status)

    server = ServerThread(Starlette(routes=[Route(path, receive, methods=["POST"])]))
    server.start()
    sink.url = server.url + path
    try:
        yield sink
    finally:
        server.stop()
