"""Provider webhooks: each provider event is processed exactly once, and what it says about a
payment goes through the payment state table (so fulfilment still happens exactly once)."""

from __future__ import annotations

from enum import StrEnum

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from billing.charges import charging, payments
from billing.core import clock
from billing.sales import refunds
from gateways.base import Outcome, WebhookNotice
from models.enums import PaymentStatus
from models.payments import GatewayConfig, Payment, WebhookEvent

_STATUS = {
    Outcome.SUCCEEDED: PaymentStatus.SUCCEEDED,
    Outcome.PENDING: PaymentStatus.PENDING,
    Outcome.DECLINED: PaymentStatus.DECLINED,
}


class NoticeResult(StrEnum):
    PROCESSED = "PROCESSED"
    DUPLICATE = "DUPLICATE"  # this event was processed before: nothing to do
    # No payment of this configuration matches (yet): the event may have overtaken the charge's own
    # reply. Nothing is recorded, so the provider's redelivery will be processed.
    UNMATCHED = "UNMATCHED"


async def _find_payment(config: GatewayConfig, notice: WebhookNotice) -> Payment | None:
    scoped = Payment.filter(gateway_config_id=config.id)
    if notice.provider_ref:
        payment = await scoped.get_or_none(provider_ref=notice.provider_ref)
        if payment is not None:
            return payment
    if notice.reference:
        return await scoped.get_or_none(reference=notice.reference)
    return None


async def process_notice(config: GatewayConfig, notice: WebhookNotice) -> NoticeResult:
    """Apply a notice verified with ``config``'s secret. It can only touch payments made through
    that configuration."""
    async with in_transaction("default"):
        payment = await _find_payment(config, notice)
        if payment is None:
            return NoticeResult.UNMATCHED
        try:
            async with in_transaction("default"):  # a savepoint: a duplicate must not abort the outer transaction
                event = await WebhookEvent.create(
                    gateway_config_id=config.id,
                    provider=config.provider,
                    event_id=notice.event_id,
                    event_type=notice.event_type,
                    payload=notice.raw,
                )
        except IntegrityError:
            return NoticeResult.DUPLICATE
        if notice.provider_ref and payment.provider_ref is None:
            payment.provider_ref = notice.provider_ref
            await payment.save(update_fields=["provider_ref"])
        if notice.charged_back:
            await refunds.record_chargeback(payment.id, reason=notice.event_type)
        elif notice.disputed:
            await payments.move(payment.id, PaymentStatus.DISPUTED, reason=notice.event_type)
        elif notice.refunded_amount is not None:
            await refunds.record_refund(payment.id, notice.refunded_amount, reason=notice.event_type)
        elif notice.outcome in _STATUS:
            await payments.move(payment.id, _STATUS[notice.outcome], reason=notice.event_type)
        if notice.saved_method is not None and payment.purpose.get("save_card"):
            await charging.keep_saved_method(
                config_id=config.id,
                partner_id=payment.partner_id,
                payer_key=payment.payer_key,
                saved=notice.saved_method,
            )
        event.processed_at = clock.now()
        await event.save(update_fields=["processed_at"])
    return NoticeResult.PROCESSED
