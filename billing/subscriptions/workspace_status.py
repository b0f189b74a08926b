"""A workspace's status, derived from its subscription, its dunning stage and its usage.

Precedence SUSPENDED > RESTRICTED > PAUSED > ACTIVE; every reason that applies is kept:

- NO_PLAN: no live subscription -> RESTRICTED (operations answer PLAN_REQUIRED);
- PAYMENT_OVERDUE: a renewal is unpaid -> RESTRICTED from the partner's ``dunning_restrict_after``-th
  failure, SUSPENDED from its ``dunning_suspend_after``-th (operations answer PAYMENT_REQUIRED);
  listed, without changing the status, before that;
- LIMIT_EXCEEDED: usage above a limit -> PAUSED (usage may not grow; it resumes when usage fits).

Every change of status writes an outbox event in the caller's transaction; every change of status or
reasons is announced to subscribers (``billing.core.realtime``).
"""

from __future__ import annotations

from typing import Any

from billing.core import audit, realtime
from billing.core.errors import BillingError, ErrorCode
from billing.subscriptions import current, limits
from models.enums import StatusReasonKind, SubscriptionStatus, WorkspaceStatus
from models.tenancy import Partner, Workspace

_PRECEDENCE = [WorkspaceStatus.SUSPENDED, WorkspaceStatus.RESTRICTED, WorkspaceStatus.PAUSED]
_EVENTS = {
    WorkspaceStatus.ACTIVE: "workspace.resumed",
    WorkspaceStatus.PAUSED: "workspace.paused",
    WorkspaceStatus.RESTRICTED: "workspace.restricted",
    WorkspaceStatus.SUSPENDED: "workspace.suspended",
}


def dunning_stage(partner: Partner, failures: int) -> WorkspaceStatus | None:
    """The status a number of failed renewal attempts leads to (a threshold of 0 is off)."""
    if partner.dunning_suspend_after and failures >= partner.dunning_suspend_after:
        return WorkspaceStatus.SUSPENDED
    if partner.dunning_restrict_after and failures >= partner.dunning_restrict_after:
        return WorkspaceStatus.RESTRICTED
    return None


async def recompute(workspace_id: int) -> WorkspaceStatus:
    """Derive the status and every applying reason; an outbox event announces each change."""
    workspace = await Workspace.get(id=workspace_id)
    reasons: list[dict[str, Any]] = []
    statuses: set[WorkspaceStatus] = set()
    subscription = await current.live_subscription(workspace_id)
    if subscription is None:
        reasons.append({"kind": StatusReasonKind.NO_PLAN})
        statuses.add(WorkspaceStatus.RESTRICTED)
    elif subscription.status is SubscriptionStatus.PAST_DUE:
        reasons.append({"kind": StatusReasonKind.PAYMENT_OVERDUE, "failures": subscription.failed_renewals})
        stage = dunning_stage(await Partner.get(id=workspace.partner_id), subscription.failed_renewals)
        if stage is not None:
            statuses.add(stage)
    for excess in await limits.current_excesses(workspace_id):
        reasons.append({"kind": StatusReasonKind.LIMIT_EXCEEDED, **excess.as_dict()})
        statuses.add(WorkspaceStatus.PAUSED)
    status = next((s for s in _PRECEDENCE if s in statuses), WorkspaceStatus.ACTIVE)
    if status != workspace.status or reasons != workspace.status_reasons:
        previous = workspace.status
        workspace.status, workspace.status_reasons = status, reasons
        await workspace.save(update_fields=["status", "status_reasons"])
        await realtime.publish(realtime.Change(realtime.WORKSPACE, workspace.id, workspace.partner_id))
        if status != previous:
            await audit.emit(
                _EVENTS[status],
                workspace.partner_id,
                {"workspace_id": workspace.id, "status": status, "previous": previous, "reasons": reasons},
            )
    return status


def require_operational(workspace: Workspace) -> None:
    """Refuse a workspace operation that is neither a subscription nor a payment one while the
    workspace is RESTRICTED or SUSPENDED: PLAN_REQUIRED without a plan, else PAYMENT_REQUIRED."""
    if workspace.status is WorkspaceStatus.SUSPENDED:
        raise BillingError(ErrorCode.PAYMENT_REQUIRED, "the workspace is suspended until its overdue renewal is paid")
    if workspace.status is WorkspaceStatus.RESTRICTED:
        if any(r.get("kind") == StatusReasonKind.NO_PLAN for r in workspace.status_reasons):
            raise BillingError(ErrorCode.PLAN_REQUIRED, "the workspace has no active plan: subscribe to one first")
        raise BillingError(ErrorCode.PAYMENT_REQUIRED, "the workspace is restricted until its overdue renewal is paid")


def require_usage_may_grow(workspace: Workspace, field: str | None = None) -> None:
    """Refuse usage that grows (a metric reported higher, units consumed) while the workspace may not:
    RESTRICTED or SUSPENDED as :func:`require_operational` says, or PAUSED (its usage is already above
    its limits)."""
    require_operational(workspace)
    if workspace.status is WorkspaceStatus.PAUSED:
        raise BillingError(
            ErrorCode.WORKSPACE_PAUSED,
            "the workspace is paused: its usage is above its limits, so usage cannot grow",
            field=field,
        )
