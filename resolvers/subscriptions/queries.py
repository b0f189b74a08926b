"""Subscriptions' queries: what a change would do, and the renewals ahead."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from billing.subscriptions import limits, renewals
from schema.auth import target_partner, viewer_with
from schema.context import Context
from schema.ids import expect_id
from schema.subscriptions.types import ChangePreview, RenewalForecast


@strawberry.input
class AddOnQuantityInput:
    add_on_id: strawberry.ID
    quantity: int


@strawberry.type
class Query:
    @strawberry.field(description="Dry run: limits, price and excesses a change would give.")
    async def preview_change(
        self,
        info: Info[Context, None],
        workspace_id: strawberry.ID,
        plan_id: strawberry.ID | None = None,
        add_ons: list[AddOnQuantityInput] | None = None,
    ) -> ChangePreview:
        preview = await limits.preview(
            viewer_with(info),
            workspace_id=expect_id(workspace_id, "Workspace", "workspaceId"),
            plan_id=expect_id(plan_id, "Plan", "planId") if plan_id else None,
            add_on_quantities={expect_id(a.add_on_id, "AddOn", "addOnId"): a.quantity for a in (add_ons or [])[:50]},
        )
        return ChangePreview.of(preview)

    @strawberry.field(
        description="Renewals due over the next days (7, 30...) for a partner's workspaces and its own plan."
    )
    async def renewal_forecast(
        self, info: Info[Context, None], days: int = 30, partner_id: strawberry.ID | None = None
    ) -> RenewalForecast:
        viewer = viewer_with(info)
        forecast = await renewals.forecast(viewer, partner_id=target_partner(viewer, partner_id), days=days)
        return RenewalForecast.of(forecast)
