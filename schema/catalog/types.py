"""The catalog: plan families, plans, partner margins, add-ons, credit packages, limits, and the WhatsApp
rate cards."""

from __future__ import annotations

from datetime import datetime

import strawberry
import strawberry.scalars
from strawberry.types import Info

from billing.catalog import rate_cards
from billing.catalog.plans import on_add_on, on_package, price_down, shown_value, stacked
from billing.core import clock
from billing.core.money import Money as DomainMoney
from billing.core.money import plain_decimal
from models import catalog as catalog_models
from models import enums
from schema.amounts import Money
from schema.context import Context, ready
from schema.ids import to_global_id
from schema.relay import Connection, Node, slice_connection

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

    @strawberry.field(
        description="What the caller's clients pay each period: the platform price plus each margin down the"
        " chain of resellers to the caller's own."
    )
    def price(self, info: Info[Context, None]) -> Money:
        levels = _margins_down_now(info)
        if levels is not None:  # primed with the page: at once
            return _money(price_down(levels, self.row))
        return self._price_later(info)  # type: ignore[return-value]

    async def _price_later(self, info: Info[Context, None]) -> Money:
        return _money(price_down(await _margins_down(info), self.row))

    @strawberry.field(
        description="The plan's own price: for a platform plan, what the caller's partner pays for it (the"
        " platform's price, or for a partner reselling below another, its parent's price: no level sees the"
        " prices above its own cost). A client sees its own price."
    )
    async def platform_price(self, info: Info[Context, None]) -> Money:
        return _money(price_down(await _margins_above(info), self.row))

    @classmethod
    def of(cls, row: catalog_models.Plan) -> Plan:
        return cls(
            row=row,
            id=strawberry.ID(to_global_id("Plan", row.id)),
            name=row.name,
            interval=row.interval,
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


async def _margins_down(info: Info[Context, None]) -> list[list[catalog_models.PartnerMargin]]:
    """The margins of each level from the platform's direct partner down to the caller's partner."""
    viewer = info.context.viewer
    partner_id = viewer.partner_id if viewer else None
    chain = await info.context.loaders.ancestry.load(partner_id) if partner_id is not None else []
    return [await info.context.loaders.margins_of_partner.load(p) for p in chain]


def _margins_down_now(info: Info[Context, None]) -> list[list[catalog_models.PartnerMargin]] | None:
    """:func:`_margins_down` if the request's loaders have them already; None if not."""
    viewer = info.context.viewer
    if viewer is None or viewer.partner_id is None:
        return []
    loaders = info.context.loaders
    chain = ready(loaders.ancestry.load(viewer.partner_id))
    if chain is None:
        return None
    return ready(*(loaders.margins_of_partner.load(p) for p in chain[0]))


async def _margins_above(info: Info[Context, None]) -> list[list[catalog_models.PartnerMargin]]:
    """The margins that make the caller's cost: every level above the caller's partner. A client has no
    cost but its price: it sees every level's margins applied, never its partner's cost."""
    levels = await _margins_down(info)
    viewer = info.context.viewer
    return levels if viewer is not None and viewer.kind == "WORKSPACE" else levels[:-1]


def _money(amount: DomainMoney) -> Money:
    return Money.of(amount.amount, amount.currency)


@strawberry.type(description="A priced extension of limits.")
class AddOn(Node):
    name: str
    limit_deltas: list[Limit]
    points_cost: str | None
    row: strawberry.Private[catalog_models.AddOn]

    @strawberry.field(
        description="What the caller's clients pay: for a platform add-on, the platform price plus each margin"
        " on it down the chain of resellers to the caller's own."
    )
    async def price(self, info: Info[Context, None]) -> Money:
        return _money(stacked(await _margins_down(info), self.row))

    @strawberry.field(
        description="The add-on's own price: for a platform add-on, what the caller's partner pays for it (the"
        " platform's price, or for a partner reselling below another, its parent's price). A client sees its"
        " own price."
    )
    async def platform_price(self, info: Info[Context, None]) -> Money:
        return _money(stacked(await _margins_above(info), self.row))

    @classmethod
    def of(cls, row: catalog_models.AddOn) -> AddOn:
        return cls(
            row=row,
            id=strawberry.ID(to_global_id("AddOn", row.id)),
            name=row.name,
            limit_deltas=Limit.all_of(row.limit_deltas),
            points_cost=str(row.points_cost) if row.points_cost is not None else None,
        )


@strawberry.type(description="A package of units (points, credits...) sold for a price.")
class CreditPackage(Node):
    name: str
    unit: str
    quantity: str = strawberry.field(description="Units, as a decimal string (64-bit).")
    status: PlanStatus = strawberry.field(description="An ARCHIVED package is never bought.")
    expires_after_days: int | None = strawberry.field(description="Units bought expire this many days later.")
    row: strawberry.Private[catalog_models.CreditPackage]

    @strawberry.field(
        description="What a purchase from now on pays. For one of the platform's packages, what the caller's"
        " partner pays: the platform's price, or for a partner reselling below another, its parent's price."
    )
    async def price(self, info: Info[Context, None]) -> Money:
        return _money(stacked((await _margins_down(info))[:-1], self.row))

    @strawberry.field(
        description="For one of the platform's packages, what the partners reselling below the caller's pay for"
        " it: the caller's price with its own margin on the package (none: at cost). Null for a partner's own"
        " packages and for a client."
    )
    async def resale_price(self, info: Info[Context, None]) -> Money | None:
        viewer = info.context.viewer
        if self.row.partner_id is not None or viewer is None or viewer.kind == "WORKSPACE":
            return None
        return _money(stacked(await _margins_down(info), self.row))

    @classmethod
    def of(cls, row: catalog_models.CreditPackage) -> CreditPackage:
        return cls(
            row=row,
            id=strawberry.ID(to_global_id("CreditPackage", row.id)),
            name=row.name,
            unit=row.unit,
            quantity=str(row.quantity),
            status=row.status,
            expires_after_days=row.expires_after_days,
        )


@strawberry.type(
    description="A partner's margin over platform plan prices: on one plan, on a family, or in bulk (neither)."
)
class PartnerMargin:
    kind: MarginKind
    value: str = strawberry.field(
        description='A percentage ("20", "12.5"), or a fixed amount in the currency ("5.00"), as it was set.'
    )
    currency: str | None = strawberry.field(description="The currency of a fixed margin.")
    plan_id: strawberry.ID | None
    family_id: strawberry.ID | None
    credit_package_id: strawberry.ID | None = strawberry.field(
        description="A margin on one of the platform's packages: what the partners reselling below pay over the"
        " partner's cost."
    )
    add_on_id: strawberry.ID | None = strawberry.field(description="A margin on one of the platform's add-ons.")

    @classmethod
    def of(cls, row: catalog_models.PartnerMargin) -> PartnerMargin:
        value, currency = shown_value(row)
        package, add_on = on_package(row), on_add_on(row)
        return cls(
            kind=row.kind,
            value=value,
            currency=currency,
            plan_id=strawberry.ID(to_global_id("Plan", row.plan_id)) if row.plan_id else None,
            family_id=strawberry.ID(to_global_id("PlanFamily", row.family_id)) if row.family_id else None,
            credit_package_id=strawberry.ID(to_global_id("CreditPackage", package)) if package else None,
            add_on_id=strawberry.ID(to_global_id("AddOn", add_on)) if add_on else None,
        )

    @classmethod
    def all_of(cls, rows: list[catalog_models.PartnerMargin]) -> list[PartnerMargin]:
        """The bulk margins first (the percentage, then the fixed ones by currency), then the families',
        then the plans', then the add-ons', then the packages'."""
        ordered = sorted(
            rows,
            key=lambda m: (
                on_package(m) or 0,
                on_add_on(m) or 0,
                m.plan_id is not None,
                m.family_id is not None,
                m.plan_id or 0,
                m.family_id or 0,
                m.currency or "",
            ),
        )
        return [cls.of(row) for row in ordered]


@strawberry.type(description="From a month's fromMessage-th message of a cell on, both prices per message.")
class RateTier:
    from_message: int
    platform_price: str
    partner_price: str


TierScope = strawberry.enum(enums.TierScope)


@strawberry.type(description="One country and category: the platform's price and the partner's, per message.")
class RateCell:
    country: str = strawberry.field(description='ISO 3166 alpha-2, or "*" for every other country.')
    category: MessageCategory
    platform_price: str = strawberry.field(
        description="What the partner pays per delivered message, in major units, exact: the platform's price,"
        " or for a partner reselling below another, its parent's price."
    )
    partner_price: str = strawberry.field(
        description="What its clients pay: that with the partner's margin, kept to 10 decimals (rounded once per"
        " level of resellers)."
    )
    effective_from: datetime | None = strawberry.field(
        description="When this price took (or takes) effect; null for a cell's first price, which covers all"
        " time before it."
    )
    tiers: list[RateTier] = strawberry.field(
        description="Volume tiers: the prices above are a month's first messages', these the later ones'."
    )


@strawberry.type(
    description="A partner's margin over the platform's WhatsApp rates: the bulk one (no country and category)"
    " or one cell's, which wins over it."
)
class RateMargin:
    kind: MarginKind
    value: str = strawberry.field(description="A percentage, or an amount per message in major units.")
    country: str | None
    category: MessageCategory | None

    @classmethod
    def of(cls, margin: rate_cards.Margin) -> RateMargin:
        return cls(
            kind=margin.kind, value=plain_decimal(margin.value), country=margin.country, category=margin.category
        )


@strawberry.type(description="Prices per delivered WhatsApp message in one currency.")
class RateCard:
    currency: str
    at: datetime = strawberry.field(description="The moment whose prices the cells show.")
    partner_db_id: strawberry.Private[int | None]

    @classmethod
    def of(cls, partner_id: int | None, currency: str, at: datetime | None = None) -> RateCard:
        """The platform's card (no partner) or a partner's, as in force at ``at`` (now when not given);
        its cells are read when asked for."""
        return cls(currency=currency, partner_db_id=partner_id, at=at or clock.now())

    @strawberry.field(description="Both prices of every cell in force at `at`, by country and category.")
    async def cells(self, first: int | None = None, after: str | None = None) -> Connection[RateCell]:
        table = await rate_cards.table(self.partner_db_id, self.currency)
        cells = [
            RateCell(
                country=country,
                category=enums.MessageCategory(category),
                platform_price=rate_cards.format_rate(price.rate.platform),
                partner_price=rate_cards.format_rate(price.rate.partner),
                effective_from=price.since,
                tiers=[
                    RateTier(
                        from_message=start,
                        platform_price=rate_cards.format_rate(rate.platform),
                        partner_price=rate_cards.format_rate(rate.partner),
                    )
                    for start, rate in price.tiers
                ],
            )
            for (country, category), price in sorted(table.cells_at(self.at).items())
        ]
        return slice_connection(cells, first=first, after=after)

    @strawberry.field(
        description="Every moment a price of this card changes, past and scheduled, oldest first: read the"
        " card as in force then with rateCard(at:)."
    )
    async def changes(self) -> list[datetime]:
        return (await rate_cards.table(self.partner_db_id, self.currency)).changes()

    @strawberry.field(description="Whose messages a month's volume tiers count: each partner's or each project's.")
    async def tier_scope(self) -> TierScope:
        return (await rate_cards.table(self.partner_db_id, self.currency)).tier_scope

    @strawberry.field(description="The partner's margins (none on the platform's card; a client sees none).")
    async def margins(self, info: Info[Context, None]) -> list[RateMargin]:
        if self.partner_db_id is None or info.context.require_viewer().kind == "WORKSPACE":
            return []
        return [RateMargin.of(m) for m in await rate_cards.margins(self.partner_db_id, self.currency)]
