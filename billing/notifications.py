"""Delivery of outbox events. Partner webhooks and e-mail plug in here; until a partner has an
endpoint, an event is delivered to the log."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("whitebill.notifications")


async def deliver(event: dict[str, Any]) -> None:
    log.info(
        "notification",
        extra={"event_id": event["id"], "event_type": event["event_type"], "partner_id": event["partner_id"]},
    )
