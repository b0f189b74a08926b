"""Usage the platform's product reports (WhatsApp messages delivered, units consumed), and what a
partner sets for it: a project's WhatsApp credit, and what happens when that credit runs out."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from billing.core import money
from billing.usage import project_credit, units, whatsapp
from models.enums import Permission
from models.wallets import Wallet as WalletRow
from schema.accounts.types import Wallet
from schema.amounts import Quantity
from schema.auth import target_partner, viewer_with
from schema.catalog.types import MessageCategory
from schema.context import Context
from schema.errors import UserError
from schema.ids import expect_id, project_db_id
from schema.mutations import mutation
from schema.tenants.types import Partner
from schema.usage.types import UsageCreditPolicy, UsageEventResult, UsageWindow

# --- WhatsApp messages delivered ----------------------------------------------------------------------


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


@strawberry.input(description="Up to 1,000 events; each gets its own result, in order.")
class ReportUsageEventsInput:
    events: list[UsageEventInput]


@strawberry.type
class ReportUsageEventsPayload:
    results: list[UsageEventResult] = strawberry.field(default_factory=list)
    errors: list[UserError] = strawberry.field(default_factory=list)


# --- units consumed -----------------------------------------------------------------------------------


@strawberry.input(
    description="Units used by a workspace (conversations, messages), reported by the platform's product."
)
class ConsumeUnitsInput:
    workspace_id: strawberry.ID
    unit: str
    amount: str
    event_id: str = strawberry.field(description="Unique per report: a repeated report changes nothing.")
    note: str = ""


@strawberry.type
class ConsumeUnitsPayload:
    balance: Quantity | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


# --- project credit and the credit policy -------------------------------------------------------------


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


@strawberry.input(description="What happens when a project's WhatsApp credit runs out, for one partner.")
class SetUsageCreditPolicyInput:
    policy: UsageCreditPolicy
    partner_id: strawberry.ID | None = None


@strawberry.type
class SetUsageCreditPolicyPayload:
    partner: Partner | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class Mutation:
    @mutation(
        permission=Permission.REPORT_USAGE,
        description="The product reports units used; a repeated eventId is a no-op.",
        fields={"idempotencyKey": "eventId"},  # the event's id is the report's idempotency key
    )
    async def consume_units(self, info: Info[Context, None], input: ConsumeUnitsInput) -> ConsumeUnitsPayload:
        unit = money.check_unit(input.unit)
        balance = await units.consume_units(
            viewer_with(info),
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            unit=unit,
            amount=money.to_minor(input.amount, unit),
            event_id=input.event_id,
            note=input.note,
        )
        return ConsumeUnitsPayload(balance=Quantity.of(balance, unit))

    @mutation(
        permission=Permission.MANAGE_BILLING,
        description="Add or take back a project's WhatsApp credit; the centralised balance is not touched.",
    )
    async def assign_project_credit(
        self, info: Info[Context, None], input: AssignProjectCreditInput
    ) -> AssignProjectCreditPayload:
        made = await project_credit.assign(
            viewer_with(info),
            project_id=expect_id(input.project_id, "Project", "projectId"),
            amount=input.amount,
            note=input.note,
            idempotency_key=input.idempotency_key,
        )
        return AssignProjectCreditPayload(wallet=Wallet.of(await WalletRow.get(id=made.wallet_id)))

    @mutation(
        permission=Permission.MANAGE_BILLING,
        description="When a project's credit runs out: refuse usage, or allow it down to the credit limit.",
    )
    async def set_usage_credit_policy(
        self, info: Info[Context, None], input: SetUsageCreditPolicyInput
    ) -> SetUsageCreditPolicyPayload:
        viewer = viewer_with(info)
        partner = await project_credit.set_policy(
            viewer, partner_id=target_partner(viewer, input.partner_id), policy=input.policy
        )
        return SetUsageCreditPolicyPayload(partner=Partner.of(partner))

    @mutation(
        permission=Permission.REPORT_USAGE,
        description="The product reports delivered messages (up to 1,000 per call); one result per event.",
    )
    async def report_usage_events(
        self, info: Info[Context, None], input: ReportUsageEventsInput
    ) -> ReportUsageEventsPayload:
        ids: dict[str, int] = {}
        batch = [
            whatsapp.UsageIn(
                project_id=project_db_id(e.project_id, ids),
                event_id=e.event_id,
                category=e.category.value,
                occurred_at=whatsapp.as_utc(e.occurred_at, field=f"events[{index}].occurredAt"),
                count=e.count,
                country=e.country,
                recipient=e.recipient,
                window=e.window.value,
            )
            for index, e in enumerate(input.events)
        ]
        results = await whatsapp.report(viewer_with(info), batch)
        return ReportUsageEventsPayload(results=[UsageEventResult.of(r) for r in results])
