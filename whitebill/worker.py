"""The worker: claims due jobs and outbox events with leases and runs them. Run as many as you like.

With ``WHITEBILL_WORKER_HEALTH_PORT`` set, ``whitebill worker`` also answers HTTP on that port (0: a free
one, printed at start): ``/healthz`` is 200 while its loop completes a pass within
``WHITEBILL_WORKER_STALL_SECONDS`` and 503 once it has not (stuck, or every pass failing), with a JSON
body saying how long ago the last pass ended and how much it has done; ``/metrics`` is this worker's
Prometheus exposition.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from billing.accounts import expiry
from billing.charges import reconciler
from billing.core import clock, idempotency, sql, work
from billing.outbox import notifications, partner_webhooks
from billing.sales import provider_webhooks, refunds
from billing.subscriptions import credit_billing, expiring_plans, renewals
from whitebill import metrics
from whitebill.settings import Settings

log = logging.getLogger("whitebill.worker")

MAX_ATTEMPTS = 8


class Health:
    """What /healthz tells of a worker: when its loop last completed a pass over the queues, and how much
    it has done. A pass that fails is no pass: a worker whose every pass fails is stalled too."""

    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self.started = time.monotonic()
        self.last_tick: float | None = None
        self.ticks = 0
        self.handled = 0

    def ticked(self, handled: int) -> None:
        self.last_tick = time.monotonic()
        self.ticks += 1
        self.handled += handled
        metrics.worker_ticked(handled, time.time())

    def report(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        age = None if self.last_tick is None else now - self.last_tick
        # Before its first pass a worker is starting, and has as long as a stall to finish it.
        healthy = (now - self.started if age is None else age) <= self.stall_seconds
        return healthy, {
            "status": "ok" if healthy else "stalled",
            "last_tick_age_seconds": None if age is None else round(age, 3),
            "stall_after_seconds": self.stall_seconds,
            "ticks": self.ticks,
            "items_handled": self.handled,
        }


def health_app(health: Health, metrics_dir: str | None) -> Starlette:
    async def healthz(request: Request) -> Response:
        healthy, body = health.report()
        return JSONResponse(body, status_code=200 if healthy else 503, headers={"cache-control": "no-store"})

    async def exposition(request: Request) -> Response:
        return Response(metrics.render(metrics_dir), media_type=metrics.CONTENT_TYPE)

    return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", exposition)])


class _HealthServer(uvicorn.Server):
    """uvicorn inside the worker's loop: the worker's own signals stay the worker's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _lag_kind(queue: str, row: dict[str, Any]) -> str:
    """A job's kind when it is one the dispatch table knows (a closed set), else the queue's name."""
    if queue == "job":
        kind = str(row.get("kind"))
        return kind if work.handler_for(kind) is not None else "job"
    return queue


class Worker:
    def __init__(
        self,
        settings: Settings,
        *,
        name: str | None = None,
        poll_seconds: float = 1.0,
        health_socket: socket.socket | None = None,
    ) -> None:
        self.settings = settings
        self.owner = f"{name or 'worker'}:{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.poll_seconds = poll_seconds
        self.webhooks = partner_webhooks.Sender()
        self.next_expiry_notices = datetime.min.replace(tzinfo=UTC)
        self.health = Health(settings.worker_stall_seconds)
        self.health_socket = health_socket  # listening already: /healthz and /metrics are served on it
        metrics.install()

    async def _claim(self, queue: str, limit: int) -> list[work.Claimed]:
        claimed = await work.claim(queue, self.owner, limit=limit)
        now = clock.now()
        for item in claimed:
            due = sql.as_datetime(item.row.get("run_at"))
            if due is not None:
                metrics.worker_took(_lag_kind(queue, item.row), (now - due).total_seconds())
        return claimed

    async def tick(self) -> int:
        """One pass over every queue; returns how many items it handled."""
        if self.settings.test_clock:
            await clock.refresh()
        handled = 0
        for item in await self._claim("outbox_event", limit=50):
            handled += 1
            row = dict(item.row)
            if isinstance(row.get("payload"), str):
                row["payload"] = json.loads(row["payload"])
            try:
                await notifications.deliver(row)
            except Exception as exc:  # delivery failures are retried with back-off
                await work.retry_later(
                    "outbox_event",
                    item.id,
                    self.owner,
                    repr(exc),
                    attempts=item.attempts,
                    max_attempts=MAX_ATTEMPTS,
                )
            else:
                await work.finish("outbox_event", item.id, self.owner)
        handled += await renewals.run_due(limit=50)
        deliveries = await self._claim("webhook_delivery", limit=partner_webhooks.BATCH)
        if deliveries:  # sent side by side: a slow receiver does not hold up the others
            # Each send ends on its own: one that fails (its database statement, its endpoint's secret) is
            # logged and retried when its lease runs out, and neither cuts the others short nor the tick.
            sent = await asyncio.gather(
                *(self.webhooks.send(self.owner, claimed) for claimed in deliveries), return_exceptions=True
            )
            for claimed, outcome in zip(deliveries, sent, strict=True):
                if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                    raise outcome  # a cancellation: the worker is stopping
                if isinstance(outcome, Exception):
                    log.error("webhook delivery %s failed", claimed.id, exc_info=outcome)
            handled += len(deliveries)
        handled += await reconciler.run_due(limit=20)
        handled += await provider_webhooks.run_due(limit=20)
        handled += await refunds.check_due(limit=20)
        handled += await refunds.check_disputes_due(limit=20)
        handled += await credit_billing.run_due(limit=50)
        handled += await expiry.run_due(limit=100)
        now = clock.now()
        if not now < self.next_expiry_notices <= now + expiring_plans.SCAN_EVERY:  # due (or the test clock went back)
            self.next_expiry_notices = now + expiring_plans.SCAN_EVERY
            handled += await expiring_plans.run_due()
        for item in await self._claim("job", limit=20):
            handled += 1
            kind = item.row["kind"]
            handler = work.handler_for(kind)
            payload = item.row["payload"]
            if isinstance(payload, str):
                payload = json.loads(payload)
            try:
                if handler is None:
                    raise LookupError(f"no handler for job kind {kind!r}")
                result = await handler(payload)
            except Exception as exc:
                log.exception("job failed", extra={"job_id": item.id, "kind": kind})
                await work.retry_later(
                    "job", item.id, self.owner, repr(exc), attempts=item.attempts, max_attempts=MAX_ATTEMPTS
                )
            else:
                await work.finish("job", item.id, self.owner, result)
        return handled

    async def run_forever(self) -> None:
        log.info("worker started", extra={"owner": self.owner})
        server = None
        if self.health_socket is not None:
            config = uvicorn.Config(
                health_app(self.health, self.settings.metrics_dir), log_config=None, access_log=False, lifespan="off"
            )
            server = _HealthServer(config)
            serving = asyncio.create_task(server.serve(sockets=[self.health_socket]))
        try:
            await self._loop()
        finally:
            if server is not None:
                server.should_exit = True
                with contextlib.suppress(asyncio.CancelledError):
                    await serving

    async def _loop(self) -> None:
        await idempotency.schedule_purge(clock.now())
        while True:
            try:
                busy = await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker tick failed")
                busy = 0
            else:
                self.health.ticked(busy)
            if not busy:
                await asyncio.sleep(self.poll_seconds)
