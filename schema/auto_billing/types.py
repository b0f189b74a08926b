"""Agency auto-billing (flow C): a partner's setting, its pool per unit, what auto-billing bought and
what the partner's clients are still owed."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from billing.auto_billing import engine
from models import auto_billing as auto_billing_models
from models.enums import Unit
from schema.amounts import Quantity
from schema.ids import to_global_id
from schema.relay import Connection, paginate
from schema.sales.types import Payment

if TYPE_CHECKING:
    from schema.tenants.types import Partner

CREDITS = Unit.MESSAGE_CREDITS.value

PoolGrantStatus = strawberry.enum(auto_billing_models.PoolGrantStatus)


@strawberry.type(
    description="One unit of a partner's pool (its wallet is in Partner.wallets): what it holds and owes, and its"
    " purchase."
)
class AutoBillingPool:
    unit: str
    balance: Quantity
    waiting: Quantity = strawberry.field(description="Owed to workspaces, delivered once bought.")
    buying: bool = strawberry.field(description="A purchase is in flight.")
    failures: int = strawberry.field(description="Declines in a row.")
    retry_after: datetime | None = strawberry.field(description="After a decline, the next attempt.")
    last_failure: str | None

    @classmethod
    def of(cls, pool: engine.PoolState) -> AutoBillingPool:
        return cls(
            unit=pool.unit,
            balance=Quantity.of(pool.balance, pool.unit),
            waiting=Quantity.of(pool.waiting, pool.unit),
            buying=pool.buying,
            failures=pool.failures,
            retry_after=pool.retry_after,
            last_failure=pool.last_failure,
        )


@strawberry.type(description="Units a workspace is owed out of its partner's pool: a plan's grant, or a purchase.")
class PoolGrant:
    workspace_id: strawberry.ID
    quantity: Quantity
    source: strawberry.ID = strawberry.field(
        description="What owes it: a paid period of a plan (a SubscriptionPeriod id) or the workspace's purchase"
        " (a Payment id)."
    )
    status: PoolGrantStatus
    note: str
    created_at: datetime

    @classmethod
    def of(cls, row: auto_billing_models.PoolGrant) -> PoolGrant:
        source_type, _, source_id = row.source.partition(":")  # "SubscriptionPeriod:12"
        return cls(
            workspace_id=strawberry.ID(to_global_id("Workspace", row.workspace_id)),
            quantity=Quantity.of(row.quantity, row.unit),
            source=strawberry.ID(to_global_id(source_type, int(source_id))),
            status=row.status,
            note=row.note,
            created_at=row.created_at,
        )


@strawberry.type(description="A partner's auto-billing: its setting, its pool, its purchases.")
class AutoBilling:
    partner: Annotated[Partner, strawberry.lazy("schema.tenants.types")]
    enabled: bool = strawberry.field(
        description="Plan grants of MESSAGE_CREDITS and SEATS come out of the pool; a short pool buys the cheapest"
        " combination of the platform's packages, charged to the partner's saved card."
    )
    for_clients: bool = strawberry.field(description="Workspaces buy the partner's packages when usage runs short.")
    client_overdraft: Quantity = strawberry.field(description="Usage accepted beyond the balance while they buy.")
    clients_active: bool = strawberry.field(description="forClients, and the partner sells MESSAGE_CREDITS packages.")
    pools: list[AutoBillingPool]
    seen: strawberry.Private[engine.Overview]

    @strawberry.field(description="Auto-billing payments (the pool's and its clients'), newest first.")
    async def purchases(self, first: int | None = None, after: str | None = None) -> Connection[Payment]:
        return await paginate(self.seen.purchases, first=first, after=after, to_node=Payment.of, newest_first=True)

    @strawberry.field(description="What workspaces are still owed, oldest first.")
    async def waiting(self, first: int | None = None, after: str | None = None) -> Connection[PoolGrant]:
        return await paginate(self.seen.waiting, first=first, after=after, to_node=PoolGrant.of)

    @classmethod
    def of(cls, seen: engine.Overview, partner: Partner) -> AutoBilling:
        """``partner``: the overview's partner as its GraphQL type (built by the caller, a layer above)."""
        return cls(
            partner=partner,
            enabled=seen.settings.enabled,
            for_clients=seen.settings.for_clients,
            client_overdraft=Quantity.of(seen.settings.client_overdraft, CREDITS),
            clients_active=seen.clients_active,
            pools=[AutoBillingPool.of(pool) for pool in seen.pools],
            seen=seen,
        )
