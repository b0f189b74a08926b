"""Partner webhook endpoints and their deliveries."""

from __future__ import annotations

from datetime import datetime

import strawberry
import strawberry.scalars

from models import enums
from models import operations as operations_models
from schema.ids import to_global_id
from schema.relay import Connection, Node, paginate

DeliveryState = strawberry.enum(enums.WorkState, name="DeliveryState")


@strawberry.type(
    description="One event sent (or to be sent) to one endpoint; retried with back-off until DONE or DEAD."
)
class WebhookDelivery(Node):
    event_id: str = strawberry.field(description="Stable across retries: receivers dedupe on it.")
    event_type: str
    state: DeliveryState
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: operations_models.WebhookDelivery) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(to_global_id("WebhookDelivery", row.id)),
            event_id=f"evt_{row.event_id}",
            event_type=row.event_type,
            state=row.state,
            attempts=row.attempts,
            last_status=row.last_status,
            last_error=row.last_error,
            next_attempt_at=row.run_at if row.state is enums.WorkState.PENDING else None,
            created_at=row.created_at,
        )


@strawberry.type(description="Where a partner receives its events, signed with HMAC-SHA256 (see the README).")
class WebhookEndpoint(Node):
    db_id: strawberry.Private[int]
    url: str
    events: list[str] = strawberry.field(description="Event types sent here; empty: all.")
    enabled: bool
    max_attempts: int
    secret_hint: str | None
    created_at: datetime
    payload_version: int = strawberry.field(
        description="The shape of the bodies sent here: 2, the API's global ids and ISO 8601 times (new"
        " endpoints); 1, database ids (endpoints made before 0.2.0). See setWebhookPayloadVersion."
    )

    @classmethod
    def of(cls, row: operations_models.WebhookEndpoint) -> WebhookEndpoint:
        return cls(
            id=strawberry.ID(to_global_id("WebhookEndpoint", row.id)),
            db_id=row.id,
            url=row.url,
            events=list(row.events),
            enabled=row.enabled,
            max_attempts=row.max_attempts,
            secret_hint=row.secret_hint,
            created_at=row.created_at,
            payload_version=row.payload_version,
        )

    @strawberry.field(description="Deliveries to this endpoint, oldest first.")
    async def deliveries(
        self, first: int | None = None, after: str | None = None, state: DeliveryState | None = None
    ) -> Connection[WebhookDelivery]:
        queryset = operations_models.WebhookDelivery.filter(endpoint_id=self.db_id)
        if state is not None:
            queryset = queryset.filter(state=state)
        return await paginate(queryset, first=first, after=after, to_node=WebhookDelivery.of)
