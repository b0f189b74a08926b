"""Partner webhooks: endpoints, test events, deliveries."""

from __future__ import annotations

import strawberry

from resolvers.outbox import webhooks


@strawberry.type
class Mutation:
    create_webhook_endpoint: webhooks.CreateWebhookEndpointPayload = strawberry.mutation(
        resolver=webhooks.create_webhook_endpoint, description="Receive events, signed; the secret is shown once."
    )
    send_test_webhook: webhooks.SendTestWebhookPayload = strawberry.mutation(resolver=webhooks.send_test_webhook)
    resend_webhook_delivery: webhooks.WebhookDeliveryPayload = strawberry.mutation(
        resolver=webhooks.resend_webhook_delivery
    )
