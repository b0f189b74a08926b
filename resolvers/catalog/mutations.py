"""Changing the catalog: plan families, plans and their status, partner margins, add-ons, credit
packages, and the WhatsApp rate cards (the platform's rates, a partner's margins over them)."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from billing.catalog import plans as catalog
from billing.catalog import rate_cards
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Money as DomainMoney
from billing.core.money import to_minor
from models.enums import BillingInterval as DomainInterval
from models.enums import MarginKind as DomainMarginKind
from models.enums import Permission
from models.enums import PlanStatus as DomainPlanStatus
from models.enums import TierScope as DomainTierScope
from schema.auth import target_partner, viewer_with
from schema.catalog.types import (
    AddOn,
    BillingInterval,
    CreditPackage,
    MarginKind,
    MessageCategory,
    PartnerMargin,
    Plan,
    PlanFamily,
    PlanStatus,
    RateCard,
    TierScope,
)
from schema.context import Context
from schema.errors import UserError
from schema.ids import expect_id
from schema.mutations import PRICE_FIELDS, mutation


@strawberry.input
class LimitInput:
    name: str
    value: int


def limits_of(items: list[LimitInput], field: str = "limits") -> dict[str, int]:
    limits: dict[str, int] = {}
    for item in items:
        if item.name in limits:
            raise BillingError(ErrorCode.INVALID_INPUT, f"limit {item.name} given twice", field=field)
        limits[item.name] = item.value
    return limits


def _plan_id(global_id: strawberry.ID | None) -> int | None:
    return expect_id(global_id, "Plan", "planId") if global_id else None


def _family_id(global_id: strawberry.ID | None) -> int | None:
    return expect_id(global_id, "PlanFamily", "familyId") if global_id else None


def _package_id(global_id: strawberry.ID | None) -> int | None:
    return expect_id(global_id, "CreditPackage", "creditPackageId") if global_id else None


def _add_on_id(global_id: strawberry.ID | None) -> int | None:
    return expect_id(global_id, "AddOn", "addOnId") if global_id else None


# --- plan families and plans ------------------------------------------------------------------------


@strawberry.input
class CreatePlanFamilyInput:
    name: str
    description: str = ""


@strawberry.type
class PlanFamilyPayload:
    family: PlanFamily | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


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


@strawberry.input
class SetPlanStatusInput:
    plan_id: strawberry.ID
    status: PlanStatus


# --- partner margins ----------------------------------------------------------------------------------


@strawberry.input(
    description="A margin on one plan, on a family, or in bulk (none named); or on one of the platform's credit"
    " packages or add-ons, what the partners reselling below pay for it over the partner's own cost."
)
class SetPartnerMarginInput:
    kind: MarginKind
    value: str = strawberry.field(
        description='A percentage ("20", "12.5") or a fixed amount in the margin\'s currency ("5.00").'
    )
    plan_id: strawberry.ID | None = None
    family_id: strawberry.ID | None = None
    credit_package_id: strawberry.ID | None = None
    add_on_id: strawberry.ID | None = None
    currency: str | None = strawberry.field(
        default=None,
        description="The currency of a fixed margin; it applies only to plans in it. On a plan it is the plan's"
        " (another is CURRENCY_MISMATCH), on a family its plans' (the default); a bulk fixed margin names it:"
        " there is one per currency.",
    )


@strawberry.type
class SetPartnerMarginPayload:
    ok: bool = False
    margin: PartnerMargin | None = strawberry.field(default=None, description="The margin as it now stands.")
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="Which margin to remove: on one plan, on a family, or the bulk one (neither named).")
class RemovePartnerMarginInput:
    partner_id: strawberry.ID | None = strawberry.field(
        default=None, description="The platform names the partner; a partner removes its own."
    )
    plan_id: strawberry.ID | None = None
    family_id: strawberry.ID | None = None
    credit_package_id: strawberry.ID | None = None
    add_on_id: strawberry.ID | None = None
    currency: str | None = strawberry.field(
        default=None, description="In bulk: the currency of the fixed margin to remove (none: the bulk percentage)."
    )


@strawberry.type
class RemovePartnerMarginPayload:
    margin: PartnerMargin | None = strawberry.field(default=None, description="The margin removed.")
    errors: list[UserError] = strawberry.field(default_factory=list)


# --- add-ons and credit packages ----------------------------------------------------------------------


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


@strawberry.input(description="A package of units (points, credits...) a partner sells to its clients.")
class CreateCreditPackageInput:
    name: str
    unit: str
    quantity: int
    price_amount: str = strawberry.field(description="A decimal amount in the currency, e.g. 49.90.")
    price_currency: str
    expires_after_days: int | None = strawberry.field(
        default=None, description="Units bought expire this many days after the purchase."
    )


@strawberry.type
class CreateCreditPackagePayload:
    credit_package: CreditPackage | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="A new name or price for a package; what is left out stays.")
class UpdateCreditPackageInput:
    package_id: strawberry.ID
    name: str | None = None
    price_amount: str | None = strawberry.field(default=None, description="With priceCurrency: e.g. 44.90.")
    price_currency: str | None = None


@strawberry.input(description="ACTIVE (on sale) or ARCHIVED (never bought again).")
class SetCreditPackageStatusInput:
    package_id: strawberry.ID
    status: PlanStatus


@strawberry.type
class CreditPackagePayload:
    credit_package: CreditPackage | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


# --- WhatsApp rate cards ------------------------------------------------------------------------------


@strawberry.input
class RateTierInput:
    from_message: int = strawberry.field(description="The month's message (2nd or later) this price starts at.")
    price: str = strawberry.field(description="Per delivered message in major units; up to 8 decimals.")


@strawberry.input
class RateCellInput:
    country: str
    category: MessageCategory
    price: str = strawberry.field(description="Per delivered message in major units; up to 8 decimals.")
    tiers: list[RateTierInput] | None = strawberry.field(
        default=None,
        description="Volume tiers over a calendar month, ascending; the price above is for the messages before"
        " the first (0: a free quota).",
    )


@strawberry.input(description="The platform's price per delivered message for each cell given; other cells stay.")
class SetPlatformRatesInput:
    currency: str
    cells: list[RateCellInput]
    tier_scope: TierScope | None = strawberry.field(
        default=None, description="Whose messages volume tiers count (the card's, for every cell); PARTNER first."
    )
    effective_from: datetime | None = strawberry.field(
        default=None,
        description="When these prices take effect (now or later; now when not given). Usage is priced by the"
        " prices in force when it occurred; what was charged is never priced again.",
    )


@strawberry.input(description="A margin over the platform's rates: in bulk, or on one cell (country and category).")
class SetRateMarginInput:
    kind: MarginKind | None = strawberry.field(description="None removes this margin.")
    value: str | None = strawberry.field(
        default=None, description="A percentage, or an amount per message in major units."
    )
    country: str | None = None
    category: MessageCategory | None = None
    partner_id: strawberry.ID | None = None


@strawberry.type
class RateCardPayload:
    rate_card: RateCard | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class Mutation:
    @mutation(permission=Permission.MANAGE_CATALOG)
    async def create_plan_family(self, info: Info[Context, None], input: CreatePlanFamilyInput) -> PlanFamilyPayload:
        family = await catalog.create_plan_family(viewer_with(info), name=input.name, description=input.description)
        return PlanFamilyPayload(family=PlanFamily.of(family))

    @mutation(fields=PRICE_FIELDS)  # the platform needs MANAGE_CATALOG, a partner MANAGE_PLANS: the service decides
    async def create_plan(self, info: Info[Context, None], input: CreatePlanInput) -> PlanPayload:
        plan = await catalog.create_plan(
            viewer_with(info),
            name=input.name,
            interval=DomainInterval(input.interval.value),
            price=DomainMoney.parse(input.price_amount, input.price_currency, field="priceAmount"),
            limits=limits_of(input.limits),
            family_id=_family_id(input.family_id),
            validity_periods=input.validity_periods,
            max_renewals=input.max_renewals,
            grace_days=input.grace_days,
            trial_days=input.trial_days,
            trial_requires_payment_method=input.trial_requires_payment_method,
            included_units=limits_of(input.included_units, "includedUnits"),
            included_units_expire=input.included_units_expire,
            for_partners=input.for_partners,
        )
        return PlanPayload(plan=Plan.of(plan))

    @mutation(description="Hide or archive a plan; archiving never touches existing subscriptions.")
    async def set_plan_status(self, info: Info[Context, None], input: SetPlanStatusInput) -> PlanPayload:
        # The platform's plans need MANAGE_CATALOG, a partner's own MANAGE_PLANS: the service decides.
        plan = await catalog.set_plan_status(
            viewer_with(info),
            plan_id=expect_id(input.plan_id, "Plan", "planId"),
            status=DomainPlanStatus(input.status.value),
        )
        return PlanPayload(plan=Plan.of(plan))

    @mutation(permission=Permission.MANAGE_PLANS, fields={"margin": "value"})
    async def set_partner_margin(
        self, info: Info[Context, None], input: SetPartnerMarginInput
    ) -> SetPartnerMarginPayload:
        margin = await catalog.set_margin(
            viewer_with(info),
            kind=DomainMarginKind(input.kind.value),
            value=input.value,
            plan_id=_plan_id(input.plan_id),
            family_id=_family_id(input.family_id),
            currency=input.currency,
            credit_package_id=_package_id(input.credit_package_id),
            add_on_id=_add_on_id(input.add_on_id),
        )
        return SetPartnerMarginPayload(ok=True, margin=PartnerMargin.of(margin))

    @mutation(
        permission=Permission.MANAGE_PLANS,
        description="Remove a margin over platform prices; the next one that applies (family, then bulk) prices"
        " the plans it covered.",
    )
    async def remove_partner_margin(
        self, info: Info[Context, None], input: RemovePartnerMarginInput
    ) -> RemovePartnerMarginPayload:
        viewer = viewer_with(info)
        margin = await catalog.remove_margin(
            viewer,
            partner_id=target_partner(viewer, input.partner_id),
            plan_id=_plan_id(input.plan_id),
            family_id=_family_id(input.family_id),
            currency=input.currency,
            credit_package_id=_package_id(input.credit_package_id),
            add_on_id=_add_on_id(input.add_on_id),
        )
        return RemovePartnerMarginPayload(margin=PartnerMargin.of(margin))

    @mutation(permission=Permission.MANAGE_PLANS, fields=PRICE_FIELDS)
    async def create_add_on(self, info: Info[Context, None], input: CreateAddOnInput) -> AddOnPayload:
        add_on = await catalog.create_add_on(
            viewer_with(info),
            name=input.name,
            limit_deltas=limits_of(input.limit_deltas, "limitDeltas"),
            price=DomainMoney.parse(input.price_amount, input.price_currency, field="priceAmount"),
            points_cost=input.points_cost,
        )
        return AddOnPayload(add_on=AddOn.of(add_on))

    @mutation(permission=Permission.MANAGE_PLANS, fields=PRICE_FIELDS)
    async def create_credit_package(
        self, info: Info[Context, None], input: CreateCreditPackageInput
    ) -> CreateCreditPackagePayload:
        currency = input.price_currency.upper()
        row = await catalog.create_credit_package(
            viewer_with(info),
            name=input.name,
            unit=input.unit,
            quantity=input.quantity,
            price=DomainMoney(to_minor(input.price_amount, currency, field="priceAmount"), currency),
            expires_after_days=input.expires_after_days,
        )
        return CreateCreditPackagePayload(credit_package=CreditPackage.of(row))

    @mutation(
        fields=PRICE_FIELDS,
        description="Rename or reprice a package: the new price applies to purchases from now on.",
    )
    async def update_credit_package(
        self, info: Info[Context, None], input: UpdateCreditPackageInput
    ) -> CreditPackagePayload:
        # A partner's packages need MANAGE_PLANS, the platform's MANAGE_CATALOG: the service decides.
        price = None
        if input.price_amount is not None or input.price_currency is not None:
            if input.price_amount is None or input.price_currency is None:
                raise BillingError(ErrorCode.INVALID_INPUT, "give the price with its currency", field="priceAmount")
            currency = input.price_currency.strip().upper()
            price = DomainMoney(to_minor(input.price_amount, currency, field="priceAmount"), currency)
        row = await catalog.update_credit_package(
            viewer_with(info),
            package_id=expect_id(input.package_id, "CreditPackage", "packageId"),
            name=input.name,
            price=price,
        )
        return CreditPackagePayload(credit_package=CreditPackage.of(row))

    @mutation(
        description="Archive a package (never bought again, by checkout, auto-billing or auto top-up) or"
        " put it on sale again."
    )
    async def set_credit_package_status(
        self, info: Info[Context, None], input: SetCreditPackageStatusInput
    ) -> CreditPackagePayload:
        row = await catalog.set_credit_package_status(
            viewer_with(info),
            package_id=expect_id(input.package_id, "CreditPackage", "packageId"),
            status=DomainPlanStatus(input.status.value),
        )
        return CreditPackagePayload(credit_package=CreditPackage.of(row))

    @mutation(permission=Permission.MANAGE_CATALOG, description="The platform's WhatsApp price per message, by cell.")
    async def set_platform_rates(self, info: Info[Context, None], input: SetPlatformRatesInput) -> RateCardPayload:
        card = await rate_cards.set_platform_rates(
            viewer_with(info),
            currency=input.currency,
            cells=[
                rate_cards.CellInput(
                    c.country,
                    c.category,
                    c.price,
                    tuple(rate_cards.TierInput(t.from_message, t.price) for t in c.tiers or ()),
                )
                for c in input.cells
            ],
            tier_scope=DomainTierScope(input.tier_scope.value) if input.tier_scope else None,
            effective_from=input.effective_from,
        )
        return RateCardPayload(rate_card=RateCard.of(None, card.currency))

    @mutation(
        permission=Permission.MANAGE_PLANS, description="A partner's margin over WhatsApp rates: bulk or per cell."
    )
    async def set_rate_margin(self, info: Info[Context, None], input: SetRateMarginInput) -> RateCardPayload:
        viewer = viewer_with(info)
        card = await rate_cards.set_partner_margin(
            viewer,
            partner_id=target_partner(viewer, input.partner_id),
            kind=input.kind,
            value=input.value,
            country=input.country,
            category=input.category,
        )
        return RateCardPayload(rate_card=RateCard.of(card.partner_id, card.currency))
