"""Partner webhooks: adding an endpoint, sending it a test event, resending a delivery."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from billing.outbox import partner_webhooks, payloads
from models.enums import Permission
from schema.auth import target_partner, viewer_with
from schema.context import Context
from schema.errors import UserError
from schema.ids import expect_id
from schema.mutations import mutation
from schema.outbox.types import WebhookDelivery, WebhookEndpoint


@strawberry.input(description="https (loopback http outside production); events: the types wanted, empty for all.")
class CreateWebhookEndpointInput:
    url: str
    events: list[str] = strawberry.field(default_factory=list)
    max_attempts: int = 8
    partner_id: strawberry.ID | None = None
    payload_version: int = strawberry.field(
        default=payloads.LATEST, description="1 or 2 (the default): see WebhookEndpoint."
    )


@strawberry.type
class CreateWebhookEndpointPayload:
    endpoint: WebhookEndpoint | None = None
    secret: str | None = strawberry.field(default=None, description="The signing secret: shown this once.")
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class SetWebhookPayloadVersionInput:
    endpoint_id: strawberry.ID
    version: int


@strawberry.type
class WebhookEndpointPayload:
    endpoint: WebhookEndpoint | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class SendTestWebhookInput:
    endpoint_id: strawberry.ID


@strawberry.type
class SendTestWebhookPayload:
    event_id: str | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class ResendWebhookDeliveryInput:
    delivery_id: strawberry.ID


@strawberry.type
class WebhookDeliveryPayload:
    delivery: WebhookDelivery | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class Mutation:
    @mutation(permission=Permission.MANAGE_BILLING, description="Receive events, signed; the secret is shown once.")
    async def create_webhook_endpoint(
        self, info: Info[Context, None], input: CreateWebhookEndpointInput
    ) -> CreateWebhookEndpointPayload:
        viewer = viewer_with(info)
        endpoint, secret = await partner_webhooks.create_endpoint(
            viewer,
            partner_id=target_partner(viewer, input.partner_id),
            url=input.url,
            events=input.events,
            max_attempts=input.max_attempts,
            payload_version=input.payload_version,
        )
        return CreateWebhookEndpointPayload(endpoint=WebhookEndpoint.of(endpoint), secret=secret)

    @mutation(
        permission=Permission.MANAGE_BILLING,
        description="Move an endpoint to another payload version: events from now on are sent in it.",
    )
    async def set_webhook_payload_version(
        self, info: Info[Context, None], input: SetWebhookPayloadVersionInput
    ) -> WebhookEndpointPayload:
        endpoint = await partner_webhooks.set_payload_version(
            viewer_with(info),
            endpoint_id=expect_id(input.endpoint_id, "WebhookEndpoint", "endpointId"),
            version=input.version,
        )
        return WebhookEndpointPayload(endpoint=WebhookEndpoint.of(endpoint))

    @mutation(permission=Permission.MANAGE_BILLING, description="Send a webhook.test event to one endpoint.")
    async def send_test_webhook(self, info: Info[Context, None], input: SendTestWebhookInput) -> SendTestWebhookPayload:
        event = await partner_webhooks.send_test_event(
            viewer_with(info), endpoint_id=expect_id(input.endpoint_id, "WebhookEndpoint", "endpointId")
        )
        return SendTestWebhookPayload(event_id=f"evt_{event.id}")

    @mutation(
        permission=Permission.MANAGE_BILLING,
        description="Deliver once more, now (a DEAD delivery, or one the partner's receiver lost).",
    )
    async def resend_webhook_delivery(
        self, info: Info[Context, None], input: ResendWebhookDeliveryInput
    ) -> WebhookDeliveryPayload:
        delivery = await partner_webhooks.resend(
            viewer_with(info), delivery_id=expect_id(input.delivery_id, "WebhookDelivery", "deliveryId")
        )
        return WebhookDeliveryPayload(delivery=WebhookDelivery.of(delivery))
