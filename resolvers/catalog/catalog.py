"""The catalog: plan families, plans, margins and add-ons."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from billing.catalog import plans as catalog
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Money as DomainMoney
from billing.core.money import parse_decimal, to_minor
from models.catalog import PlanFamily as PlanFamilyRow
from models.enums import BillingInterval as DomainInterval
from models.enums import MarginKind as DomainMarginKind
from models.enums import PlanStatus as DomainPlanStatus
from schema.auth import viewer_with
from schema.catalog.types import AddOn, BillingInterval, MarginKind, Plan, PlanFamily, PlanStatus
from schema.context import Context
from schema.errors import UserError, payload
from schema.ids import expect_id
from schema.relay import Connection, paginate


@strawberry.input
class LimitInput:
    name: str
    value: int


def limits_of(items: list[LimitInput]) -> dict[str, int]:
    limits: dict[str, int] = {}
    for item in items:
        if item.name in limits:
            raise BillingError(ErrorCode.INVALID_INPUT, f"limit {item.name} given twice", field="limits")
        limits[item.name] = item.value
    return limits


@strawberry.input
class CreatePlanFamilyInput:
    name: str
    description: str = ""


@strawberry.type
class PlanFamilyPayload:
    family: PlanFamily | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def create_plan_family(info: Info[Context, None], input: CreatePlanFamilyInput) -> PlanFamilyPayload:
    async def run() -> PlanFamilyPayload:
        viewer = viewer_with(info)
        family = await catalog.create_plan_family(viewer, name=input.name, description=input.description)
        return PlanFamilyPayload(family=PlanFamily.of(family))

    return await payload(run, lambda errors: PlanFamilyPayload(errors=errors))


@strawberry.input(description="A platform plan (operator) or a partner's own plan.")
class CreatePlanInput:
    name: str
    interval: BillingInterval
    price_amount: str
    price_currency: str
    limits: list[LimitInput] = strawberry.field(default_factory=list)
    family_id: strawberry.ID | None = None
    validity_periods: int | None = None
    max_renewals: int | None = None
    grace_days: int = 0
    trial_days: int = 0
    trial_requires_payment_method: bool = False
    for_partners: bool = strawberry.field(
        default=False, description="A partner plan: partners subscribe to it themselves (platform only)."
    )
    included_units: list[LimitInput] = strawberry.field(
        default_factory=list, description="Units granted each paid period, e.g. MESSAGE_CREDITS 10000."
    )
    included_units_expire: bool = strawberry.field(
        default=False, description="Included units left at the period's end expire (an allowance)."
    )


@strawberry.type
class PlanPayload:
    plan: Plan | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def create_plan(info: Info[Context, None], input: CreatePlanInput) -> PlanPayload:
    async def run() -> PlanPayload:
        viewer = viewer_with(info)
        plan = await catalog.create_plan(
            viewer,
            name=input.name,
            interval=DomainInterval(input.interval.value),
            price=DomainMoney.parse(input.price_amount, input.price_currency, field="priceAmount"),
            limits=limits_of(input.limits),
            family_id=expect_id(input.family_id, "PlanFamily", "familyId") if input.family_id else None,
            validity_periods=input.validity_periods,
            max_renewals=input.max_renewals,
            grace_days=input.grace_days,
            trial_days=input.trial_days,
            trial_requires_payment_method=input.trial_requires_payment_method,
            included_units=limits_of(input.included_units),
            included_units_expire=input.included_units_expire,
            for_partners=input.for_partners,
        )
        return PlanPayload(plan=Plan.of(plan))

    return await payload(run, lambda errors: PlanPayload(errors=errors))


@strawberry.input
class SetPlanStatusInput:
    plan_id: strawberry.ID
    status: PlanStatus


async def set_plan_status(info: Info[Context, None], input: SetPlanStatusInput) -> PlanPayload:
    """Hide or archive a plan; archiving never touches existing subscriptions."""

    async def run() -> PlanPayload:
        viewer = viewer_with(info)
        plan = await catalog.set_plan_status(
            viewer, plan_id=expect_id(input.plan_id, "Plan", "planId"), status=DomainPlanStatus(input.status.value)
        )
        return PlanPayload(plan=Plan.of(plan))

    return await payload(run, lambda errors: PlanPayload(errors=errors))


@strawberry.input(description="A margin on one plan, on a family, or in bulk (neither named).")
class SetPartnerMarginInput:
    kind: MarginKind
    value: str = strawberry.field(
        description='A percentage ("20", "12.5") or a fixed amount in the plan currency ("5.00").'
    )
    plan_id: strawberry.ID | None = None
    family_id: strawberry.ID | None = None
    currency: str = strawberry.field(default="USD", description="The currency of a fixed margin.")


@strawberry.type
class SetPartnerMarginPayload:
    ok: bool = False
    errors: list[UserError] = strawberry.field(default_factory=list)


async def set_partner_margin(info: Info[Context, None], input: SetPartnerMarginInput) -> SetPartnerMarginPayload:
    async def run() -> SetPartnerMarginPayload:
        viewer = viewer_with(info)
        kind = DomainMarginKind(input.kind.value)
        value = (
            parse_decimal(input.value, field="value")
            if kind is DomainMarginKind.PERCENTAGE
            else parse_decimal(str(to_minor(input.value, input.currency.upper(), field="value")))
        )
        await catalog.set_margin(
            viewer,
            kind=kind,
            value=value,
            plan_id=expect_id(input.plan_id, "Plan", "planId") if input.plan_id else None,
            family_id=expect_id(input.family_id, "PlanFamily", "familyId") if input.family_id else None,
        )
        return SetPartnerMarginPayload(ok=True)

    return await payload(run, lambda errors: SetPartnerMarginPayload(errors=errors))


@strawberry.input
class CreateAddOnInput:
    name: str
    limit_deltas: list[LimitInput]
    price_amount: str
    price_currency: str
    points_cost: int | None = None


@strawberry.type
class AddOnPayload:
    add_on: AddOn | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def create_add_on(info: Info[Context, None], input: CreateAddOnInput) -> AddOnPayload:
    async def run() -> AddOnPayload:
        viewer = viewer_with(info)
        add_on = await catalog.create_add_on(
            viewer,
            name=input.name,
            limit_deltas=limits_of(input.limit_deltas),
            price=DomainMoney.parse(input.price_amount, input.price_currency, field="priceAmount"),
            points_cost=input.points_cost,
        )
        return AddOnPayload(add_on=AddOn.of(add_on))

    return await payload(run, lambda errors: AddOnPayload(errors=errors))


async def plans(info: Info[Context, None], first: int | None = None, after: str | None = None) -> Connection[Plan]:
    viewer = viewer_with(info)
    return await paginate(catalog.visible_plans(viewer), first=first, after=after, to_node=Plan.of)


async def plan_families(
    info: Info[Context, None], first: int | None = None, after: str | None = None
) -> Connection[PlanFamily]:
    viewer_with(info)
    return await paginate(PlanFamilyRow.all(), first=first, after=after, to_node=PlanFamily.of)


async def add_ons(info: Info[Context, None], first: int | None = None, after: str | None = None) -> Connection[AddOn]:
    viewer = viewer_with(info)
    return await paginate(catalog.visible_add_ons(viewer), first=first, after=after, to_node=AddOn.of)
