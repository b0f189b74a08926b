"""Subscriptions (assign, buy, change, cancel, auto-renew, partner plans, forecast), add-ons on a
workspace, usage reports and previews (flows A, E, F, G)."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from billing.core.errors import BillingError
from billing.subscriptions import entitlements, lifecycle, limits, renewals
from models import enums
from models.enums import Permission
from models.payments import Payment as PaymentRow
from models.subscriptions import Subscription as SubscriptionRow
from models.tenancy import Workspace as WorkspaceRow
from schema.amounts import Money
from schema.auth import target_partner, viewer_with
from schema.catalog.types import Limit
from schema.context import Context
from schema.errors import UserError, payload
from schema.ids import expect_id, to_global_id
from schema.sales.types import Payment
from schema.subscriptions.types import LimitExcess, Subscription
from schema.tenants.types import Workspace


def _excesses(error: BillingError) -> list[LimitExcess]:
    return [LimitExcess(limit=e["limit"], usage=e["usage"], max=e["max"]) for e in error.details.get("excesses", [])]


@strawberry.input
class AssignPlanInput:
    workspace_id: strawberry.ID
    plan_id: strawberry.ID
    note: str = ""
    idempotency_key: str
    force: bool = strawberry.field(default=False, description="Assign even below current usage: the workspace pauses.")
    charge_from: datetime | None = strawberry.field(
        default=None, description="Future-dated activation: active now, first charged on this date."
    )


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
        subscription = await lifecycle.assign_plan(
            viewer,
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            plan_id=expect_id(input.plan_id, "Plan", "planId"),
            note=input.note,
            idempotency_key=input.idempotency_key,
            force=input.force,
            charge_from=input.charge_from,
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
        result = await entitlements.set_add_on(
            viewer,
            workspace_id=workspace_id,
            add_on_id=expect_id(input.add_on_id, "AddOn", "addOnId"),
            quantity=input.quantity,
            force=input.force,
        )
    except BillingError as error:
        return SetWorkspaceAddOnPayload(excesses=_excesses(error), errors=[UserError.of(error)])
    workspace = await WorkspaceRow.get(id=workspace_id)
    return SetWorkspaceAddOnPayload(workspace=Workspace.of(workspace), limits=Limit.all_of(result))


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
        row = await entitlements.report_usage(
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
    result = await limits.preview(
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


PlanChangeTiming = strawberry.enum(enums.PlanChangeTiming)


@strawberry.type(description="A subscription started or changed, or the payment it waits for.")
class SubscriptionChangePayload:
    subscription: Subscription | None = None
    payment: Payment | None = strawberry.field(
        default=None, description="Set when the change waits for this payment (PENDING until it is paid)."
    )
    workspace: Workspace | None = None
    excesses: list[LimitExcess] = strawberry.field(default_factory=list)
    errors: list[UserError] = strawberry.field(default_factory=list)


async def _changed(made: SubscriptionRow | PaymentRow) -> SubscriptionChangePayload:
    if isinstance(made, PaymentRow):
        return SubscriptionChangePayload(payment=Payment.of(made))
    workspace = await WorkspaceRow.get(id=made.workspace_id) if made.workspace_id else None
    return SubscriptionChangePayload(
        subscription=Subscription.of(made), workspace=Workspace.of(workspace) if workspace else None
    )


def _refused(error: BillingError) -> SubscriptionChangePayload:
    return SubscriptionChangePayload(excesses=_excesses(error), errors=[UserError.of(error)])


@strawberry.input(description="A workspace buys a plan; allowed whatever its status.")
class PurchasePlanInput:
    workspace_id: strawberry.ID
    plan_id: strawberry.ID
    idempotency_key: str


async def purchase_plan(info: Info[Context, None], input: PurchasePlanInput) -> SubscriptionChangePayload:
    try:
        made = await lifecycle.purchase_plan(
            viewer_with(info),
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            plan_id=expect_id(input.plan_id, "Plan", "planId"),
            idempotency_key=input.idempotency_key,
        )
    except BillingError as error:
        return _refused(error)
    return await _changed(made)


@strawberry.input(description="Change a workspace's plan: upgrades at once, downgrades at period end (AUTO).")
class ChangePlanInput:
    workspace_id: strawberry.ID
    plan_id: strawberry.ID
    idempotency_key: str
    timing: PlanChangeTiming = enums.PlanChangeTiming.AUTO
    note: str = ""
    force: bool = strawberry.field(default=False, description="Change even below current usage: the workspace pauses.")


async def change_plan(info: Info[Context, None], input: ChangePlanInput) -> SubscriptionChangePayload:
    try:
        made = await lifecycle.change_plan(
            viewer_with(info),
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            plan_id=expect_id(input.plan_id, "Plan", "planId"),
            timing=enums.PlanChangeTiming(input.timing.value),
            note=input.note,
            idempotency_key=input.idempotency_key,
            force=input.force,
        )
    except BillingError as error:
        return _refused(error)
    return await _changed(made)


@strawberry.input
class CancelSubscriptionInput:
    workspace_id: strawberry.ID
    at_period_end: bool = strawberry.field(default=True, description="Keep the plan to the end of the paid period.")


async def cancel_subscription(info: Info[Context, None], input: CancelSubscriptionInput) -> SubscriptionChangePayload:
    try:
        made = await lifecycle.cancel(
            viewer_with(info),
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            at_period_end=input.at_period_end,
        )
    except BillingError as error:
        return _refused(error)
    return await _changed(made)


@strawberry.input(description="Auto-renew off: the plan runs to the end of its period and then ends.")
class SetAutoRenewInput:
    workspace_id: strawberry.ID
    enabled: bool


@strawberry.type
class WorkspacePayload:
    workspace: Workspace | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def set_auto_renew(info: Info[Context, None], input: SetAutoRenewInput) -> WorkspacePayload:
    async def run() -> WorkspacePayload:
        row = await lifecycle.set_auto_renew(
            viewer_with(info),
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            enabled=input.enabled,
        )
        return WorkspacePayload(workspace=Workspace.of(row))

    return await payload(run, lambda errors: WorkspacePayload(errors=errors))


@strawberry.input(description="A partner's own plan with the platform, paid from its centralised balance.")
class SubscribePartnerPlanInput:
    plan_id: strawberry.ID
    idempotency_key: str
    partner_id: strawberry.ID | None = None
    timing: PlanChangeTiming = enums.PlanChangeTiming.AUTO


async def subscribe_partner_plan(
    info: Info[Context, None], input: SubscribePartnerPlanInput
) -> SubscriptionChangePayload:
    try:
        viewer = viewer_with(info)
        made = await lifecycle.subscribe_partner_plan(
            viewer,
            partner_id=target_partner(viewer, input.partner_id),
            plan_id=expect_id(input.plan_id, "Plan", "planId"),
            timing=enums.PlanChangeTiming(input.timing.value),
            idempotency_key=input.idempotency_key,
        )
    except BillingError as error:
        return _refused(error)
    return await _changed(made)


@strawberry.type(description="One renewal expected in the forecast window.")
class ForecastRenewal:
    subscription_id: strawberry.ID
    workspace_id: strawberry.ID | None = strawberry.field(description="Null for the partner's own plan.")
    due_at: datetime
    price: Money


@strawberry.type(description="Renewal costs expected over the next days, per currency.")
class RenewalForecast:
    days: int
    count: int
    totals: list[Money]
    renewals: list[ForecastRenewal] = strawberry.field(description="The first 100, soonest first.")


async def renewal_forecast(
    info: Info[Context, None], days: int = 30, partner_id: strawberry.ID | None = None
) -> RenewalForecast:
    viewer = viewer_with(info)
    result = await renewals.forecast(viewer, partner_id=target_partner(viewer, partner_id), days=days)
    return RenewalForecast(
        days=result.days,
        count=len(result.items),
        totals=[Money.of(m.amount, m.currency) for m in result.totals()],
        renewals=[
            ForecastRenewal(
                subscription_id=strawberry.ID(to_global_id("Subscription", i.subscription_id)),
                workspace_id=strawberry.ID(to_global_id("Workspace", i.workspace_id)) if i.workspace_id else None,
                due_at=i.due_at,
                price=Money.of(i.price.amount, i.price.currency),
            )
            for i in result.items[:100]
        ],
    )


@strawberry.input(description="How failed renewals are retried and what they lead to (thresholds of 0 are off).")
class SetDunningPolicyInput:
    retry_days: list[int] = strawberry.field(description="Days after the due date, increasing: 1, 3, 9, 15, 21.")
    restrict_after: int = 3
    suspend_after: int = 5
    fallback_after: int | None = None
    fallback_plan_id: strawberry.ID | None = None
    partner_id: strawberry.ID | None = None


@strawberry.type
class DunningPolicy:
    retry_days: list[int]
    restrict_after: int
    suspend_after: int
    fallback_after: int | None
    fallback_plan_id: strawberry.ID | None


@strawberry.type
class SetDunningPolicyPayload:
    policy: DunningPolicy | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def set_dunning_policy(info: Info[Context, None], input: SetDunningPolicyInput) -> SetDunningPolicyPayload:
    async def run() -> SetDunningPolicyPayload:
        viewer = viewer_with(info, Permission.MANAGE_PLANS)
        partner = await renewals.set_dunning_policy(
            viewer,
            partner_id=target_partner(viewer, input.partner_id),
            retry_days=input.retry_days,
            restrict_after=input.restrict_after,
            suspend_after=input.suspend_after,
            fallback_after=input.fallback_after,
            fallback_plan_id=expect_id(input.fallback_plan_id, "Plan", "fallbackPlanId")
            if input.fallback_plan_id
            else None,
        )
        return SetDunningPolicyPayload(
            policy=DunningPolicy(
                retry_days=list(partner.dunning_retry_days),
                restrict_after=partner.dunning_restrict_after,
                suspend_after=partner.dunning_suspend_after,
                fallback_after=partner.dunning_fallback_after,
                fallback_plan_id=strawberry.ID(to_global_id("Plan", partner.fallback_plan_id))
                if partner.fallback_plan_id
                else None,
            )
        )

    return await payload(run, lambda errors: SetDunningPolicyPayload(errors=errors))
