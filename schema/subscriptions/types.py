"""Subscriptions over time: periods, plan history, status reasons, limit excesses; what a change would
do, the renewals ahead, a partner's dunning policy and the add-ons set on a workspace."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
import strawberry.scalars
from strawberry.types import Info

from billing.core.errors import BillingError
from billing.subscriptions.limits import Preview
from billing.subscriptions.renewals import Forecast
from models import catalog as catalog_models
from models import enums
from models import subscriptions as subscription_models
from models import tenancy as tenancy_models
from schema.amounts import Money, Quantity
from schema.catalog.types import AddOn, Limit, Plan
from schema.context import Context, now_or_later
from schema.ids import to_global_id
from schema.relay import Connection, Node, paginate, slice_connection

SubscriptionStatus = strawberry.enum(enums.SubscriptionStatus)


PeriodStatus = strawberry.enum(enums.PeriodStatus)

AddOnState = strawberry.enum(enums.AddOnState)


PaymentMode = strawberry.enum(enums.PaymentMode, description="How a subscription's charges are collected.")


PlanChangeTiming = strawberry.enum(enums.PlanChangeTiming)


PlanHistoryStatus = strawberry.enum(
    enums.PlanHistoryStatus,
    description="A plan in a subscriber's history: its subscription's status while it is current; once over,"
    " REPLACED by a change of plan, or how its subscription ended (CANCELED, EXPIRED).",
)


StatusReasonKind = strawberry.enum(enums.StatusReasonKind, description="Why a workspace has its status.")


@strawberry.type(description="Usage above a limit: members 7 > 5.")
class LimitExcess:
    limit: str
    usage: int
    max: int

    @classmethod
    def refused(cls, error: BillingError) -> list[LimitExcess]:
        """The excesses a change was refused for (LIMIT_BELOW_USAGE), if any."""
        return [cls(limit=e["limit"], usage=e["usage"], max=e["max"]) for e in error.details.get("excesses", [])]


@strawberry.type(description="Why a workspace has its status; every reason that applies is listed.")
class StatusReason:
    kind: StatusReasonKind
    limit: str | None = None
    usage: int | None = None
    max: int | None = None
    failures: int | None = strawberry.field(default=None, description="Failed renewal attempts (PAYMENT_OVERDUE).")

    @classmethod
    def of(cls, reason: dict[str, Any]) -> StatusReason:
        return cls(
            kind=enums.StatusReasonKind(reason["kind"]),
            limit=reason.get("limit"),
            usage=reason.get("usage"),
            max=reason.get("max"),
            failures=reason.get("failures"),
        )


@strawberry.type(description="A plan a subscriber had, with the dates it was current and what ended it.")
class SubscriptionHistoryEntry:
    plan_id: strawberry.ID
    plan_db_id: strawberry.Private[int]
    status: PlanHistoryStatus
    started_at: datetime
    ended_at: datetime | None
    note: str

    @classmethod
    def of(cls, row: subscription_models.SubscriptionHistory) -> SubscriptionHistoryEntry:
        return cls(
            plan_id=strawberry.ID(to_global_id("Plan", row.plan_id)),
            plan_db_id=row.plan_id,
            status=row.status,
            started_at=row.started_at,
            ended_at=row.ended_at,
            note=row.note,
        )

    @strawberry.field
    async def plan_name(self, info: Info[Context, None]) -> str:
        plan = await info.context.loaders.plan.load(self.plan_db_id)
        assert plan is not None  # a plan with history is never deleted (RESTRICT)
        return plan.name


def _plan(row: catalog_models.Plan | None) -> Plan:
    assert row is not None  # a subscription's plan is never deleted (RESTRICT)
    return Plan.of(row)


@strawberry.type(description="One billed period of a subscription.")
class SubscriptionPeriod:
    number: int
    starts_at: datetime
    ends_at: datetime
    amount: Money
    status: PeriodStatus
    paid_at: datetime | None
    payment_id: strawberry.ID | None

    @classmethod
    def of(cls, row: subscription_models.SubscriptionPeriod) -> SubscriptionPeriod:
        return cls(
            number=row.number,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            amount=Money.of(row.amount, row.currency),
            status=row.status,
            paid_at=row.paid_at,
            payment_id=strawberry.ID(to_global_id("Payment", row.payment_id)) if row.payment_id else None,
        )


@strawberry.type(description="A workspace's (or, for partner plans, a partner's) plan over time.")
class Subscription(Node):
    db_id: strawberry.Private[int]
    status: SubscriptionStatus
    price: Money
    current_period_start: datetime
    current_period_end: datetime
    plan_id: strawberry.ID
    plan_db_id: strawberry.Private[int]
    payment_mode: PaymentMode
    trial_end: datetime | None
    cancel_at_period_end: bool
    renewals: int
    failed_renewals: int
    next_retry_at: datetime | None
    ended_at: datetime | None
    scheduled_plan_id: strawberry.ID | None = strawberry.field(
        description="A change (a downgrade) that takes effect at the end of the current period."
    )

    @classmethod
    def of(cls, row: subscription_models.Subscription) -> Subscription:
        return cls(
            id=strawberry.ID(to_global_id("Subscription", row.id)),
            db_id=row.id,
            status=row.status,
            price=Money.of(row.price_amount, row.currency),
            current_period_start=row.current_period_start,
            current_period_end=row.current_period_end,
            plan_id=strawberry.ID(to_global_id("Plan", row.plan_id)),
            plan_db_id=row.plan_id,
            payment_mode=row.payment_mode,
            trial_end=row.trial_end,
            cancel_at_period_end=row.cancel_at_period_end,
            renewals=row.renewals,
            failed_renewals=row.failed_renewals,
            next_retry_at=row.next_retry_at,
            ended_at=row.ended_at,
            scheduled_plan_id=(
                strawberry.ID(to_global_id("Plan", row.scheduled_plan_id)) if row.scheduled_plan_id else None
            ),
        )

    @strawberry.field(description="Billed periods, newest first.")
    async def periods(self, first: int | None = None, after: str | None = None) -> Connection[SubscriptionPeriod]:
        return await paginate(
            subscription_models.SubscriptionPeriod.filter(subscription_id=self.db_id),
            first=first,
            after=after,
            to_node=SubscriptionPeriod.of,
            newest_first=True,
        )

    @strawberry.field
    def plan(self, info: Info[Context, None]) -> Plan:
        return now_or_later(info.context.loaders.plan.load(self.plan_db_id), _plan)  # type: ignore[no-any-return]

    @strawberry.field(description="Every plan this subscription has had, oldest first.")
    async def history(self, first: int | None = None, after: str | None = None) -> Connection[SubscriptionHistoryEntry]:
        return await paginate(
            subscription_models.SubscriptionHistory.filter(subscription_id=self.db_id),
            first=first,
            after=after,
            to_node=SubscriptionHistoryEntry.of,
        )


@strawberry.type(description="What a change would do, without doing it.")
class ChangePreview:
    limits: list[Limit]
    price: Money | None
    would_pause: bool
    excesses: list[LimitExcess]

    @classmethod
    def of(cls, preview: Preview) -> ChangePreview:
        return cls(
            limits=Limit.all_of(preview.limits),
            price=Money.of(preview.price.amount, preview.price.currency) if preview.price else None,
            would_pause=preview.would_pause,
            excesses=[LimitExcess(limit=e.limit, usage=e.usage, max=e.maximum) for e in preview.excesses],
        )


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
    due: strawberry.Private[list[ForecastRenewal]]

    @strawberry.field(description="Every renewal in the window, soonest first.")
    def renewals(self, first: int | None = None, after: str | None = None) -> Connection[ForecastRenewal]:
        return slice_connection(self.due, first=first, after=after)

    @classmethod
    def of(cls, forecast: Forecast) -> RenewalForecast:
        return cls(
            days=forecast.days,
            count=len(forecast.items),
            totals=[Money.of(m.amount, m.currency) for m in forecast.totals()],
            due=[
                ForecastRenewal(
                    subscription_id=strawberry.ID(to_global_id("Subscription", i.subscription_id)),
                    workspace_id=strawberry.ID(to_global_id("Workspace", i.workspace_id)) if i.workspace_id else None,
                    due_at=i.due_at,
                    price=Money.of(i.price.amount, i.price.currency),
                )
                for i in forecast.items
            ],
        )


@strawberry.type(
    description="How a partner's failed renewals are retried and what they lead to (thresholds of 0 are off)."
)
class DunningPolicy:
    retry_days: list[int] = strawberry.field(description="Days after the due date (plus the plan's grace days).")
    restrict_after: int = strawberry.field(description="Failures after which the workspace is RESTRICTED.")
    suspend_after: int = strawberry.field(description="Failures after which the workspace is SUSPENDED.")
    fallback_after: int | None = strawberry.field(description="Failures after which it drops to the fallback plan.")
    fallback_plan_id: strawberry.ID | None = strawberry.field(
        description="The plan a workspace drops to when its plan ends (and after fallbackAfter failures)."
    )

    @classmethod
    def of(cls, partner: tenancy_models.Partner) -> DunningPolicy:
        return cls(
            retry_days=list(partner.dunning_retry_days),
            restrict_after=partner.dunning_restrict_after,
            suspend_after=partner.dunning_suspend_after,
            fallback_after=partner.dunning_fallback_after,
            fallback_plan_id=strawberry.ID(to_global_id("Plan", partner.fallback_plan_id))
            if partner.fallback_plan_id
            else None,
        )


@strawberry.type(description="An add-on set on a workspace (by the partner, or bought with points).")
class WorkspaceAddOn:
    add_on: AddOn
    quantity: int
    active: bool = strawberry.field(description="False once removed (quantity 0) or lapsed unpaid.")
    state: AddOnState = strawberry.field(
        description="ACTIVE while held; LAPSED when its next period could not be paid in points at renewal;"
        " REMOVED when set to 0, or taken back with the payment that bought it (refunded or charged back)."
    )
    lapsed_at: datetime | None = strawberry.field(description="When it lapsed; null unless LAPSED.")
    points_per_period: Quantity | None = strawberry.field(
        description="The POINTS each period costs under credit billing (the add-on's pointsCost x quantity);"
        " null when the add-on has no points cost."
    )
    paid_through: datetime | None = strawberry.field(
        description="Paid in points up to here; kept once it lapses or is removed. Null when not paid in points"
        " (set by hand, or bought with money)."
    )
    next_charge_at: datetime | None = strawberry.field(
        description="When its next period's points are spent (it lapses then if they are short): paidThrough"
        " while ACTIVE and paid in points, null otherwise."
    )

    @classmethod
    def of(cls, row: subscription_models.WorkspaceAddOn) -> WorkspaceAddOn:
        cost = row.add_on.points_cost
        return cls(
            add_on=AddOn.of(row.add_on),
            quantity=row.quantity,
            active=row.active,
            state=row.state,
            lapsed_at=row.lapsed_at,
            points_per_period=Quantity.of(cost * row.quantity, enums.Unit.POINTS.value) if cost is not None else None,
            paid_through=row.paid_through,
            next_charge_at=row.paid_through if row.active else None,
        )
