"""What a workspace has and uses against its limits: add-ons set on it, and usage of limited metrics
(members, chatbots...) reported by the product. Each change recomputes the workspace's status."""

from __future__ import annotations

from tortoise.transactions import in_transaction

from billing.catalog import plans
from billing.core import audit, tenancy
from billing.core.tenancy import Viewer
from billing.subscriptions import workspace_status
from billing.subscriptions.limits import preview_for, refuse_unless_forced
from models.enums import Permission
from models.subscriptions import UsageCounter, WorkspaceAddOn
from models.tenancy import Workspace


async def set_add_on(
    viewer: Viewer, *, workspace_id: int, add_on_id: int, quantity: int, force: bool = False
) -> dict[str, int]:
    """Set an add-on's quantity on a workspace (0 removes it). Returns the new effective limits."""
    viewer.require(Permission.MANAGE_PLANS)
    workspace = await tenancy.get_scoped(tenancy.workspaces(viewer), workspace_id, "workspace")
    outcome = await preview_for(viewer, workspace, None, {add_on_id: quantity})
    refuse_unless_forced(outcome.excesses, force)
    async with in_transaction("default"):
        row = await WorkspaceAddOn.get_or_none(workspace_id=workspace.id, add_on_id=add_on_id)
        before = row.quantity if row and row.active else 0
        if row is None:
            row = WorkspaceAddOn(
                partner_id=workspace.partner_id, workspace_id=workspace.id, add_on_id=add_on_id, quantity=0
            )
        if quantity > 0 and before == 0:
            # Held again by hand, it is not paid in points: the points period it had ended with it.
            row.paid_through = None
        row.quantity, row.active, row.lapsed_at = quantity, quantity > 0, None
        await row.save()
        await audit.record(
            actor=viewer.actor,
            action="add_on.set",
            target_type="Workspace",
            target_id=workspace.id,
            partner_id=workspace.partner_id,
            before={"add_on_id": audit.global_id("AddOn", add_on_id), "quantity": before},
            after={"add_on_id": audit.global_id("AddOn", add_on_id), "quantity": quantity, "forced": force},
        )
        await workspace_status.recompute(workspace.id)
    return outcome.limits


async def report_usage(viewer: Viewer, *, workspace_id: int, metric: str, value: int) -> Workspace:
    """The platform's product reports current usage of a limited metric (members, chatbots...).

    A report that lowers usage is always taken. One that raises it is refused while the workspace
    may not grow: PAUSED (usage already above its limits), RESTRICTED or SUSPENDED."""
    viewer.require(Permission.REPORT_USAGE)
    workspace = await tenancy.get_scoped(tenancy.workspaces(viewer), workspace_id, "workspace")
    name = next(iter(plans.check_limits({metric: value}, field="metric")))
    async with in_transaction("default"):
        current = await UsageCounter.get_or_none(workspace_id=workspace.id, metric=name)
        if value > (current.value if current else 0):
            workspace_status.require_usage_may_grow(workspace, field="value")
        if current is None:
            await UsageCounter.create(
                partner_id=workspace.partner_id, workspace_id=workspace.id, metric=name, value=value
            )
        else:
            await UsageCounter.filter(id=current.id).update(value=value)
        await workspace_status.recompute(workspace.id)
    return await Workspace.get(id=workspace.id)
