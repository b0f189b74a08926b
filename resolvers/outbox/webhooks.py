"""Partner webhooks: endpoints, a test event, deliveries and resending one."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from billing.outbox import partner_webhooks
from models.enums import Permission
from schema.auth import target_partner, viewer_with
from schema.context import Context
from schema.errors import UserError, payload
from schema.ids import expect_id
from schema.outbox.types import WebhookDelivery, WebhookEndpoint


@strawberry.input(description="https (loopback http outside production); events: the types wanted, empty for all.")
class CreateWebhookEndpointInput:
    url: str
    events: list[str] = strawberry.field(default_factory=list)
    max_attempts: int = 8
    partner_id: strawberry.ID | None = None


@strawberry.type
class CreateWebhookEndpointPayload:
    endpoint: WebhookEndpoint | None = None
    secret: str | None = strawberry.field(default=None, description="The signing secret: shown this once.")
    errors: list[UserError] = strawberry.field(default_factory=list)


async def create_webhook_endpoint(
    info: Info[Context, None], input: CreateWebhookEndpointInput
) -> CreateWebhookEndpointPayload:
    async def run() -> CreateWebhookEndpointPayload:
        viewer = viewer_with(info, Permission.MANAGE_BILLING)
        endpoint, secret = await partner_webhooks.create_endpoint(
            viewer,
            partner_id=target_partner(viewer, input.partner_id),
            url=input.url,
            events=input.events,
            max_attempts=input.max_attempts,
        )
        return CreateWebhookEndpointPayload(endpoint=WebhookEndpoint.of(endpoint), secret=secret)

    return await payload(run, lambda errors: CreateWebhookEndpointPayload(errors=errors))


@strawberry.type
class WebhookDeliveryPayload:
    delivery: WebhookDelivery | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def resend_webhook_delivery(info: Info[Context, None], delivery_id: strawberry.ID) -> WebhookDeliveryPayload:
    async def run() -> WebhookDeliveryPayload:
        delivery = await partner_webhooks.resend(
            viewer_with(info, Permission.MANAGE_BILLING),
            delivery_id=expect_id(delivery_id, "WebhookDelivery", "deliveryId"),
        )
        return WebhookDeliveryPayload(delivery=WebhookDelivery.of(delivery))

    return await payload(run, lambda errors: WebhookDeliveryPayload(errors=errors))


@strawberry.type
class SendTestWebhookPayload:
    event_id: str | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def send_test_webhook(info: Info[Context, None], endpoint_id: strawberry.ID) -> SendTestWebhookPayload:
    async def run() -> SendTestWebhookPayload:
        event = await partner_webhooks.send_test_event(
            viewer_with(info, Permission.MANAGE_BILLING),
            endpoint_id=expect_id(endpoint_id, "WebhookEndpoint", "endpointId"),
        )
        return SendTestWebhookPayload(event_id=f"evt_{event.id}")

    return await payload(run, lambda errors: SendTestWebhookPayload(errors=errors))
