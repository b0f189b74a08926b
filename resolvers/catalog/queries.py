"""What the catalog offers: plans, plan families, add-ons, WhatsApp rate cards."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.types import Info

from billing.catalog import plans as catalog
from billing.catalog import rate_cards
from models.catalog import PlanFamily as PlanFamilyRow
from models.enums import PlanStatus as DomainPlanStatus
from schema.auth import viewer_with
from schema.catalog.types import AddOn, CreditPackage, Plan, PlanFamily, PlanStatus, RateCard
from schema.context import Context
from schema.ids import expect_id
from schema.relay import Connection, paginate


@strawberry.type
class Query:
    @strawberry.field
    async def plans(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[Plan]:
        viewer = viewer_with(info)
        return await paginate(catalog.visible_plans(viewer), first=first, after=after, to_node=Plan.of)

    @strawberry.field
    async def plan_families(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[PlanFamily]:
        viewer_with(info)
        return await paginate(PlanFamilyRow.all(), first=first, after=after, to_node=PlanFamily.of)

    @strawberry.field
    async def add_ons(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[AddOn]:
        viewer = viewer_with(info)
        return await paginate(catalog.visible_add_ons(viewer), first=first, after=after, to_node=AddOn.of)

    @strawberry.field(
        description="Credit packages, oldest first: the platform sees every one, a partner its own and the"
        " platform's, a workspace its partner's on sale."
    )
    async def credit_packages(
        self,
        info: Info[Context, None],
        status: PlanStatus | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[CreditPackage]:
        rows = catalog.credit_packages(viewer_with(info), DomainPlanStatus(status.value) if status else None)
        return await paginate(rows, first=first, after=after, to_node=CreditPackage.of)

    @strawberry.field(description="WhatsApp prices per delivered message: a partner's (both prices) or the platform's.")
    async def rate_card(
        self,
        info: Info[Context, None],
        partner_id: strawberry.ID | None = None,
        currency: str | None = None,
        at: Annotated[
            datetime | None,
            strawberry.argument(description="Its prices as in force then (past or scheduled); now when not given."),
        ] = None,
    ) -> RateCard:
        """A partner's card in its currency (the caller's own when none is named); the platform's, by currency."""
        card = await rate_cards.card_for(
            viewer_with(info),
            partner_id=expect_id(partner_id, "Partner", "partnerId") if partner_id else None,
            currency=currency,
        )
        return RateCard.of(card.partner_id, card.currency, rate_cards.moment(at))
