"""The audit log and the outbox: both written in the caller's transaction.

An audit row's ``before`` and ``after`` hold values as the API shows them, so a reader compares them
with what the API answers: money as the API's ``Money`` (:func:`money`), a wallet quantity as its
``Quantity`` (:func:`quantity`), a row by its global id (:func:`global_id`); never minor units or
database ids."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import orjson
from tortoise import timezone

from billing.core import clock, sql
from billing.core.ids import to_global_id
from billing.core.money import Money, format_minor
from models.operations import OutboxEvent

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
    text, params = entry(
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        partner_id=partner_id,
        before=before,
        after=after,
    )
    await sql.execute(text, *params)


def entry(
    *,
    actor: str,
    action: str,
    target_type: str,
    target_id: Any,
    partner_id: int | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> sql.Statement:
    """The statement that :func:`record` runs, for a caller that sends it together with others
    (``sql.write_then_read``). A plain INSERT: the ORM's model round trip costs more CPU than the
    statement itself on hot paths."""
    return (
        "INSERT INTO audit_log (created_at, partner_id, actor, action, target_type, target_id, before, after,"
        " request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        (
            timezone.now(),  # like the ORM's auto_now_add: real time, not the test clock
            partner_id,
            actor,
            action,
            target_type,
            str(target_id),
            _json(before),
            _json(after),
            request_id.get(),
        ),
    )


def money(value: Money) -> dict[str, str]:
    """{"amount": "12.34", "currency": "BRL"}: a price, a payment, a refund."""
    return {"amount": value.decimal_string(), "currency": value.currency}


def quantity(amount: int, unit: str) -> dict[str, str]:
    """{"amount": "150", "unit": "POINTS"}: a wallet's balance or movement, in the wallet's unit (which
    may be a currency: {"amount": "12.34", "unit": "BRL"})."""
    return {"amount": format_minor(amount, unit), "unit": unit}


def global_id(type_name: str, db_id: int | None) -> str | None:
    """The row's id as the API gives it; None stays None."""
    return None if db_id is None else to_global_id(type_name, db_id)


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


async def emit(event_type: str, partner_id: int | None, payload: dict[str, Any]) -> None:
    """Queue a notification; the worker delivers it after the surrounding transaction commits."""
    await OutboxEvent.create(partner_id=partner_id, event_type=event_type, payload=payload, run_at=clock.now())
