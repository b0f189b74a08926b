"""Provider webhooks: each provider event is processed exactly once, and what it says about a
payment goes through the payment state table (so fulfilment still happens exactly once).

A provider keeps a queue per webhook and only a 200 moves it on (Asaas pauses it after 15 failures in a
row), so every verified event is answered 200, whatever it is about:

- an event about a payment of any of the partner's configurations of that provider is applied to that
  payment (a partner that switched configurations gets the old one's events at the new URL too);
- one that matches nothing (a transfer, an invoice, a payment made outside whitebill) is kept as ignored,
  shown to the partner, and changes nothing. It may also have overtaken the charge's own reply, which
  stores the provider's reference after the event looked: when a payment learns that reference
  (:func:`apply_held_events`, run by the charges area through :mod:`billing.dispatch`), the kept events are
  applied to it. The event keeps itself before looking again, the reply stores the reference before
  looking for kept events: one of the two always sees the other, and ``WebhookEvent``'s uniqueness makes
  it apply once.

Our answers are counted per configuration: after :data:`WEBHOOK_FAILING_AFTER` non-2xx in a row the partner
is told (``gateway.webhook_failing``) and the configuration shows it, until the next 2xx.
"""

from __future__ import annotations

import dataclasses
import logging
from enum import StrEnum
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Subquery
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from billing.charges import charging, payments
from billing.core import audit, clock, sql, tenancy
from billing.core.tenancy import Viewer
from billing.sales import refunds
from gateways.base import Outcome, RefundState, SavedMethod, WebhookNotice
from models.enums import PaymentStatus, Permission, ViewerKind
from models.payments import GatewayConfig, IgnoredProviderEvent, Payment, WebhookEvent

_STATUS = {
    Outcome.SUCCEEDED: PaymentStatus.SUCCEEDED,
    Outcome.PENDING: PaymentStatus.PENDING,
    Outcome.DECLINED: PaymentStatus.DECLINED,
}
log = logging.getLogger("whitebill.provider_webhooks")
WEBHOOK_FAILING = "gateway.webhook_failing"
WEBHOOK_FAILING_AFTER = 5  # our non-2xx answers in a row to one configuration's webhooks


class NoticeResult(StrEnum):
    PROCESSED = "PROCESSED"
    DUPLICATE = "DUPLICATE"  # this event was processed before: nothing to do
    # About no payment of the partner's configurations of this provider: kept as ignored, nothing changed.
    IGNORED = "IGNORED"


def _siblings(config: GatewayConfig) -> QuerySet[GatewayConfig]:
    """The partner's configurations of this provider (None: the platform's): events of one may arrive at
    another's URL when the partner switched, and are theirs to apply."""
    return GatewayConfig.filter(partner_id=config.partner_id, provider=config.provider)


async def _find_payment(config: GatewayConfig, notice: WebhookNotice) -> Payment | None:
    scoped = Payment.filter(gateway_config_id__in=Subquery(_siblings(config).values("id")))
    if notice.provider_ref:
        payment = await scoped.get_or_none(provider_ref=notice.provider_ref)
        if payment is not None:
            return payment
    if notice.reference:  # the event overtook the charge's reply, but echoes our reference
        return await scoped.get_or_none(reference=notice.reference)
    return None


async def process_notice(config: GatewayConfig, notice: WebhookNotice) -> NoticeResult:
    """Apply a notice verified with ``config``'s secret. It can only touch payments made through the
    configurations of ``config``'s partner and provider."""
    async with in_transaction("default"):
        payment = await _find_payment(config, notice)
        if payment is not None:
            return await _apply(payment, notice)
        await _keep_ignored(config, notice)
    if notice.provider_ref:
        # The charge's reply may have stored this reference since we looked, and looked for kept events
        # before ours was committed: look again now that it is.
        payment = await _find_payment(config, notice)
        if payment is not None and await apply_held_events(payment):
            return NoticeResult.PROCESSED
    return NoticeResult.IGNORED


async def _apply(payment: Payment, notice: WebhookNotice) -> NoticeResult:
    """Apply a notice to its payment, once per provider event (recorded under the payment's own
    configuration, whichever URL the event arrived at)."""
    async with in_transaction("default"):
        try:
            async with in_transaction("default"):  # a savepoint: a duplicate must not abort the outer transaction
                event = await WebhookEvent.create(
                    gateway_config_id=payment.gateway_config_id,
                    provider=payment.provider,
                    event_id=notice.event_id,
                    event_type=notice.event_type,
                    payload=notice.raw,
                )
        except IntegrityError:
            return NoticeResult.DUPLICATE
        was = payment.status
        if notice.provider_ref and payment.provider_ref is None:
            payment.provider_ref = notice.provider_ref
            await payment.save(update_fields=["provider_ref"])
        if notice.charged_back:
            await refunds.record_chargeback(payment.id, reason=notice.event_type)
        elif notice.disputed:
            # The reconciler asks how the dispute stands every day, in case its end is never announced.
            await payments.move(
                payment.id,
                PaymentStatus.DISPUTED,
                reason=notice.event_type,
                next_check_at=clock.now() + refunds.DISPUTE_CHECK,
            )
        elif notice.refunds:
            await refunds.apply_states(
                payment, notice.refunds, reason=notice.event_type, complete=notice.refunds_complete
            )
        elif notice.refunded_amount is not None:
            await refunds.record_refund(payment.id, notice.refunded_amount, reason=notice.event_type)
        elif notice.receipt_undone:
            await refunds.undo_receipt(
                payment.id,
                event_id=notice.event_id,
                reason=f"cash receipt undone at the provider ({notice.event_type})",
            )
        elif notice.outcome in _STATUS:
            if notice.outcome is Outcome.SUCCEEDED:
                await refunds.paid_after_undo(payment.id, reason=notice.event_type)
            await payments.move(payment.id, _STATUS[notice.outcome], reason=notice.event_type)
        config_id = payment.gateway_config_id
        wants_card = bool(payment.purpose.get("save_card")) and config_id is not None
        if notice.saved_method is not None and wants_card and config_id is not None:
            await charging.keep_saved_method(
                config_id=config_id,
                partner_id=payment.partner_id,
                payer_key=payment.payer_key,
                saved=notice.saved_method,
                remote_ip=payment.remote_ip,
            )
        elif wants_card and notice.outcome is Outcome.SUCCEEDED and was is not PaymentStatus.SUCCEEDED:
            # Paid now (this event moved it), and the provider kept no card: saving is off at the provider.
            if await _status(payment) is PaymentStatus.SUCCEEDED:
                await charging.card_not_kept(payment)
        event.processed_at = clock.now()
        await event.save(update_fields=["processed_at"])
    return NoticeResult.PROCESSED


async def _status(payment: Payment) -> PaymentStatus:
    await payment.refresh_from_db()
    return payment.status


def _kept(notice: WebhookNotice) -> dict[str, Any]:
    kept = dataclasses.asdict(notice)
    kept.pop("raw")
    return kept


def _restored(kept: dict[str, Any], payload: dict[str, Any]) -> WebhookNotice:
    saved = kept.get("saved_method")
    states = tuple(
        RefundState(**{**state, "outcome": Outcome(state["outcome"])}) for state in kept.get("refunds") or ()
    )
    return WebhookNotice(
        **{
            **kept,
            "outcome": Outcome(kept["outcome"]) if kept.get("outcome") else None,
            "saved_method": SavedMethod(**saved) if saved else None,
            "refunds": states,
            "raw": payload,
        }
    )


async def _keep_ignored(config: GatewayConfig, notice: WebhookNotice) -> None:
    try:
        async with in_transaction("default"):  # a savepoint: the same event again is already kept
            await IgnoredProviderEvent.create(
                gateway_config_id=config.id,
                provider=config.provider,
                event_id=notice.event_id,
                event_type=notice.event_type,
                provider_ref=notice.provider_ref,
                reference=notice.reference,
                notice=_kept(notice),
                payload=notice.raw,
            )
    except IntegrityError:
        pass


async def apply_held_events(payment: Payment) -> bool:
    """Apply, in the order they arrived, the kept events that name this payment's provider reference and
    arrived at one of its partner's configurations of its provider; True if one was applied now."""
    if not payment.provider_ref or payment.gateway_config_id is None:
        return False
    config = await GatewayConfig.get(id=payment.gateway_config_id)
    held = await IgnoredProviderEvent.filter(
        gateway_config_id__in=Subquery(_siblings(config).values("id")), provider_ref=payment.provider_ref
    ).order_by("id")
    applied = False
    for row in held:
        async with in_transaction("default"):
            # The delete is the claim: of two processes applying it, one deletes it.
            if await IgnoredProviderEvent.filter(id=row.id).delete() != 1:
                continue
            fresh = await Payment.get(id=payment.id)
            applied = await _apply(fresh, _restored(row.notice, row.payload)) is NoticeResult.PROCESSED or applied
    return applied


# Kept events whose payment has its provider reference by now, among the partner's configurations of the
# provider: what a process that stopped between storing a charge's reply and applying them left behind.
_HELD_AND_MATCHED = (
    "SELECT DISTINCT p.id FROM ignored_provider_event i "
    "JOIN gateway_config gi ON gi.id = i.gateway_config_id "
    "JOIN payment p ON p.provider = i.provider AND p.provider_ref = i.provider_ref "
    "JOIN gateway_config gp ON gp.id = p.gateway_config_id "
    "WHERE gp.provider = gi.provider "
    "AND (gp.partner_id = gi.partner_id OR (gp.partner_id IS NULL AND gi.partner_id IS NULL)) "
    "ORDER BY p.id LIMIT $1"
)


async def run_due(*, limit: int = 20) -> int:
    """The worker's sweep: apply kept events that a payment now matches; returns how many payments."""
    handled = 0
    for row in await sql.fetch(_HELD_AND_MATCHED, limit):
        try:
            await apply_held_events(await Payment.get(id=int(row["id"])))
        except Exception:  # left kept: tried again on the next sweep
            log.exception("applying kept provider events failed", extra={"payment_id": row["id"]})
            continue
        handled += 1
    return handled


def ignored_events_of(viewer: Viewer, config_id: int) -> QuerySet[IgnoredProviderEvent]:
    """The events kept as ignored at one configuration's URL, for who may configure its gateway."""
    if viewer.kind is ViewerKind.WORKSPACE:
        return IgnoredProviderEvent.filter(id=-1)
    viewer.require(Permission.CONFIGURE_GATEWAY)
    visible = GatewayConfig.filter(id=config_id)
    if not viewer.is_platform:
        visible = visible.filter(partner_id__in=Subquery(tenancy.partners(viewer).values("id")))
    return IgnoredProviderEvent.filter(gateway_config_id__in=Subquery(visible.values("id")))


async def record_answer(config: GatewayConfig, status: int) -> None:
    """Count our answer to a webhook of ``config``: a 2xx ends a run of failures, the
    :data:`WEBHOOK_FAILING_AFTER`-th non-2xx in a row tells the partner, once per run."""
    if 200 <= status < 300:
        await sql.execute(
            "UPDATE gateway_config SET webhook_failures = 0, webhook_failing_since = NULL "
            "WHERE id = $1 AND (webhook_failures > 0 OR webhook_failing_since IS NOT NULL)",
            config.id,
        )
        return
    async with in_transaction("default"):
        rows = await sql.fetch(
            "UPDATE gateway_config SET webhook_failures = webhook_failures + 1 WHERE id = $1 "
            "RETURNING webhook_failures",
            config.id,
        )
        if not rows or int(rows[0]["webhook_failures"]) != WEBHOOK_FAILING_AFTER:
            return
        now = clock.now()
        await sql.execute("UPDATE gateway_config SET webhook_failing_since = $1 WHERE id = $2", now, config.id)
        await audit.emit(
            WEBHOOK_FAILING,
            config.partner_id,
            {
                "gateway_config_id": audit.global_id("GatewayConfig", config.id),
                "provider": config.provider,
                "consecutive_failures": WEBHOOK_FAILING_AFTER,
                "last_status": status,
                "failing_since": now.isoformat(),
            },
        )
