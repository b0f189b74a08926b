"""Agency auto-billing: the partner's pool and what it buys."""

from __future__ import annotations

import strawberry

from resolvers.auto_billing.auto_billing import AutoBilling, SetAutoBillingPayload, auto_billing_of, set_auto_billing


@strawberry.type
class Query:
    auto_billing: AutoBilling = strawberry.field(
        resolver=auto_billing_of,
        description="A partner's auto-billing: its setting, its pool, what it bought, what its clients are owed.",
    )


@strawberry.type
class Mutation:
    set_auto_billing: SetAutoBillingPayload = strawberry.mutation(
        resolver=set_auto_billing,
        description="Auto-billing on: plan grants come out of the partner's pool, and a short pool buys what it lacks.",
    )
