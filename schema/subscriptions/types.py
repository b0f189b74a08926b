"""Subscriptions over time: periods, plan history, status reasons, limit excesses."""

from __future__ import annotations

from datetime import datetime

import strawberry
import strawberry.scalars
from strawberry.types import Info

from models import catalog as catalog_models
from models import enums
from models import subscriptions as subscription_models
from schema.amounts import Money
from schema.catalog.types import Plan
from schema.context import Context
from schema.ids import to_global_id
from schema.relay import Node

SubscriptionStatus = strawberry.enum(enums.SubscriptionStatus)


PeriodStatus = strawberry.enum(enums.PeriodStatus)


@strawberry.type(description="Usage above a limit: members 7 > 5.")
class LimitExcess:
    limit: str
    usage: int
    max: int


@strawberry.type(description="Why a workspace has its status; every reason that applies is listed.")
class StatusReason:
    kind: str = strawberry.field(description="NO_PLAN, PAYMENT_OVERDUE or LIMIT_EXCEEDED.")
    limit: str | None = None
    usage: int | None = None
    max: int | None = None
    failures: int | None = strawberry.field(default=None, description="Failed renewal attempts (PAYMENT_OVERDUE).")


@strawberry.type(description="A plan a subscriber had, with the dates it was active.")
class SubscriptionHistoryEntry:
    plan_id: strawberry.ID
    plan_name: str
    status: SubscriptionStatus
    started_at: datetime
    ended_at: datetime | None
    note: str

    @classmethod
    async def all_of(cls, rows: list[subscription_models.SubscriptionHistory]) -> list[SubscriptionHistoryEntry]:
        plans = {p.id: p for p in await catalog_models.Plan.filter(id__in=list({r.plan_id for r in rows}))}
        return [
            cls(
                plan_id=strawberry.ID(to_global_id("Plan", r.plan_id)),
                plan_name=plans[r.plan_id].name,
                status=r.status,
                started_at=r.started_at,
                ended_at=r.ended_at,
                note=r.note,
            )
            for r in rows
        ]


@strawberry.type(description="One billed period of a subscription.")
class SubscriptionPeriod:
    number: int
    starts_at: datetime
    ends_at: datetime
    amount: Money
    status: PeriodStatus
    paid_at: datetime | None
    payment_id: strawberry.ID | None


@strawberry.type(description="A workspace's (or, for partner plans, a partner's) plan over time.")
class Subscription(Node):
    db_id: strawberry.Private[int]
    status: SubscriptionStatus
    price: Money
    current_period_start: datetime
    current_period_end: datetime
    plan_id: strawberry.ID
    plan_db_id: strawberry.Private[int]
    payment_mode: str = strawberry.field(description="MANUAL or PARTNER_BALANCE.")
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

    @strawberry.field(description="Billed periods, newest first (at most 100).")
    async def periods(self) -> list[SubscriptionPeriod]:
        rows = await subscription_models.SubscriptionPeriod.filter(subscription_id=self.db_id).order_by("-number")
        return [
            SubscriptionPeriod(
                number=r.number,
                starts_at=r.starts_at,
                ends_at=r.ends_at,
                amount=Money.of(r.amount, r.currency),
                status=r.status,
                paid_at=r.paid_at,
                payment_id=strawberry.ID(to_global_id("Payment", r.payment_id)) if r.payment_id else None,
            )
            for r in rows[:100]
        ]

    @strawberry.field
    async def plan(self, info: Info[Context, None]) -> Plan:
        row = await info.context.loaders.plan.load(self.plan_db_id)
        assert row is not None  # a subscription's plan is never deleted (RESTRICT)
        return Plan.of(row)

    @strawberry.field(description="Every plan this subscription has had, oldest first.")
    async def history(self) -> list[SubscriptionHistoryEntry]:
        rows = await subscription_models.SubscriptionHistory.filter(subscription_id=self.db_id).order_by("id")
        return await SubscriptionHistoryEntry.all_of(rows)
