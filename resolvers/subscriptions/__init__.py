"""Subscriptions: plans assigned, bought, changed, cancelled; add-ons, limits, dunning, forecasts."""

from __future__ import annotations

import strawberry

from resolvers.accounts import credit
from resolvers.subscriptions import subscriptions


@strawberry.type
class Query:
    preview_change: subscriptions.ChangePreview = strawberry.field(
        resolver=subscriptions.preview_change, description="Dry run: limits, price and excesses a change would give."
    )
    renewal_forecast: subscriptions.RenewalForecast = strawberry.field(
        resolver=subscriptions.renewal_forecast,
        description="Renewals due over the next days (7, 30...) for a partner's workspaces and its own plan.",
    )


@strawberry.type
class Mutation:
    assign_plan: subscriptions.AssignPlanPayload = strawberry.mutation(resolver=subscriptions.assign_plan)
    set_workspace_add_on: subscriptions.SetWorkspaceAddOnPayload = strawberry.mutation(
        resolver=subscriptions.set_workspace_add_on
    )
    report_usage: subscriptions.ReportUsagePayload = strawberry.mutation(resolver=subscriptions.report_usage)
    purchase_plan: subscriptions.SubscriptionChangePayload = strawberry.mutation(
        resolver=subscriptions.purchase_plan, description="A workspace buys a plan (allowed whatever its status)."
    )
    change_plan: subscriptions.SubscriptionChangePayload = strawberry.mutation(resolver=subscriptions.change_plan)
    cancel_subscription: subscriptions.SubscriptionChangePayload = strawberry.mutation(
        resolver=subscriptions.cancel_subscription
    )
    set_auto_renew: subscriptions.WorkspacePayload = strawberry.mutation(resolver=subscriptions.set_auto_renew)
    subscribe_partner_plan: subscriptions.SubscriptionChangePayload = strawberry.mutation(
        resolver=subscriptions.subscribe_partner_plan
    )
    set_dunning_policy: subscriptions.SetDunningPolicyPayload = strawberry.mutation(
        resolver=subscriptions.set_dunning_policy
    )
    set_credit_billing: credit.SetCreditBillingPayload = strawberry.mutation(
        resolver=credit.set_credit_billing, description="Credit billing on: add-ons cost points per period."
    )
    buy_add_on_with_points: credit.AddOnWithPointsPayload = strawberry.mutation(resolver=credit.buy_add_on_with_points)
