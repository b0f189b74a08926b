"""Flow D: rate cards and margins, project credit, usage reported by the platform's product, the
monthly usage report per project, and the partner's centralised balance."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from billing.catalog import rate_cards
from billing.core import tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import check_currency, to_minor
from billing.sales import partner_balance
from billing.usage import platform_deductions, project_credit, usage_reports, whatsapp
from models import enums
from models.tenancy import Partner as PartnerRow
from models.wallets import Wallet as WalletRow
from schema.accounts.types import Wallet
from schema.amounts import Money
from schema.auth import target_partner, viewer_with
from schema.catalog.types import MarginKind
from schema.context import Context
from schema.errors import UserError, payload
from schema.ids import expect_id, from_global_id
from schema.sales.types import Payment, PaymentMethodKind
from schema.tenants.types import Partner

# Imported for its effect: client plan payments debit the platform price from the partner's balance.
_ = platform_deductions
MessageCategory = strawberry.enum(enums.MessageCategory)
UsageCreditPolicy = strawberry.enum(enums.UsageCreditPolicy)
UsageWindow = strawberry.enum(whatsapp.Window)
UsageStatus = strawberry.enum(whatsapp.Status, name="UsageEventStatus")
UsageRefusal = strawberry.enum(whatsapp.Reason, name="UsageRefusalReason")


# --- rate cards ----------------------------------------------------------------------------------


@strawberry.type(description="One country and category: the platform's price and the partner's, per message.")
class RateCell:
    country: str = strawberry.field(description='ISO 3166 alpha-2, or "*" for every other country.')
    category: MessageCategory
    platform_price: str = strawberry.field(description="Per delivered message, in major units, exact.")
    partner_price: str


@strawberry.type(description="Prices per delivered WhatsApp message in one currency.")
class RateCard:
    currency: str
    cells: list[RateCell]


async def _card_of(partner_id: int | None, currency: str) -> RateCard:
    table = await rate_cards.table(partner_id, currency)
    cells = [
        RateCell(
            country=country,
            category=enums.MessageCategory(category),
            platform_price=rate_cards.format_rate(rate.platform),
            partner_price=rate_cards.format_rate(rate.partner),
        )
        for (country, category), rate in sorted(table.cells.items())
    ]
    return RateCard(currency=currency, cells=cells)


async def rate_card(
    info: Info[Context, None], partner_id: strawberry.ID | None = None, currency: str | None = None
) -> RateCard:
    """A partner's card in its currency (platform and partner prices); the platform's, by currency."""
    viewer = viewer_with(info)
    if viewer.is_platform and partner_id is None:
        if currency is None:
            raise BillingError(ErrorCode.INVALID_INPUT, "name the currency", field="currency")
        return await _card_of(None, check_currency(currency))
    partner = await tenancy.get_scoped(tenancy.partners(viewer), target_partner(viewer, partner_id), "partner")
    return await _card_of(partner.id, partner.default_currency)


@strawberry.input
class RateCellInput:
    country: str
    category: MessageCategory
    price: str = strawberry.field(description="Per delivered message in major units; up to 8 decimals.")


@strawberry.type
class RateCardPayload:
    rate_card: RateCard | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def set_platform_rates(info: Info[Context, None], currency: str, cells: list[RateCellInput]) -> RateCardPayload:
    async def run() -> RateCardPayload:
        viewer = viewer_with(info, enums.Permission.MANAGE_CATALOG)
        card = await rate_cards.set_platform_rates(
            viewer,
            currency=currency,
            cells=[rate_cards.CellInput(c.country, c.category, c.price) for c in cells],
        )
        return RateCardPayload(rate_card=await _card_of(None, card.currency))

    return await payload(run, lambda errors: RateCardPayload(errors=errors))


@strawberry.input(description="A margin over the platform's rates: in bulk, or on one cell (country and category).")
class SetRateMarginInput:
    kind: MarginKind | None = strawberry.field(description="None removes this margin.")
    value: str | None = strawberry.field(
        default=None, description="A percentage, or an amount per message in major units."
    )
    country: str | None = None
    category: MessageCategory | None = None
    partner_id: strawberry.ID | None = None


async def set_rate_margin(info: Info[Context, None], input: SetRateMarginInput) -> RateCardPayload:
    async def run() -> RateCardPayload:
        viewer = viewer_with(info, enums.Permission.MANAGE_PLANS)
        partner_id = target_partner(viewer, input.partner_id)
        card = await rate_cards.set_partner_margin(
            viewer,
            partner_id=partner_id,
            kind=input.kind,
            value=input.value,
            country=input.country,
            category=input.category,
        )
        return RateCardPayload(rate_card=await _card_of(partner_id, card.currency))

    return await payload(run, lambda errors: RateCardPayload(errors=errors))


# --- project credit and policy ------------------------------------------------------------------------


@strawberry.input(description="Add (positive) or take back (negative) WhatsApp credit on a project.")
class AssignProjectCreditInput:
    project_id: strawberry.ID
    amount: str = strawberry.field(description='In the partner\'s currency, e.g. "150.00" or "-20".')
    idempotency_key: str
    note: str = ""


@strawberry.type
class AssignProjectCreditPayload:
    wallet: Wallet | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


def _project_id(global_id: str, field: str = "projectId") -> int:
    kind, db_id = from_global_id(global_id, field)
    if kind != "Project":
        raise BillingError(ErrorCode.NOT_FOUND, "project not found", field=field)
    return db_id


async def assign_project_credit(
    info: Info[Context, None], input: AssignProjectCreditInput
) -> AssignProjectCreditPayload:
    async def run() -> AssignProjectCreditPayload:
        viewer = viewer_with(info, enums.Permission.MANAGE_BILLING)
        project_id = _project_id(input.project_id)
        project = await tenancy.get_scoped(tenancy.projects(viewer), project_id, "project")
        partner = await PartnerRow.get(id=project.partner_id)
        made = await project_credit.assign(
            viewer,
            project_id=project_id,
            amount=to_minor(input.amount, partner.default_currency),
            note=input.note,
            idempotency_key=input.idempotency_key,
        )
        return AssignProjectCreditPayload(wallet=Wallet.of(await WalletRow.get(id=made.wallet_id)))

    return await payload(run, lambda errors: AssignProjectCreditPayload(errors=errors))


@strawberry.type
class SetUsageCreditPolicyPayload:
    partner: Partner | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def set_usage_credit_policy(
    info: Info[Context, None], policy: UsageCreditPolicy, partner_id: strawberry.ID | None = None
) -> SetUsageCreditPolicyPayload:
    async def run() -> SetUsageCreditPolicyPayload:
        viewer = viewer_with(info, enums.Permission.MANAGE_BILLING)
        row = await project_credit.set_policy(viewer, partner_id=target_partner(viewer, partner_id), policy=policy)
        return SetUsageCreditPolicyPayload(partner=Partner.of(row))

    return await payload(run, lambda errors: SetUsageCreditPolicyPayload(errors=errors))


# --- usage reports by the product -----------------------------------------------------------------------


@strawberry.input(description="Messages delivered: one event per recipient and category, with a unique id.")
class UsageEventInput:
    project_id: strawberry.ID
    event_id: str = strawberry.field(description="Unique: a repeated id is acknowledged and never charged again.")
    category: MessageCategory
    occurred_at: datetime
    count: int = 1
    recipient: str | None = strawberry.field(default=None, description="The recipient's number, e.g. +5511...")
    country: str | None = strawberry.field(default=None, description="Or its country (ISO 3166 alpha-2).")
    window: UsageWindow = whatsapp.Window.NONE


@strawberry.type
class UsageEventResult:
    event_id: str
    status: UsageStatus
    country: str | None
    partner_amount: Money | None = strawberry.field(description="Charged to the project's credit.")
    platform_amount: Money | None = strawberry.field(description="Charged to the partner's centralised balance.")
    reason: UsageRefusal | None
    message: str | None

    @classmethod
    def of(cls, result: whatsapp.UsageResult) -> UsageEventResult:
        currency = result.currency
        return cls(
            event_id=result.event_id,
            status=result.status,
            country=result.country,
            partner_amount=Money.of(result.partner_amount, currency) if currency else None,
            platform_amount=Money.of(result.platform_amount, currency) if currency else None,
            reason=result.reason,
            message=result.message,
        )


@strawberry.type
class ReportUsageEventsPayload:
    results: list[UsageEventResult] = strawberry.field(default_factory=list)
    errors: list[UserError] = strawberry.field(default_factory=list)


def project_db_id(global_id: str, cache: dict[str, int]) -> int:
    """A project's database id, or 0 (found nowhere) for anything that is not a project's id."""
    known = cache.get(global_id)
    if known is None:
        try:
            kind, db_id = from_global_id(global_id, "projectId")
        except BillingError:
            kind, db_id = "", 0
        known = cache[global_id] = db_id if kind == "Project" else 0
    return known


async def report_usage_events(info: Info[Context, None], events: list[UsageEventInput]) -> ReportUsageEventsPayload:
    async def run() -> ReportUsageEventsPayload:
        viewer = viewer_with(info, enums.Permission.REPORT_USAGE)
        ids: dict[str, int] = {}
        batch = [
            whatsapp.UsageIn(
                project_id=project_db_id(e.project_id, ids),
                event_id=e.event_id,
                category=e.category.value,
                occurred_at=whatsapp.as_utc(e.occurred_at),
                count=e.count,
                country=e.country,
                recipient=e.recipient,
                window=e.window.value,
            )
            for e in events
        ]
        results = await whatsapp.report(viewer, batch)
        return ReportUsageEventsPayload(results=[UsageEventResult.of(r) for r in results])

    return await payload(run, lambda errors: ReportUsageEventsPayload(errors=errors))


# --- the month report -------------------------------------------------------------------------------


@strawberry.type(description="A project's delivered messages in one month and category.")
class UsageMonth:
    month: str
    category: MessageCategory
    events: int
    messages: str = strawberry.field(description="Messages delivered (free ones included).")
    free_messages: str
    partner_amount: Money
    platform_amount: Money


async def usage_by_month(
    info: Info[Context, None], project_db_id: int, since: str | None, until: str | None
) -> list[UsageMonth]:
    viewer = viewer_with(info)
    lines = await usage_reports.usage_by_month(viewer, project_id=project_db_id, since=since, until=until)
    return [
        UsageMonth(
            month=line.month,
            category=enums.MessageCategory(line.category),
            events=line.events,
            messages=str(line.messages),
            free_messages=str(line.free_messages),
            partner_amount=Money.of(line.partner_amount, line.currency),
            platform_amount=Money.of(line.platform_amount, line.currency),
        )
        for line in lines
    ]


# --- the centralised balance ---------------------------------------------------------------------------


@strawberry.input(description="The partner pays the platform to raise its centralised balance.")
class TopUpPartnerBalanceInput:
    amount: str = strawberry.field(description='In the partner\'s currency, e.g. "500.00".')
    method: PaymentMethodKind
    idempotency_key: str
    partner_id: strawberry.ID | None = None
    card_token: str | None = None
    saved_payment_method_id: strawberry.ID | None = None
    save_card: bool = False


@strawberry.type
class TopUpPartnerBalancePayload:
    payment: Payment | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def top_up_partner_balance(
    info: Info[Context, None], input: TopUpPartnerBalanceInput
) -> TopUpPartnerBalancePayload:
    async def run() -> TopUpPartnerBalancePayload:
        viewer = viewer_with(info, enums.Permission.MANAGE_BILLING)
        partner_id = target_partner(viewer, input.partner_id)
        partner = await tenancy.get_scoped(tenancy.partners(viewer), partner_id, "partner")
        saved = input.saved_payment_method_id
        made = await partner_balance.top_up(
            viewer,
            partner_id=partner.id,
            amount=to_minor(input.amount, partner.default_currency),
            method=enums.PaymentMethodKind(input.method.value),
            idempotency_key=input.idempotency_key,
            card_token=input.card_token,
            saved_method_id=expect_id(saved, "SavedPaymentMethod", "savedPaymentMethodId") if saved else None,
            save_card=input.save_card,
        )
        return TopUpPartnerBalancePayload(payment=Payment.of(made))

    return await payload(run, lambda errors: TopUpPartnerBalancePayload(errors=errors))
