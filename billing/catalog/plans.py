"""The catalog: plan families and plans, partner margins and prices, add-ons.

Platform plans (partner null) are set by the operator; a partner sells them at the platform price
plus its margin (on the plan, else on its family, else in bulk), and may define plans of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from billing.catalog.pricing import partner_price
from billing.core import audit, clock, sql, tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import (
    Money,
    check_amount,
    check_currency,
    check_unit,
    format_minor,
    parse_decimal,
    plain_decimal,
    to_minor,
)
from billing.core.tenancy import Viewer
from billing.core.text import check_text
from billing.tenants import hierarchy
from billing.tenants.partners import check_name
from models.catalog import AddOn, CreditPackage, PartnerMargin, Plan, PlanFamily
from models.enums import BillingInterval, MarginKind, Permission, PlanStatus
from models.wallets import AutoTopUp

MAX_LIMIT = 10**12
MAX_LIMITS = 30


def check_limits(limits: dict[str, int], field: str = "limits") -> dict[str, int]:
    """{"members": 5, "chatbots": 1}: names are short identifiers, values whole numbers."""
    if len(limits) > MAX_LIMITS:
        raise BillingError(ErrorCode.INVALID_INPUT, f"at most {MAX_LIMITS} limits", field=field)
    checked: dict[str, int] = {}
    for name, value in limits.items():
        key = check_text(name, field, max_length=64).lower()
        if not key.replace("_", "").isalnum() or not key.isascii():
            raise BillingError(ErrorCode.INVALID_INPUT, "limit names are letters, digits and _", field=field)
        if not 0 <= value <= MAX_LIMIT:
            raise BillingError(ErrorCode.INVALID_INPUT, f"limit {key} must be between 0 and {MAX_LIMIT}", field=field)
        checked[key] = value
    return checked


def _check_included(units: dict[str, int]) -> dict[str, int]:
    """{"MESSAGE_CREDITS": 10000}: units granted each paid period."""
    checked = {check_unit(unit): value for unit, value in units.items()}
    for value in checked.values():
        check_amount(value, field="includedUnits")
    return checked


def visible_plans(viewer: Viewer) -> QuerySet[Plan]:
    """The platform sees every plan; a partner the platform's plans it may sell and its own."""
    if viewer.is_platform:
        return Plan.all()
    return Plan.filter(Q(partner_id=None, for_partners=False) | Q(partner_id=viewer.partner_id))


async def create_plan_family(viewer: Viewer, *, name: str, description: str = "") -> PlanFamily:
    viewer.require(Permission.MANAGE_CATALOG)
    try:
        family = await PlanFamily.create(
            name=check_name(name),
            description=check_text(description, "description", max_length=2000, allow_empty=True, multiline=True),
        )
    except IntegrityError:
        raise BillingError(ErrorCode.ALREADY_EXISTS, "a plan family with that name exists", field="name") from None
    await audit.record(
        actor=viewer.actor,
        action="plan_family.create",
        target_type="PlanFamily",
        target_id=family.id,
        partner_id=None,
        after={"name": family.name},
    )
    return family


async def create_plan(
    viewer: Viewer,
    *,
    name: str,
    interval: BillingInterval,
    price: Money,
    limits: dict[str, int],
    family_id: int | None = None,
    for_partners: bool = False,
    validity_periods: int | None = None,
    max_renewals: int | None = None,
    grace_days: int = 0,
    trial_days: int = 0,
    trial_requires_payment_method: bool = False,
    included_units: dict[str, int] | None = None,
    included_units_expire: bool = False,
) -> Plan:
    """A platform plan (the operator) or one of the partner's own plans."""
    if viewer.is_platform:
        viewer.require(Permission.MANAGE_CATALOG)
        partner_id = None
    else:
        viewer.require(Permission.MANAGE_PLANS)
        partner_id = viewer.partner_id
        if family_id is not None or for_partners:
            raise BillingError(
                ErrorCode.FORBIDDEN, "plan families and partner plans are the platform's", field="familyId"
            )
    if family_id is not None and not await PlanFamily.exists(id=family_id):
        raise BillingError(ErrorCode.NOT_FOUND, "plan family not found", field="familyId")
    check_amount(price.amount, field="price", allow_zero=True)
    for value, field in ((validity_periods, "validityPeriods"), (max_renewals, "maxRenewals")):
        if value is not None and not 1 <= value <= 1200:
            raise BillingError(ErrorCode.INVALID_INPUT, "must be between 1 and 1200", field=field)
    for value, field in ((grace_days, "graceDays"), (trial_days, "trialDays")):
        if not 0 <= value <= 366:
            raise BillingError(ErrorCode.INVALID_INPUT, "must be between 0 and 366 days", field=field)
    plan = await Plan.create(
        partner_id=partner_id,
        family_id=family_id,
        for_partners=for_partners,
        name=check_name(name),
        interval=interval,
        price_amount=price.amount,
        currency=check_currency(price.currency),
        limits=check_limits(limits),
        validity_periods=validity_periods,
        max_renewals=max_renewals,
        grace_days=grace_days,
        trial_days=trial_days,
        trial_requires_payment_method=trial_requires_payment_method,
        included_units=_check_included(included_units or {}),
        included_units_expire=included_units_expire,
    )
    await audit.record(
        actor=viewer.actor,
        action="plan.create",
        target_type="Plan",
        target_id=plan.id,
        partner_id=partner_id,
        after={"name": plan.name, "price": audit.money(price), "limits": plan.limits},
    )
    return plan


async def set_plan_status(viewer: Viewer, *, plan_id: int, status: PlanStatus) -> Plan:
    """Hide or archive a plan. Archiving never touches existing subscriptions."""
    plan = await tenancy.get_scoped(visible_plans(viewer), plan_id, "plan")
    viewer.require(Permission.MANAGE_CATALOG if plan.partner_id is None else Permission.MANAGE_PLANS)
    if plan.partner_id is None and not viewer.is_platform:
        raise BillingError(ErrorCode.FORBIDDEN, "platform plans are the platform's to change", field="planId")
    before = plan.status
    plan.status = status
    await plan.save(update_fields=["status"])
    await audit.record(
        actor=viewer.actor,
        action="plan.status",
        target_type="Plan",
        target_id=plan.id,
        partner_id=plan.partner_id,
        before={"status": before},
        after={"status": status},
    )
    return plan


async def set_margin(
    viewer: Viewer,
    *,
    kind: MarginKind,
    value: Decimal | str,
    plan_id: int | None = None,
    family_id: int | None = None,
    currency: str | None = None,
    credit_package_id: int | None = None,
    add_on_id: int | None = None,
) -> PartnerMargin:
    """The partner's margin over platform prices: on one plan, on a family, or in bulk (neither); or on one
    of the platform's credit packages or add-ons, which is what the partner's sub-partners pay over its own
    cost (a package or an add-on has no family and no bulk margin: without its own margin it is resold at cost).

    A percentage applies to any currency. A fixed margin is an amount of one currency and applies only
    to plans in it: on a plan, the plan's currency (the default; another is CURRENCY_MISMATCH); on a
    family, the currency of the family's plans (a family with plans in another currency refuses it);
    in bulk, one margin per currency, which must be named. ``value`` is the decimal text as the client
    typed it ("5.00", read in that currency's minor units: KWD has 3 decimals, JPY none), or, as a
    ``Decimal``, a percentage or a whole number of minor units."""
    viewer.require(Permission.MANAGE_PLANS)
    if viewer.partner_id is None:
        raise BillingError(ErrorCode.FORBIDDEN, "margins are a partner's")
    _one_target(plan_id, family_id, credit_package_id, add_on_id)
    item = await _priced_item(viewer, plan_id, credit_package_id, add_on_id)
    if family_id is not None and not await PlanFamily.exists(id=family_id):
        raise BillingError(ErrorCode.NOT_FOUND, "plan family not found", field="familyId")
    percentage: Decimal | None = None
    fixed: Money | None = None
    if kind is MarginKind.PERCENTAGE:
        percentage = parse_decimal(value, field="value") if isinstance(value, str) else value
        partner_price(Money(0, "USD"), kind, percentage)  # validates the range
    else:
        code = await _fixed_margin_currency(item, family_id, currency)
        fixed = Money(_minor_units(value, code), code)
    scope = _scope(plan_id, family_id, None if fixed is None else fixed.currency, credit_package_id, add_on_id)
    previous = await PartnerMargin.get_or_none(partner_id=viewer.partner_id, scope=scope)
    before = None if previous is None else _audited(previous)
    # One statement: two concurrent first margins of a scope leave one row, the later one's.
    await sql.execute(
        "INSERT INTO partner_margin"
        " (created_at, partner_id, plan_id, family_id, scope, kind, percentage, fixed_amount, currency)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (partner_id, scope) DO UPDATE"
        " SET kind = excluded.kind, percentage = excluded.percentage, fixed_amount = excluded.fixed_amount,"
        " currency = excluded.currency",
        clock.now(),
        viewer.partner_id,
        plan_id,
        family_id,
        scope,
        kind.value,
        percentage if sql.is_postgres() else (None if percentage is None else str(percentage)),
        None if fixed is None else fixed.amount,
        None if fixed is None else fixed.currency,
    )
    margin = await PartnerMargin.get(partner_id=viewer.partner_id, scope=scope)
    await audit.record(
        actor=viewer.actor,
        action="margin.set",
        target_type="PartnerMargin",
        target_id=margin.id,
        partner_id=viewer.partner_id,
        before=before,
        after=_audited(margin),
    )
    return margin


def shown_value(margin: PartnerMargin) -> tuple[str, str | None]:
    """A margin's value as the API shows it, with the currency of a fixed one: ("12.5", None), ("5.00", "BRL")."""
    if margin.kind is MarginKind.PERCENTAGE:
        return plain_decimal(Decimal(str(margin.percentage or 0))), None
    # Every fixed margin has its currency (migration 0010 gave one to those set before).
    currency = margin.currency or ""
    return format_minor(margin.fixed_amount or 0, currency), currency


def _audited(margin: PartnerMargin) -> dict[str, Any]:
    value, currency = shown_value(margin)
    return {
        "kind": margin.kind,
        "value": value,
        "currency": currency,
        "plan_id": audit.global_id("Plan", margin.plan_id),
        "family_id": audit.global_id("PlanFamily", margin.family_id),
        "credit_package_id": audit.global_id("CreditPackage", on_package(margin)),
        "add_on_id": audit.global_id("AddOn", on_add_on(margin)),
    }


_TARGETS = (("planId", "plan"), ("familyId", "family"), ("creditPackageId", "credit package"), ("addOnId", "add-on"))


def _one_target(*ids: int | None) -> None:
    """A margin is on one thing, or in bulk: never on two."""
    named = [field for (field, _), given in zip(_TARGETS, ids, strict=True) if given is not None]
    if len(named) > 1:
        raise BillingError(
            ErrorCode.INVALID_INPUT,
            "a margin is on one plan, family, credit package or add-on, or in bulk",
            field=named[-1],
        )


async def _priced_item(
    viewer: Viewer, plan_id: int | None, package_id: int | None, add_on_id: int | None
) -> Plan | CreditPackage | AddOn | None:
    """The platform's plan, package or add-on a margin is set on (a partner's own has no margin: it is priced)."""
    item: Plan | CreditPackage | AddOn | None = None
    field, noun = "planId", "plan"
    if plan_id is not None:
        item = await tenancy.get_scoped(visible_plans(viewer), plan_id, noun)
    elif package_id is not None:
        field, noun = "creditPackageId", "credit package"
        item = await tenancy.get_scoped(visible_credit_packages(viewer), package_id, noun, field=field)
    elif add_on_id is not None:
        field, noun = "addOnId", "add-on"
        item = await tenancy.get_scoped(visible_add_ons(viewer), add_on_id, noun, field=field)
    if item is not None and item.partner_id is not None:
        raise BillingError(ErrorCode.INVALID_INPUT, f"your own {noun}s have no margin: set their price", field=field)
    return item


async def _fixed_margin_currency(
    item: Plan | CreditPackage | AddOn | None, family_id: int | None, currency: str | None
) -> str:
    """The one currency a fixed margin may be in, where it is set."""
    named = None if currency is None else check_currency(currency)
    if item is not None:
        if named is not None and named != item.currency:
            raise BillingError(
                ErrorCode.CURRENCY_MISMATCH,
                f"it is priced in {item.currency}: a fixed margin on it is in {item.currency} too",
                field="currency",
            )
        return item.currency
    if family_id is not None:
        currencies: set[str] = {
            str(code)
            for code in await Plan.filter(family_id=family_id, partner_id=None).values_list("currency", flat=True)
        }
        if named is None:
            if len(currencies) != 1:
                raise BillingError(
                    ErrorCode.INVALID_INPUT, "name the currency of a fixed margin on this family", field="currency"
                )
            return currencies.pop()
        if currencies - {named}:
            raise BillingError(
                ErrorCode.CURRENCY_MISMATCH,
                f"the family has plans in {', '.join(sorted(currencies - {named}))}: a fixed margin in {named}"
                " cannot apply to them (use a percentage)",
                field="currency",
            )
        return named
    if named is None:
        raise BillingError(
            ErrorCode.INVALID_INPUT, "a bulk fixed margin is per currency: name the currency", field="currency"
        )
    return named


def _minor_units(value: Decimal | str, currency: str) -> int:
    if isinstance(value, str):
        minor = to_minor(value, currency, field="value")
    elif value != value.to_integral_value():
        raise BillingError(ErrorCode.INVALID_AMOUNT, "a fixed margin is in minor units", field="value")
    else:
        minor = int(value)
    return check_amount(minor, field="value", allow_zero=True)


def _scope(
    plan_id: int | None,
    family_id: int | None,
    currency: str | None = None,
    package_id: int | None = None,
    add_on_id: int | None = None,
) -> str:
    """A plan's, a family's, a package's or an add-on's margin is one, whatever its kind; in bulk, the
    percentage is one and each currency has its own fixed margin ("BULK:JPY")."""
    if plan_id is not None:
        return f"PLAN:{plan_id}"
    if family_id is not None:
        return f"FAMILY:{family_id}"
    if package_id is not None:
        return package_scope(package_id)
    if add_on_id is not None:
        return add_on_scope(add_on_id)
    return "BULK" if currency is None else f"BULK:{currency}"


def package_scope(package_id: int) -> str:
    return f"PACKAGE:{package_id}"


def add_on_scope(add_on_id: int) -> str:
    return f"ADD_ON:{add_on_id}"


def on_package(margin: PartnerMargin) -> int | None:
    """The platform package a margin is on, if it is on one."""
    kind, _, db_id = margin.scope.partition(":")
    return int(db_id) if kind == "PACKAGE" else None


def on_add_on(margin: PartnerMargin) -> int | None:
    """The platform add-on a margin is on, if it is on one."""
    kind, _, db_id = margin.scope.partition(":")
    return int(db_id) if kind == "ADD_ON" else None


async def remove_margin(
    viewer: Viewer,
    *,
    partner_id: int,
    plan_id: int | None = None,
    family_id: int | None = None,
    currency: str | None = None,
    credit_package_id: int | None = None,
    add_on_id: int | None = None,
) -> PartnerMargin:
    """Remove the partner's margin on one plan, on a family, or a bulk one (neither named: the bulk
    percentage, or with ``currency`` the bulk fixed margin in it): its clients pay the next margin that
    applies (the family's, then the bulk fixed one in the plan's currency, then the bulk percentage),
    or the platform price. Without its margin, a platform package or add-on is resold at cost."""
    viewer.require(Permission.MANAGE_PLANS)
    partner = await tenancy.get_scoped(tenancy.partners(viewer), partner_id, "partner")
    targets = (plan_id, family_id, credit_package_id, add_on_id)
    _one_target(*targets)
    if currency is not None and any(target is not None for target in targets):
        raise BillingError(
            ErrorCode.INVALID_INPUT, "only bulk margins are one per currency: name no currency", field="currency"
        )
    code = None if currency is None else check_currency(currency)
    scope = _scope(plan_id, family_id, code, credit_package_id, add_on_id)
    margin = await PartnerMargin.get_or_none(partner_id=partner.id, scope=scope)
    if margin is None:
        named = [field for (field, _), given in zip(_TARGETS, targets, strict=True) if given is not None]
        raise BillingError(
            ErrorCode.NOT_FOUND, "no margin there", field=named[0] if named else ("currency" if code else None)
        )
    async with in_transaction("default"):
        await margin.delete()
        await audit.record(
            actor=viewer.actor,
            action="margin.remove",
            target_type="PartnerMargin",
            target_id=margin.id,
            partner_id=partner.id,
            before=_audited(margin),
        )
    return margin


async def price_for(partner_id: int | None, plan: Plan) -> Money:
    """What this partner's clients pay for ``plan`` each period: for a platform plan, the platform's price
    with each level's margin on top, from the platform's direct partner down to this one."""
    if partner_id is None or plan.partner_id is not None:
        return Money(plan.price_amount, plan.currency)
    _, levels = await margins_down(partner_id)
    return price_down(levels, plan)


def price_down(levels: Sequence[Sequence[PartnerMargin]], plan: Plan) -> Money:
    """A platform plan's price down a chain of partners, from each level's margins already at hand (top
    first): each level's margin on its parent's price, rounded once per level (half-even, to the minor unit)."""
    price = Money(plan.price_amount, plan.currency)
    if plan.partner_id is not None:
        return price
    for margins in levels:
        price = _with_margin(margins, plan, price)
    return price


def price_with(margins: list[PartnerMargin], partner_id: int | None, plan: Plan) -> Money:
    """The price for a direct partner of the platform from its margins already at hand."""
    base = Money(plan.price_amount, plan.currency)
    if plan.partner_id is not None or partner_id is None:
        return base
    return _with_margin(margins, plan, base)


def _with_margin(margins: Sequence[PartnerMargin], plan: Plan, base: Money) -> Money:
    """``base`` (the parent's price of a platform plan) with the most specific of ``margins`` on top."""
    by_scope = {m.scope: m for m in margins if _applies_to(m, plan.currency)}
    # The most specific margin wins: this plan's, else its family's, else the bulk fixed one in the
    # plan's currency, else the bulk percentage. A fixed margin in another currency never applies.
    margin = (
        by_scope.get(f"PLAN:{plan.id}")
        or by_scope.get(f"FAMILY:{plan.family_id}")
        or by_scope.get(f"BULK:{plan.currency}")
        or by_scope.get("BULK")
    )
    return base if margin is None else _apply(margin, base)


def _apply(margin: PartnerMargin, base: Money) -> Money:
    if margin.kind is MarginKind.PERCENTAGE:
        return partner_price(base, margin.kind, Decimal(str(margin.percentage or 0)))
    return partner_price(base, margin.kind, Money(margin.fixed_amount or 0, base.currency))


def stacked(levels: Sequence[Sequence[PartnerMargin]], item: CreditPackage | AddOn) -> Money:
    """A platform package's or add-on's price down a chain of partners, from each level's margins already
    at hand (top first): each level's margin on that one item over its parent's price, rounded once per
    level (half-even, to the minor unit). A partner's own package or add-on is its price."""
    price = Money(item.price_amount, item.currency)
    if item.partner_id is not None:
        return price
    scope = package_scope(item.id) if isinstance(item, CreditPackage) else add_on_scope(item.id)
    for margins in levels:
        margin = next((m for m in margins if m.scope == scope and _applies_to(m, item.currency)), None)
        if margin is not None:
            price = _apply(margin, price)
    return price


async def margins_down(partner_id: int) -> tuple[list[int], list[list[PartnerMargin]]]:
    """The chain from the platform's direct partner down to ``partner_id``, and each level's margins."""
    chain = await hierarchy.ancestry(partner_id)
    margins = await PartnerMargin.filter(partner_id__in=chain)
    return chain, [[m for m in margins if m.partner_id == level] for level in chain]


async def package_costs(partner_id: int, package: CreditPackage) -> list[tuple[int, Money]]:
    """What each level of the chain down to ``partner_id`` pays for one of the platform's ``package``, top
    first: the platform's direct partner the platform's price, each level below its parent's price. The
    last is what ``partner_id`` pays, to its parent (or to the platform, if it is a direct partner)."""
    chain, levels = await margins_down(partner_id)
    return [(partner, stacked(levels[:n], package)) for n, partner in enumerate(chain)]


async def package_purchase(
    partner_id: int, lines: Sequence[tuple[CreditPackage, int]]
) -> tuple[Money, list[dict[str, int]]]:
    """What ``partner_id`` pays for ``lines`` of the platform's packages (each with its count), and what each
    level above it owes its own parent for them, top first (none for a direct partner). Both are fixed when
    the purchase is made and kept with it: a margin changed before it is paid changes neither."""
    chain, levels = await margins_down(partner_id)

    def total(n: int) -> int:  # what level n pays for the whole purchase: its parent's price
        return sum(stacked(levels[:n], package).amount * count for package, count in lines)

    price = Money(total(len(chain) - 1), lines[0][0].currency)
    return price, [{"partner_id": partner, "amount": total(n)} for n, partner in enumerate(chain[:-1])]


async def add_on_price(partner_id: int | None, add_on: AddOn) -> Money:
    """What ``partner_id``'s clients pay for ``add_on``: a platform add-on with each level's margin on it."""
    if partner_id is None:
        return Money(add_on.price_amount, add_on.currency)
    _, levels = await margins_down(partner_id)
    return stacked(levels, add_on)


async def package_cost(partner_id: int, package: CreditPackage) -> Money:
    """What ``partner_id`` pays for one of the platform's ``package``: its parent's price, or the platform's."""
    return (await package_costs(partner_id, package))[-1][1]


def _applies_to(margin: PartnerMargin, currency: str) -> bool:
    return margin.kind is MarginKind.PERCENTAGE or margin.currency == currency


async def create_add_on(
    viewer: Viewer, *, name: str, limit_deltas: dict[str, int], price: Money, points_cost: int | None = None
) -> AddOn:
    viewer.require(Permission.MANAGE_PLANS)
    partner_id = None if viewer.is_platform else viewer.partner_id
    if not limit_deltas:
        raise BillingError(ErrorCode.INVALID_INPUT, "an add-on raises at least one limit", field="limitDeltas")
    if points_cost is not None:
        check_amount(points_cost, field="pointsCost")
    add_on = await AddOn.create(
        partner_id=partner_id,
        name=check_name(name),
        limit_deltas=check_limits(limit_deltas, "limitDeltas"),
        price_amount=check_amount(price.amount, field="price", allow_zero=True),
        currency=check_currency(price.currency),
        points_cost=points_cost,
    )
    await audit.record(
        actor=viewer.actor,
        action="add_on.create",
        target_type="AddOn",
        target_id=add_on.id,
        partner_id=partner_id,
        after={"name": add_on.name, "limit_deltas": add_on.limit_deltas},
    )
    return add_on


async def create_credit_package(
    viewer: Viewer, *, name: str, unit: str, quantity: int, price: Money, expires_after_days: int | None = None
) -> CreditPackage:
    """A partner's package of units for its clients (the platform's are sold to partners)."""
    viewer.require(Permission.MANAGE_PLANS)
    if viewer.kind == "WORKSPACE":
        raise BillingError(ErrorCode.FORBIDDEN, "packages are made by the partner")
    partner_id = None if viewer.is_platform else viewer.partner_id
    package = await CreditPackage.create(
        partner_id=partner_id,
        name=check_name(name),
        unit=check_unit(unit),
        quantity=check_amount(quantity, field="quantity"),
        price_amount=check_amount(price.amount, field="price"),
        currency=check_currency(price.currency),
        expires_after_days=_check_expiry_days(expires_after_days),
    )
    await audit.record(
        actor=viewer.actor,
        action="credit_package.create",
        target_type="CreditPackage",
        target_id=package.id,
        partner_id=partner_id,
        after={
            "name": package.name,
            "quantity": audit.quantity(package.quantity, package.unit),
            "price": audit.money(price),
        },
    )
    return package


def _check_expiry_days(days: int | None) -> int | None:
    if days is not None and not 1 <= days <= 3660:
        raise BillingError(ErrorCode.INVALID_INPUT, "must be between 1 and 3660 days", field="expiresAfterDays")
    return days


def visible_credit_packages(viewer: Viewer) -> QuerySet[CreditPackage]:
    """The platform sees every package; a partner its own and the platform's (which it buys); a client its
    partner's only (the platform's are sold to partners, at prices that are no client's business)."""
    if viewer.is_platform:
        return CreditPackage.all()
    if viewer.kind == "WORKSPACE":
        return CreditPackage.filter(partner_id=viewer.partner_id)
    return CreditPackage.filter(Q(partner_id=None) | Q(partner_id=viewer.partner_id))


def credit_packages(viewer: Viewer, status: PlanStatus | None = None) -> QuerySet[CreditPackage]:
    """The packages the viewer may buy or sells, oldest first: the platform sees every one; a partner its
    own and the platform's (which it buys for its pool); a workspace its partner's on sale (ACTIVE)."""
    if viewer.kind == "WORKSPACE":
        found = CreditPackage.filter(partner_id=viewer.partner_id, status=PlanStatus.ACTIVE)
    else:
        found = visible_credit_packages(viewer)
    return (found.filter(status=status) if status is not None else found).order_by("id")


async def _package_to_change(viewer: Viewer, package_id: int) -> CreditPackage:
    package = await tenancy.get_scoped(visible_credit_packages(viewer), package_id, "credit package", field="packageId")
    if package.partner_id is None:
        viewer.require(Permission.MANAGE_CATALOG)
        if not viewer.is_platform:
            raise BillingError(ErrorCode.FORBIDDEN, "the platform's packages are the platform's to change", "packageId")
    else:
        viewer.require(Permission.MANAGE_PLANS)
        if viewer.kind == "WORKSPACE":
            raise BillingError(ErrorCode.FORBIDDEN, "packages are changed by the partner", field="packageId")
    return package


def _package_audited(package: CreditPackage) -> dict[str, Any]:
    return {
        "name": package.name,
        "price": audit.money(Money(package.price_amount, package.currency)),
        "status": package.status,
    }


async def update_credit_package(
    viewer: Viewer, *, package_id: int, name: str | None = None, price: Money | None = None
) -> CreditPackage:
    """Rename or reprice a package. A new price applies to purchases from now on: payments already made,
    or open, keep the amount they were made for."""
    package = await _package_to_change(viewer, package_id)
    before = _package_audited(package)
    if name is not None:
        package.name = check_name(name)
    if price is not None:
        package.price_amount = check_amount(price.amount, field="price")
        package.currency = check_currency(price.currency)
    await package.save(update_fields=["name", "price_amount", "currency"])
    await audit.record(
        actor=viewer.actor,
        action="credit_package.update",
        target_type="CreditPackage",
        target_id=package.id,
        partner_id=package.partner_id,
        before=before,
        after=_package_audited(package),
    )
    return package


def package_lines(package: CreditPackage, count: int) -> list[dict[str, Any]]:
    """What a payment buys, as it keeps it (``purpose["packages"]``, shown as ``Payment.packageLines``):
    ``count`` of ``package`` as it was sold then."""
    return [{"package_id": package.id, "name": package.name, "quantity": package.quantity, "count": count}]


PACKAGE_STATUSES = (PlanStatus.ACTIVE, PlanStatus.ARCHIVED)


async def set_credit_package_status(viewer: Viewer, *, package_id: int, status: PlanStatus) -> CreditPackage:
    """Archive a package (or put it on sale again). An archived package is never bought: not at checkout,
    not by auto-billing, not by an auto top-up (the rules that named it are turned off; the partner picks
    another package to turn them on again)."""
    if status not in PACKAGE_STATUSES:
        raise BillingError(ErrorCode.INVALID_INPUT, "a package is ACTIVE or ARCHIVED", field="status")
    async with in_transaction("default"):
        package = await _package_to_change(viewer, package_id)
        before = package.status
        package.status = status
        await package.save(update_fields=["status"])
        stopped = 0
        if status is PlanStatus.ARCHIVED:
            stopped = await AutoTopUp.filter(package_id=package.id, enabled=True).update(enabled=False)
        await audit.record(
            actor=viewer.actor,
            action="credit_package.status",
            target_type="CreditPackage",
            target_id=package.id,
            partner_id=package.partner_id,
            before={"status": before},
            after={"status": status, "auto_top_ups_turned_off": stopped},
        )
    return package


def visible_add_ons(viewer: Viewer) -> QuerySet[AddOn]:
    if viewer.is_platform:
        return AddOn.all()
    return AddOn.filter(Q(partner_id=None) | Q(partner_id=viewer.partner_id))
