"""Auto-billing's query: a partner's setting, its pool, what it bought and what its clients are owed."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from billing.auto_billing import engine
from models.enums import Permission
from schema.auth import target_partner, viewer_with
from schema.auto_billing.types import AutoBilling
from schema.context import Context
from schema.tenants.types import Partner


@strawberry.type
class Query:
    @strawberry.field(
        description="A partner's auto-billing: its setting, its pool, what it bought, what its clients are owed."
    )
    async def auto_billing(self, info: Info[Context, None], partner_id: strawberry.ID | None = None) -> AutoBilling:
        viewer = viewer_with(info, Permission.MANAGE_BILLING)
        seen = await engine.overview(viewer, partner_id=target_partner(viewer, partner_id))
        return AutoBilling.of(seen, Partner.of(seen.partner))
