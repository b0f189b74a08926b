"""Provider webhooks: each provider event is processed exactly once, and what it says about a
payment goes through the payment state table (so fulfilment still happens exactly once)."""

from __future__ import annotations

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from billing import clock, payments
from gateways.base import Outcome, WebhookNotice
from models.enums import PaymentStatus
from models.payments import GatewayConfig, Payment, WebhookEvent

_STATUS = {
    Outcome.SUCCEEDED: PaymentStatus.SUCCEEDED,
    Outcome.PENDING: PaymentStatus.PENDING,
    Outcome.DECLINED: PaymentStatus.DECLINED,
}


async def process_notice(config: GatewayConfig, notice: WebhookNotice) -> bool:
    """Apply a notice verified with ``config``'s secret. It can only touch payments made through
    that configuration. Returns False for an event already processed."""
    async with in_transaction("default"):
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
            return False
        payment = (
            await Payment.get_or_none(gateway_config_id=config.id, provider_ref=notice.provider_ref)
            if notice.provider_ref
            else None
        )
        if payment is not None:
            if notice.disputed:
                await payments.move(payment.id, PaymentStatus.DISPUTED, reason=notice.event_type)
            elif notice.outcome in _STATUS:
                await payments.move(payment.id, _STATUS[notice.outcome], reason=notice.event_type)
        event.processed_at = clock.now()
        await event.save(update_fields=["processed_at"])
    return True
