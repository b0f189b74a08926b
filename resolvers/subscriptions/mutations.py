"""Subscriptions' mutations: plans assigned, bought, changed, cancelled; auto-renew; partner plans;
dunning; add-ons (set by the partner, or bought with points under credit billing); limit usage."""

from __future__ import annotations

from datetime import datetime
from typing import Self

import strawberry
from strawberry.types import Info

from billing.core.errors import BillingError
from billing.subscriptions import credit_billing, entitlements, lifecycle, renewals
from models import enums
from models.enums import Permission
from models.payments import Payment as PaymentRow
from models.subscriptions import Subscription as SubscriptionRow
from models.tenancy import Workspace as WorkspaceRow
from schema.auth import target_partner, viewer_with
from schema.catalog.types import Limit
from schema.context import Context
from schema.errors import UserError
from schema.ids import expect_id
from schema.mutations import mutation
from schema.sales.types import Payment
from schema.subscriptions.types import DunningPolicy, LimitExcess, PlanChangeTiming, Subscription
from schema.tenants.types import Partner, Workspace


class ListsExcesses:
    """A payload refused for usage above the limits it would set lists every excess (members 7 > 5)
    beside the error (the mutation extension calls ``refused``)."""

    @classmethod
    def refused(cls, error: BillingError) -> Self:
        return cls(excesses=LimitExcess.refused(error), errors=[UserError.of(error)])  # type: ignore[call-arg]


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
class AssignPlanPayload(ListsExcesses):
    subscription: Subscription | None = None
    workspace: Workspace | None = None
    excesses: list[LimitExcess] = strawberry.field(default_factory=list)
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="Set an add-on's quantity on a workspace; 0 removes it.")
class SetWorkspaceAddOnInput:
    workspace_id: strawberry.ID
    add_on_id: strawberry.ID
    quantity: int
    force: bool = strawberry.field(default=False, description="Apply even below current usage: the workspace pauses.")


@strawberry.type
class SetWorkspaceAddOnPayload(ListsExcesses):
    workspace: Workspace | None = None
    limits: list[Limit] = strawberry.field(default_factory=list)
    excesses: list[LimitExcess] = strawberry.field(default_factory=list)
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="The platform's product reports a workspace's current usage of a limited metric.")
class ReportUsageInput:
    workspace_id: strawberry.ID
    metric: str
    value: int


@strawberry.type
class ReportUsagePayload:
    workspace: Workspace | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type(description="A subscription started or changed, or the payment it waits for.")
class SubscriptionChangePayload(ListsExcesses):
    subscription: Subscription | None = None
    payment: Payment | None = strawberry.field(
        default=None, description="Set when the change waits for this payment (PENDING until it is paid)."
    )
    workspace: Workspace | None = None
    excesses: list[LimitExcess] = strawberry.field(default_factory=list)
    errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    async def of(cls, made: SubscriptionRow | PaymentRow) -> SubscriptionChangePayload:
        if isinstance(made, PaymentRow):
            return cls(payment=Payment.of(made))
        workspace = await WorkspaceRow.get(id=made.workspace_id) if made.workspace_id else None
        return cls(subscription=Subscription.of(made), workspace=Workspace.of(workspace) if workspace else None)


@strawberry.input(description="A workspace buys a plan; allowed whatever its status.")
class PurchasePlanInput:
    workspace_id: strawberry.ID
    plan_id: strawberry.ID
    idempotency_key: str


@strawberry.input(description="Change a workspace's plan: upgrades at once, downgrades at period end (AUTO).")
class ChangePlanInput:
    workspace_id: strawberry.ID
    plan_id: strawberry.ID
    idempotency_key: str
    timing: PlanChangeTiming = enums.PlanChangeTiming.AUTO
    note: str = ""
    force: bool = strawberry.field(default=False, description="Change even below current usage: the workspace pauses.")


@strawberry.input
class CancelSubscriptionInput:
    workspace_id: strawberry.ID
    at_period_end: bool = strawberry.field(default=True, description="Keep the plan to the end of the paid period.")


@strawberry.input(description="Auto-renew off: the plan runs to the end of its period and then ends.")
class SetAutoRenewInput:
    workspace_id: strawberry.ID
    enabled: bool


@strawberry.type
class WorkspacePayload:
    workspace: Workspace | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="A partner's own plan with the platform, paid from its centralised balance.")
class SubscribePartnerPlanInput:
    plan_id: strawberry.ID
    idempotency_key: str
    partner_id: strawberry.ID | None = None
    timing: PlanChangeTiming = enums.PlanChangeTiming.AUTO


@strawberry.input(description="How failed renewals are retried and what they lead to (thresholds of 0 are off).")
class SetDunningPolicyInput:
    retry_days: list[int] = strawberry.field(description="Days after the due date, increasing: 1, 3, 9, 15, 21.")
    restrict_after: int = 3
    suspend_after: int = 5
    fallback_after: int | None = None
    fallback_plan_id: strawberry.ID | None = None
    partner_id: strawberry.ID | None = None


@strawberry.type
class SetDunningPolicyPayload:
    policy: DunningPolicy | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="Credit billing on or off for a partner's clients (the caller's own partner by default).")
class SetCreditBillingInput:
    enabled: bool
    partner_id: strawberry.ID | None = None


@strawberry.type
class SetCreditBillingPayload:
    partner: Partner | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="Activate an add-on, or add units to it, paying its points for this period.")
class BuyAddOnWithPointsInput:
    workspace_id: strawberry.ID
    add_on_id: strawberry.ID
    idempotency_key: str
    quantity: int = 1


@strawberry.type
class AddOnWithPointsPayload:
    workspace: Workspace | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class Mutation:
    @mutation(
        permission=Permission.MANAGE_PLANS,
        description="The partner assigns a plan by hand, having collected its price its own way (credit billing"
        " off): the first period is recorded as paid.",
    )
    async def assign_plan(self, info: Info[Context, None], input: AssignPlanInput) -> AssignPlanPayload:
        subscription = await lifecycle.assign_plan(
            viewer_with(info),
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            plan_id=expect_id(input.plan_id, "Plan", "planId"),
            note=input.note,
            idempotency_key=input.idempotency_key,
            force=input.force,
            charge_from=input.charge_from,
        )
        workspace = await WorkspaceRow.get(id=subscription.workspace_id)
        return AssignPlanPayload(subscription=Subscription.of(subscription), workspace=Workspace.of(workspace))

    @mutation(
        permission=Permission.MANAGE_PLANS,
        description="Set an add-on's quantity on a workspace (0 removes it); refused below current usage unless"
        " forced.",
    )
    async def set_workspace_add_on(
        self, info: Info[Context, None], input: SetWorkspaceAddOnInput
    ) -> SetWorkspaceAddOnPayload:
        workspace_id = expect_id(input.workspace_id, "Workspace", "workspaceId")
        limits = await entitlements.set_add_on(
            viewer_with(info),
            workspace_id=workspace_id,
            add_on_id=expect_id(input.add_on_id, "AddOn", "addOnId"),
            quantity=input.quantity,
            force=input.force,
        )
        workspace = await WorkspaceRow.get(id=workspace_id)
        return SetWorkspaceAddOnPayload(workspace=Workspace.of(workspace), limits=Limit.all_of(limits))

    @mutation(
        permission=Permission.REPORT_USAGE,
        description="The platform's product reports a workspace's current usage of a limited metric (members,"
        " chatbots...).",
    )
    async def report_usage(self, info: Info[Context, None], input: ReportUsageInput) -> ReportUsagePayload:
        workspace = await entitlements.report_usage(
            viewer_with(info),
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            metric=input.metric,
            value=input.value,
        )
        return ReportUsagePayload(workspace=Workspace.of(workspace))

    @mutation(description="A workspace buys a plan (allowed whatever its status).")
    async def purchase_plan(self, info: Info[Context, None], input: PurchasePlanInput) -> SubscriptionChangePayload:
        made = await lifecycle.purchase_plan(
            viewer_with(info),
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            plan_id=expect_id(input.plan_id, "Plan", "planId"),
            idempotency_key=input.idempotency_key,
        )
        return await SubscriptionChangePayload.of(made)

    @mutation(
        description="Change a workspace's plan: an upgrade at once for the prorated difference, a downgrade at"
        " the period's end (timing AUTO)."
    )
    async def change_plan(self, info: Info[Context, None], input: ChangePlanInput) -> SubscriptionChangePayload:
        made = await lifecycle.change_plan(
            viewer_with(info),
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            plan_id=expect_id(input.plan_id, "Plan", "planId"),
            timing=enums.PlanChangeTiming(input.timing.value),
            note=input.note,
            idempotency_key=input.idempotency_key,
            force=input.force,
        )
        return await SubscriptionChangePayload.of(made)

    @mutation(description="Cancel a workspace's plan, at the end of its paid period (the default) or now.")
    async def cancel_subscription(
        self, info: Info[Context, None], input: CancelSubscriptionInput
    ) -> SubscriptionChangePayload:
        made = await lifecycle.cancel(
            viewer_with(info),
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            at_period_end=input.at_period_end,
        )
        return await SubscriptionChangePayload.of(made)

    @mutation(description="Auto-renew off: the plan runs to the end of its period and then ends.")
    async def set_auto_renew(self, info: Info[Context, None], input: SetAutoRenewInput) -> WorkspacePayload:
        workspace = await lifecycle.set_auto_renew(
            viewer_with(info),
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            enabled=input.enabled,
        )
        return WorkspacePayload(workspace=Workspace.of(workspace))

    @mutation(
        description="A partner's own plan with the platform (partner plans), paid from its centralised balance:"
        " the first one, or a change."
    )
    async def subscribe_partner_plan(
        self, info: Info[Context, None], input: SubscribePartnerPlanInput
    ) -> SubscriptionChangePayload:
        viewer = viewer_with(info)
        made = await lifecycle.subscribe_partner_plan(
            viewer,
            partner_id=target_partner(viewer, input.partner_id),
            plan_id=expect_id(input.plan_id, "Plan", "planId"),
            timing=enums.PlanChangeTiming(input.timing.value),
            idempotency_key=input.idempotency_key,
        )
        return await SubscriptionChangePayload.of(made)

    @mutation(
        permission=Permission.MANAGE_PLANS,
        description="A partner's dunning policy: when failed renewals are retried, and when they restrict, suspend"
        " or drop the workspace to the fallback plan (Partner.dunningPolicy reads it back).",
    )
    async def set_dunning_policy(
        self, info: Info[Context, None], input: SetDunningPolicyInput
    ) -> SetDunningPolicyPayload:
        viewer = viewer_with(info)
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
        return SetDunningPolicyPayload(policy=DunningPolicy.of(partner))

    @mutation(permission=Permission.MANAGE_BILLING, description="Credit billing on: add-ons cost points per period.")
    async def set_credit_billing(
        self, info: Info[Context, None], input: SetCreditBillingInput
    ) -> SetCreditBillingPayload:
        viewer = viewer_with(info)
        partner = await credit_billing.set_credit_billing(
            viewer, partner_id=target_partner(viewer, input.partner_id), enabled=input.enabled
        )
        return SetCreditBillingPayload(partner=Partner.of(partner))

    @mutation(
        description="Under credit billing, a workspace activates an add-on (or adds units to it) with points, paying"
        " for this period; the worker spends the points again each period.",
        fields={"amount": "quantity"},  # the points the wallet cannot pay are for this many units
    )
    async def buy_add_on_with_points(
        self, info: Info[Context, None], input: BuyAddOnWithPointsInput
    ) -> AddOnWithPointsPayload:
        row = await credit_billing.buy_add_on_with_points(
            viewer_with(info),
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            add_on_id=expect_id(input.add_on_id, "AddOn", "addOnId"),
            quantity=input.quantity,
            idempotency_key=input.idempotency_key,
        )
        return AddOnWithPointsPayload(workspace=Workspace.of(await WorkspaceRow.get(id=row.workspace_id)))
