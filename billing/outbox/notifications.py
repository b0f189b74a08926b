"""Delivery of outbox events: to the partner's webhook endpoints (``billing.outbox.partner_webhooks``), and
to the people concerned by e-mail (``billing.outbox.emails``), and to the log."""

from __future__ import annotations

import logging
from typing import Any

from billing.outbox import emails, partner_webhooks

log = logging.getLogger("whitebill.notifications")


async def deliver(event: dict[str, Any]) -> None:
    """Queue the event for the partner's webhook endpoints (each is then sent, signed, by a worker)."""
    queued = await partner_webhooks.fan_out(event)
    await emails.send(event)
    log.info(
        "notification",
        extra={
            "event_id": event["id"],
            "event_type": event["event_type"],
            "partner_id": event["partner_id"],
            "webhooks": queued,
        },
    )
