"""The catalog: plan families, plans, add-ons, credit packages and limits."""

from __future__ import annotations

import strawberry
import strawberry.scalars
from strawberry.types import Info

from billing.catalog.plans import price_with
from models import catalog as catalog_models
from models import enums
from schema.amounts import Money
from schema.context import Context
from schema.ids import to_global_id
from schema.relay import Node

PlanStatus = strawberry.enum(enums.PlanStatus)
MessageCategory = strawberry.enum(enums.MessageCategory)


BillingInterval = strawberry.enum(enums.BillingInterval)


MarginKind = strawberry.enum(enums.MarginKind)


@strawberry.type(description="One limit: a name (members, chatbots...) and its value.")
class Limit:
    name: str
    value: int

    @classmethod
    def all_of(cls, limits: dict[str, int]) -> list[Limit]:
        return [cls(name=k, value=v) for k, v in sorted(limits.items())]


@strawberry.type
class PlanFamily(Node):
    name: str
    description: str

    @classmethod
    def of(cls, row: catalog_models.PlanFamily) -> PlanFamily:
        return cls(id=strawberry.ID(to_global_id("PlanFamily", row.id)), name=row.name, description=row.description)


@strawberry.type(description="A plan: the platform's (sold by partners with their margin) or a partner's own.")
class Plan(Node):
    name: str
    interval: BillingInterval
    platform_price: Money = strawberry.field(
        description="The plan's own price (the platform price for platform plans)."
    )
    limits: list[Limit]
    status: PlanStatus
    is_platform_plan: bool
    validity_periods: int | None
    max_renewals: int | None
    grace_days: int
    trial_days: int
    trial_requires_payment_method: bool
    family_id: strawberry.ID | None
    included_units: list[Limit] = strawberry.field(description="Units granted each paid period (MESSAGE_CREDITS...).")
    row: strawberry.Private[catalog_models.Plan]

    @strawberry.field(description="What the caller's clients pay each period: the platform price plus its margin.")
    async def price(self, info: Info[Context, None]) -> Money:
        viewer = info.context.viewer
        partner_id = viewer.partner_id if viewer else None
        margins = await info.context.loaders.margins_of_partner.load(partner_id) if partner_id is not None else []
        price = price_with(margins, partner_id, self.row)
        return Money.of(price.amount, price.currency)

    @classmethod
    def of(cls, row: catalog_models.Plan) -> Plan:
        return cls(
            row=row,
            id=strawberry.ID(to_global_id("Plan", row.id)),
            name=row.name,
            interval=row.interval,
            platform_price=Money.of(row.price_amount, row.currency),
            limits=Limit.all_of(row.limits),
            status=row.status,
            is_platform_plan=row.partner_id is None,
            validity_periods=row.validity_periods,
            max_renewals=row.max_renewals,
            grace_days=row.grace_days,
            trial_days=row.trial_days,
            trial_requires_payment_method=row.trial_requires_payment_method,
            family_id=strawberry.ID(to_global_id("PlanFamily", row.family_id)) if row.family_id else None,
            included_units=Limit.all_of(row.included_units),
        )


@strawberry.type(description="A priced extension of limits.")
class AddOn(Node):
    name: str
    limit_deltas: list[Limit]
    price: Money
    points_cost: str | None

    @classmethod
    def of(cls, row: catalog_models.AddOn) -> AddOn:
        return cls(
            id=strawberry.ID(to_global_id("AddOn", row.id)),
            name=row.name,
            limit_deltas=Limit.all_of(row.limit_deltas),
            price=Money.of(row.price_amount, row.currency),
            points_cost=str(row.points_cost) if row.points_cost is not None else None,
        )


@strawberry.type(description="A package of units (points, credits...) sold for a price.")
class CreditPackage(Node):
    name: str
    unit: str
    quantity: str = strawberry.field(description="Units, as a decimal string (64-bit).")
    price: Money

    @classmethod
    def of(cls, row: catalog_models.CreditPackage) -> CreditPackage:
        return cls(
            id=strawberry.ID(to_global_id("CreditPackage", row.id)),
            name=row.name,
            unit=row.unit,
            quantity=str(row.quantity),
            price=Money.of(row.price_amount, row.currency),
        )
