"""The catalog: plan families, plans, margins, add-ons, credit packages, WhatsApp rate cards."""

from __future__ import annotations

import strawberry

from resolvers.catalog import catalog
from resolvers.sales import payments
from resolvers.usage import usage
from schema.catalog.types import AddOn, Plan, PlanFamily
from schema.relay import Connection


@strawberry.type
class Query:
    plans: Connection[Plan] = strawberry.field(resolver=catalog.plans)
    plan_families: Connection[PlanFamily] = strawberry.field(resolver=catalog.plan_families)
    add_ons: Connection[AddOn] = strawberry.field(resolver=catalog.add_ons)
    rate_card: usage.RateCard = strawberry.field(
        resolver=usage.rate_card,
        description="WhatsApp prices per delivered message: a partner's (both prices) or the platform's.",
    )


@strawberry.type
class Mutation:
    create_plan_family: catalog.PlanFamilyPayload = strawberry.mutation(resolver=catalog.create_plan_family)
    create_plan: catalog.PlanPayload = strawberry.mutation(resolver=catalog.create_plan)
    set_plan_status: catalog.PlanPayload = strawberry.mutation(resolver=catalog.set_plan_status)
    set_partner_margin: catalog.SetPartnerMarginPayload = strawberry.mutation(resolver=catalog.set_partner_margin)
    create_add_on: catalog.AddOnPayload = strawberry.mutation(resolver=catalog.create_add_on)
    create_credit_package: payments.CreateCreditPackagePayload = strawberry.mutation(
        resolver=payments.create_credit_package
    )
    set_platform_rates: usage.RateCardPayload = strawberry.mutation(
        resolver=usage.set_platform_rates, description="The platform's WhatsApp price per message, by cell."
    )
    set_rate_margin: usage.RateCardPayload = strawberry.mutation(
        resolver=usage.set_rate_margin, description="A partner's margin over WhatsApp rates: bulk or per cell."
    )
