"""WhatsApp usage: each reported event's outcome, a project's delivered messages per month and category as
charged, and what happens when a project's credit runs out."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from billing.usage import usage_reports, whatsapp
from models import enums
from schema.amounts import Money
from schema.catalog.types import MessageCategory
from schema.context import Context

UsageCreditPolicy = strawberry.enum(enums.UsageCreditPolicy)
UsageWindow = strawberry.enum(whatsapp.Window)
UsageStatus = strawberry.enum(whatsapp.Status, name="UsageEventStatus")
UsageRefusal = strawberry.enum(whatsapp.Reason, name="UsageRefusalReason")


@strawberry.type
class UsageEventResult:
    event_id: str
    status: UsageStatus
    country: str | None
    partner_amount: Money | None = strawberry.field(
        description="Charged to the project's credit, exact (it may have more decimals than the currency: the"
        " credit moves by its running total, rounded once)."
    )
    platform_amount: Money | None = strawberry.field(
        description="Charged to the partner's centralised balance, exact like partnerAmount."
    )
    reason: UsageRefusal | None
    message: str | None

    @classmethod
    def of(cls, result: whatsapp.UsageResult) -> UsageEventResult:
        currency = result.currency
        return cls(
            event_id=result.event_id,
            status=result.status,
            country=result.country,
            partner_amount=Money.exact(result.partner_amount, currency) if currency else None,
            platform_amount=Money.exact(result.platform_amount, currency) if currency else None,
            reason=result.reason,
            message=result.message,
        )


@strawberry.type(description="A project's delivered messages in one month and category.")
class UsageMonth:
    month: str
    category: MessageCategory
    events: int
    messages: str = strawberry.field(description="Messages delivered (free ones included).")
    free_messages: str
    partner_amount: Money = strawberry.field(description="The exact sum of the month's events' amounts.")
    platform_amount: Money


async def usage_by_month(
    info: Info[Context, None], project_db_id: int, since: str | None, until: str | None
) -> list[UsageMonth]:
    viewer = info.context.require_viewer()
    lines = await usage_reports.usage_by_month(viewer, project_id=project_db_id, since=since, until=until)
    return [
        UsageMonth(
            month=line.month,
            category=enums.MessageCategory(line.category),
            events=line.events,
            messages=str(line.messages),
            free_messages=str(line.free_messages),
            partner_amount=Money.exact(line.partner_amount, line.currency),
            platform_amount=Money.exact(line.platform_amount, line.currency),
        )
        for line in lines
    ]
