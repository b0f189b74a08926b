"""The worker: claims due jobs and outbox events with leases and runs them. Run as many as you like."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from datetime import UTC, datetime

from billing.accounts import expiry
from billing.charges import reconciler
from billing.core import clock, idempotency, work
from billing.outbox import notifications, partner_webhooks
from billing.sales import provider_webhooks, refunds
from billing.subscriptions import credit_billing, expiring_plans, renewals
from whitebill.settings import Settings

log = logging.getLogger("whitebill.worker")

MAX_ATTEMPTS = 8


class Worker:
    def __init__(self, settings: Settings, *, name: str | None = None, poll_seconds: float = 1.0) -> None:
        self.settings = settings
        self.owner = f"{name or 'worker'}:{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.poll_seconds = poll_seconds
        self.webhooks = partner_webhooks.Sender()
        self.next_expiry_notices = datetime.min.replace(tzinfo=UTC)

    async def tick(self) -> int:
        """One pass over every queue; returns how many items it handled."""
        if self.settings.test_clock:
            await clock.refresh()
        handled = 0
        for item in await work.claim("outbox_event", self.owner, limit=50):
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
        deliveries = await work.claim("webhook_delivery", self.owner, limit=partner_webhooks.BATCH)
        if deliveries:  # sent side by side: a slow receiver does not hold up the others
            await asyncio.gather(*(self.webhooks.send(self.owner, claimed) for claimed in deliveries))
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
        for item in await work.claim("job", self.owner, limit=20):
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
        await idempotency.schedule_purge(clock.now())
        while True:
            try:
                busy = await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker tick failed")
                busy = 0
            if not busy:
                await asyncio.sleep(self.poll_seconds)
