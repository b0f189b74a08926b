"""Subscriptions, add-ons on a workspace, usage reports and previews (flow A)."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from billing import subscriptions
from billing.errors import BillingError
from models.enums import Permission
from models.tenancy import Workspace as WorkspaceRow
from resolvers.auth import viewer_with
from schema.context import Context
from schema.errors import UserError
from schema.ids import expect_id
from schema.types import Limit, LimitExcess, Money, Subscription, Workspace


def _excesses(error: BillingError) -> list[LimitExcess]:
    return [LimitExcess(limit=e["limit"], usage=e["usage"], max=e["max"]) for e in error.details.get("excesses", [])]


@strawberry.input
class AssignPlanInput:
    workspace_id: strawberry.ID
    plan_id: strawberry.ID
    note: str = ""
    idempotency_key: str
    force: bool = strawberry.field(default=False, description="Assign even below current usage: the workspace pauses.")


@strawberry.type
class AssignPlanPayload:
    subscription: Subscription | None = None
    workspace: Workspace | None = None
    excesses: list[LimitExcess] = strawberry.field(default_factory=list)
    errors: list[UserError] = strawberry.field(default_factory=list)


async def assign_plan(info: Info[Context, None], input: AssignPlanInput) -> AssignPlanPayload:
    """The partner assigns a plan by hand (credit billing off)."""
    try:
        viewer = viewer_with(info, Permission.MANAGE_PLANS)
        subscription = await subscriptions.assign_plan(
            viewer,
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            plan_id=expect_id(input.plan_id, "Plan", "planId"),
            note=input.note,
            idempotency_key=input.idempotency_key,
            force=input.force,
        )
    except BillingError as error:
        return AssignPlanPayload(excesses=_excesses(error), errors=[UserError.of(error)])
    workspace = await WorkspaceRow.get(id=subscription.workspace_id)
    return AssignPlanPayload(subscription=Subscription.of(subscription), workspace=Workspace.of(workspace))


@strawberry.input(description="Set an add-on's quantity on a workspace; 0 removes it.")
class SetWorkspaceAddOnInput:
    workspace_id: strawberry.ID
    add_on_id: strawberry.ID
    quantity: int
    force: bool = strawberry.field(default=False, description="Apply even below current usage: the workspace pauses.")


@strawberry.type
class SetWorkspaceAddOnPayload:
    workspace: Workspace | None = None
    limits: list[Limit] = strawberry.field(default_factory=list)
    excesses: list[LimitExcess] = strawberry.field(default_factory=list)
    errors: list[UserError] = strawberry.field(default_factory=list)


async def set_workspace_add_on(info: Info[Context, None], input: SetWorkspaceAddOnInput) -> SetWorkspaceAddOnPayload:
    try:
        viewer = viewer_with(info, Permission.MANAGE_PLANS)
        workspace_id = expect_id(input.workspace_id, "Workspace", "workspaceId")
        limits = await subscriptions.set_add_on(
            viewer,
            workspace_id=workspace_id,
            add_on_id=expect_id(input.add_on_id, "AddOn", "addOnId"),
            quantity=input.quantity,
            force=input.force,
        )
    except BillingError as error:
        return SetWorkspaceAddOnPayload(excesses=_excesses(error), errors=[UserError.of(error)])
    workspace = await WorkspaceRow.get(id=workspace_id)
    return SetWorkspaceAddOnPayload(workspace=Workspace.of(workspace), limits=Limit.all_of(limits))


@strawberry.input(description="The platform's product reports a workspace's current usage of a limited metric.")
class ReportUsageInput:
    workspace_id: strawberry.ID
    metric: str
    value: int


@strawberry.type
class ReportUsagePayload:
    workspace: Workspace | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def report_usage(info: Info[Context, None], input: ReportUsageInput) -> ReportUsagePayload:
    try:
        viewer = viewer_with(info, Permission.REPORT_USAGE)
        row = await subscriptions.report_usage(
            viewer,
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            metric=input.metric,
            value=input.value,
        )
    except BillingError as error:
        return ReportUsagePayload(errors=[UserError.of(error)])
    return ReportUsagePayload(workspace=Workspace.of(row))


@strawberry.input
class AddOnQuantityInput:
    add_on_id: strawberry.ID
    quantity: int


@strawberry.type(description="What a change would do, without doing it.")
class ChangePreview:
    limits: list[Limit]
    price: Money | None
    would_pause: bool
    excesses: list[LimitExcess]


async def preview_change(
    info: Info[Context, None],
    workspace_id: strawberry.ID,
    plan_id: strawberry.ID | None = None,
    add_ons: list[AddOnQuantityInput] | None = None,
) -> ChangePreview:
    viewer = viewer_with(info)
    result = await subscriptions.preview(
        viewer,
        workspace_id=expect_id(workspace_id, "Workspace", "workspaceId"),
        plan_id=expect_id(plan_id, "Plan", "planId") if plan_id else None,
        add_on_quantities={expect_id(a.add_on_id, "AddOn", "addOnId"): a.quantity for a in (add_ons or [])[:50]},
    )
    return ChangePreview(
        limits=Limit.all_of(result.limits),
        price=Money.of(result.price.amount, result.price.currency) if result.price else None,
        would_pause=result.would_pause,
        excesses=[LimitExcess(limit=e.limit, usage=e.usage, max=e.maximum) for e in result.excesses],
    )
