"""Usage reported by the product: WhatsApp message events, project credit, units consumed."""

from __future__ import annotations

import strawberry

from resolvers.accounts import credit
from resolvers.usage import usage


@strawberry.type
class Mutation:
    consume_units: credit.ConsumeUnitsPayload = strawberry.mutation(
        resolver=credit.consume_units, description="The product reports units used; a repeated eventId is a no-op."
    )
    assign_project_credit: usage.AssignProjectCreditPayload = strawberry.mutation(
        resolver=usage.assign_project_credit,
        description="Add or take back a project's WhatsApp credit; the centralised balance is not touched.",
    )
    set_usage_credit_policy: usage.SetUsageCreditPolicyPayload = strawberry.mutation(
        resolver=usage.set_usage_credit_policy,
        description="When a project's credit runs out: refuse usage, or allow it down to the credit limit.",
    )
    report_usage_events: usage.ReportUsageEventsPayload = strawberry.mutation(
        resolver=usage.report_usage_events,
        description="The product reports delivered messages (up to 1,000 per call); one result per event.",
    )
