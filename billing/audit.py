"""The audit log and the outbox: both written in the caller's transaction."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from billing import clock
from models.operations import AuditLog, OutboxEvent

# Set by the HTTP layer for each request, read here so every audit row carries it.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


async def record(
    *,
    actor: str,
    action: str,
    target_type: str,
    target_id: Any,
    partner_id: int | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    await AuditLog.create(
        partner_id=partner_id,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        before=before,
        after=after,
        request_id=request_id.get(),
    )


async def emit(event_type: str, partner_id: int | None, payload: dict[str, Any]) -> None:
    """Queue a notification; the worker delivers it after the surrounding transaction commits."""
    await OutboxEvent.create(partner_id=partner_id, event_type=event_type, payload=payload, run_at=clock.now())
