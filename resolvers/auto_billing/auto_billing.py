"""Auto-billing (flow C, Stammer): the partner's setting, its pool, what auto-billing bought and what
its clients are still owed."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from billing.auto_billing import engine
from billing.core.money import to_minor
from models.enums import Permission, Unit
from schema.amounts import Quantity
from schema.auth import target_partner, viewer_with
from schema.context import Context
from schema.errors import UserError, payload
from schema.ids import to_global_id
from schema.sales.types import Payment
from schema.tenants.types import Partner

CREDITS = Unit.MESSAGE_CREDITS.value


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


@strawberry.type(description="Units a workspace is owed out of its partner's pool: a plan's grant, or a purchase.")
class PoolGrant:
    workspace_id: strawberry.ID
    quantity: Quantity
    source: str = strawberry.field(description='What owes it: "SubscriptionPeriod:12", "Payment:7".')
    status: str
    note: str
    created_at: datetime


@strawberry.type(description="A partner's auto-billing: its setting, its pool, its purchases.")
class AutoBilling:
    partner: Partner
    enabled: bool = strawberry.field(
        description="Plan grants of MESSAGE_CREDITS and SEATS come out of the pool; a short pool buys the cheapest"
        " combination of the platform's packages, charged to the partner's saved card."
    )
    for_clients: bool = strawberry.field(description="Workspaces buy the partner's packages when usage runs short.")
    client_overdraft: Quantity = strawberry.field(description="Usage accepted beyond the balance while they buy.")
    clients_active: bool = strawberry.field(description="forClients, and the partner sells MESSAGE_CREDITS packages.")
    pools: list[AutoBillingPool]
    purchases: list[Payment] = strawberry.field(description="Auto-billing payments, newest first (at most 50).")
    waiting: list[PoolGrant] = strawberry.field(description="What workspaces are still owed, oldest first.")

    @classmethod
    def of(cls, seen: engine.Overview) -> AutoBilling:
        return cls(
            partner=Partner.of(seen.partner),
            enabled=seen.settings.enabled,
            for_clients=seen.settings.for_clients,
            client_overdraft=Quantity.of(seen.settings.client_overdraft, CREDITS),
            clients_active=seen.clients_active,
            pools=[
                AutoBillingPool(
                    unit=pool.unit,
                    balance=Quantity.of(pool.balance, pool.unit),
                    waiting=Quantity.of(pool.waiting, pool.unit),
                    buying=pool.buying,
                    failures=pool.failures,
                    retry_after=pool.retry_after,
                    last_failure=pool.last_failure,
                )
                for pool in seen.pools
            ],
            purchases=[Payment.of(row) for row in seen.purchases],
            waiting=[
                PoolGrant(
                    workspace_id=strawberry.ID(to_global_id("Workspace", grant.workspace_id)),
                    quantity=Quantity.of(grant.quantity, grant.unit),
                    source=grant.source,
                    status=grant.status.value,
                    note=grant.note,
                    created_at=grant.created_at,
                )
                for grant in seen.waiting
            ],
        )


async def auto_billing_of(info: Info[Context, None], partner_id: strawberry.ID | None = None) -> AutoBilling:
    viewer = viewer_with(info, Permission.MANAGE_BILLING)
    seen = await engine.overview(viewer, partner_id=target_partner(viewer, partner_id))
    return AutoBilling.of(seen)


@strawberry.input(description="A partner's auto-billing, and its clients' (with the usage they may overdraw).")
class SetAutoBillingInput:
    enabled: bool
    partner_id: strawberry.ID | None = None
    for_clients: bool = False
    client_overdraft: str = strawberry.field(
        default="0", description="MESSAGE_CREDITS a workspace may use beyond its balance while its purchase runs."
    )


@strawberry.type
class SetAutoBillingPayload:
    auto_billing: AutoBilling | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def set_auto_billing(info: Info[Context, None], input: SetAutoBillingInput) -> SetAutoBillingPayload:
    async def run() -> SetAutoBillingPayload:
        viewer = viewer_with(info, Permission.MANAGE_BILLING)
        partner_id = target_partner(viewer, input.partner_id)
        await engine.configure(
            viewer,
            partner_id=partner_id,
            enabled=input.enabled,
            for_clients=input.for_clients,
            client_overdraft=to_minor(input.client_overdraft, CREDITS, field="clientOverdraft"),
        )
        return SetAutoBillingPayload(auto_billing=AutoBilling.of(await engine.overview(viewer, partner_id=partner_id)))

    return await payload(run, lambda errors: SetAutoBillingPayload(errors=errors))
