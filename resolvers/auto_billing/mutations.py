"""Auto-billing's mutation: the partner's setting, and its clients'."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from billing.auto_billing import engine
from billing.core.money import to_minor
from models.enums import Permission
from schema.auth import target_partner, viewer_with
from schema.auto_billing.types import CREDITS, AutoBilling
from schema.context import Context
from schema.errors import UserError
from schema.mutations import mutation
from schema.tenants.types import Partner


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


@strawberry.type
class Mutation:
    @mutation(
        permission=Permission.MANAGE_BILLING,
        description="Auto-billing on: plan grants come out of the partner's pool, and a short pool buys what it lacks.",
    )
    async def set_auto_billing(self, info: Info[Context, None], input: SetAutoBillingInput) -> SetAutoBillingPayload:
        viewer = viewer_with(info)
        seen = await engine.configure(
            viewer,
            partner_id=target_partner(viewer, input.partner_id),
            enabled=input.enabled,
            for_clients=input.for_clients,
            client_overdraft=to_minor(input.client_overdraft, CREDITS, field="clientOverdraft"),
        )
        return SetAutoBillingPayload(auto_billing=AutoBilling.of(seen, Partner.of(seen.partner)))
