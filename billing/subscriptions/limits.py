"""Limits and usage (flow A): effective limits (plan and add-ons), usage against them, and previews.

Effective limits = the plan's limits + the sum of add-on deltas times their quantities. A change
that would leave usage above a limit is refused with LIMIT_BELOW_USAGE and every excess, unless
forced, in which case the workspace is PAUSED until usage fits again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from billing.catalog import plans
from billing.core import tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Money
from billing.core.tenancy import Viewer
from billing.subscriptions import current
from models.catalog import AddOn, Plan
from models.subscriptions import UsageCounter, WorkspaceAddOn
from models.tenancy import Workspace


@dataclass(frozen=True, slots=True)
class Excess:
    limit: str
    usage: int
    maximum: int

    def as_dict(self) -> dict[str, Any]:
        return {"limit": self.limit, "usage": self.usage, "max": self.maximum}


@dataclass(frozen=True, slots=True)
class Preview:
    limits: dict[str, int]
    price: Money | None
    excesses: list[Excess] = field(default_factory=list)

    @property
    def would_pause(self) -> bool:
        return bool(self.excesses)


async def usage_of(workspace_id: int) -> dict[str, int]:
    return {u.metric: u.value for u in await UsageCounter.filter(workspace_id=workspace_id)}


def combine(plan_limits: dict[str, int], add_ons: list[tuple[dict[str, int], int]]) -> dict[str, int]:
    limits = dict(plan_limits)
    for deltas, quantity in add_ons:
        for name, delta in deltas.items():
            limits[name] = limits.get(name, 0) + delta * quantity
    return limits


def excesses(limits: dict[str, int], usage: dict[str, int]) -> list[Excess]:
    return [Excess(name, usage[name], limit) for name, limit in sorted(limits.items()) if usage.get(name, 0) > limit]


async def _current_add_ons(workspace_id: int) -> dict[int, tuple[dict[str, int], int]]:
    rows = await WorkspaceAddOn.filter(workspace_id=workspace_id, active=True).prefetch_related("add_on")
    return {row.add_on_id: (row.add_on.limit_deltas, row.quantity) for row in rows}


async def effective_limits(workspace_id: int) -> dict[str, int]:
    subscription = await current.live_subscription(workspace_id)
    plan_limits = (await Plan.get(id=subscription.plan_id)).limits if subscription else {}
    return combine(plan_limits, list((await _current_add_ons(workspace_id)).values()))


async def current_excesses(workspace_id: int) -> list[Excess]:
    return excesses(await effective_limits(workspace_id), await usage_of(workspace_id))


async def preview(
    viewer: Viewer, *, workspace_id: int, plan_id: int | None = None, add_on_quantities: dict[int, int] | None = None
) -> Preview:
    """The limits, price and excesses a change would give, without making it (dry run)."""
    workspace = await tenancy.get_scoped(tenancy.workspaces(viewer), workspace_id, "workspace")
    return await preview_for(viewer, workspace, plan_id, add_on_quantities or {})


async def preview_for(
    viewer: Viewer, workspace: Workspace, plan_id: int | None, add_on_quantities: dict[int, int]
) -> Preview:
    if plan_id is not None:
        plan: Plan | None = await tenancy.get_scoped(plans.visible_plans(viewer), plan_id, "plan")
    else:
        subscription = await current.live_subscription(workspace.id)
        plan = await Plan.get(id=subscription.plan_id) if subscription else None
    add_ons = await _current_add_ons(workspace.id)
    prices: list[Money] = []
    for add_on_id, quantity in add_on_quantities.items():
        if not 0 <= quantity <= 10_000:
            raise BillingError(ErrorCode.INVALID_INPUT, "quantity must be between 0 and 10000", field="quantity")
        add_on = await tenancy.get_scoped(plans.visible_add_ons(viewer), add_on_id, "add-on", field="addOnId")
        add_ons[add_on_id] = (add_on.limit_deltas, quantity)
    for add_on_id, (_, quantity) in add_ons.items():
        if quantity:
            # The client's price: a platform add-on with each margin down its partner's chain on it.
            each = await plans.add_on_price(workspace.partner_id, await AddOn.get(id=add_on_id))
            prices.append(Money(each.amount * quantity, each.currency))
    limits = combine(plan.limits if plan else {}, list(add_ons.values()))
    price = await plans.price_for(workspace.partner_id, plan) if plan else None
    if price is not None:
        for extra in prices:
            if extra.currency == price.currency:
                price = price + extra
    return Preview(limits, price, excesses(limits, await usage_of(workspace.id)))


def refuse_unless_forced(found: list[Excess], force: bool) -> None:
    if found and not force:
        listed = ", ".join(f"{e.limit} {e.usage} > {e.maximum}" for e in found)
        raise BillingError(
            ErrorCode.LIMIT_BELOW_USAGE,
            f"usage is above the resulting limits: {listed}",
            field="force",
            excesses=[e.as_dict() for e in found],
        )
