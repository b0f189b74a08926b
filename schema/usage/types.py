"""WhatsApp usage: a project's delivered messages per month and category, as charged."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from billing.usage import usage_reports
from models import enums
from schema.amounts import Money
from schema.catalog.types import MessageCategory
from schema.context import Context


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
    viewer = info.context.require_viewer()
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
