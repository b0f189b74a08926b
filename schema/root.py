"""The Schema: root types, extensions and limits."""

from __future__ import annotations

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from resolvers import (
    api_keys,
    audit,
    branding,
    catalog,
    credit,
    identity,
    node,
    partners,
    payments,
    realtime,
    subscriptions,
    usage,
    viewer,
    wallets,
    webhooks,
    workspaces,
)
from resolvers.auto_billing import AutoBilling, SetAutoBillingPayload, auto_billing_of, set_auto_billing
from resolvers.branding import PublicBranding
from resolvers.pagination import DEFAULT_PAGE, MAX_PAGE
from schema.errors import ShapeErrors, log_unexpected
from schema.extensions import (
    FreshLoadersOnWebsockets,
    OneConnectionPerQuery,
    ParseOnce,
    SubscriptionsOverWebsockets,
)
from schema.limits import StorableStrings, cost_rule
from schema.types import (
    AddOn,
    ApiKey,
    AuditEntry,
    Connection,
    Node,
    Partner,
    PartnerUser,
    Plan,
    PlanFamily,
    Viewer,
    Wallet,
    Workspace,
    WorkspaceUser,
)

MAX_DEPTH = 12
MAX_TOKENS = 2000
MAX_ALIASES = 30
MAX_COST = 50_000


@strawberry.type
class Query:
    node: Node | None = strawberry.field(
        resolver=node.node, description="Any object by its global id; null if unknown or not yours."
    )
    viewer: Viewer = strawberry.field(resolver=viewer.viewer)
    partners: Connection[Partner] = strawberry.field(resolver=partners.list_partners)
    workspaces: Connection[Workspace] = strawberry.field(
        resolver=workspaces.list_workspaces,
        description="Workspaces you can see, oldest first; filter by owner e-mail.",
    )
    partner_users: Connection[PartnerUser] = strawberry.field(resolver=identity.partner_users)
    workspace_users: Connection[WorkspaceUser] = strawberry.field(resolver=identity.workspace_users)
    api_keys: Connection[ApiKey] = strawberry.field(resolver=api_keys.list_api_keys)
    audit_log: Connection[AuditEntry] = strawberry.field(resolver=audit.audit_log)
    plans: Connection[Plan] = strawberry.field(resolver=catalog.plans)
    plan_families: Connection[PlanFamily] = strawberry.field(resolver=catalog.plan_families)
    add_ons: Connection[AddOn] = strawberry.field(resolver=catalog.add_ons)
    preview_change: subscriptions.ChangePreview = strawberry.field(
        resolver=subscriptions.preview_change, description="Dry run: limits, price and excesses a change would give."
    )
    renewal_forecast: subscriptions.RenewalForecast = strawberry.field(
        resolver=subscriptions.renewal_forecast,
        description="Renewals due over the next days (7, 30...) for a partner's workspaces and its own plan.",
    )
    auto_billing: AutoBilling = strawberry.field(
        resolver=auto_billing_of,
        description="A partner's auto-billing: its setting, its pool, what it bought, what its clients are owed.",
    )
    branding: PublicBranding | None = strawberry.field(
        resolver=branding.branding_by_domain, description="Public: a partner's branding by its domain."
    )
    rate_card: usage.RateCard = strawberry.field(
        resolver=usage.rate_card,
        description="WhatsApp prices per delivered message: a partner's (both prices) or the platform's.",
    )


@strawberry.type
class Mutation:
    create_partner: partners.CreatePartnerPayload = strawberry.mutation(resolver=partners.create_partner)
    create_workspace: workspaces.CreateWorkspacePayload = strawberry.mutation(resolver=workspaces.create_workspace)
    grant_units: wallets.AdjustWorkspaceBalancePayload = strawberry.mutation(
        resolver=wallets.grant_units, description="Add units to a workspace's wallet by hand, with a note."
    )
    debit_units: wallets.AdjustWorkspaceBalancePayload = strawberry.mutation(
        resolver=wallets.debit_units, description="Take units from a workspace's wallet by hand, with a note."
    )
    grant_partner_balance: wallets.AdjustWorkspaceBalancePayload = strawberry.mutation(
        resolver=wallets.grant_partner_balance,
        description="The platform funds a partner's centralised balance by hand, with a note.",
    )
    record_manual_purchase: wallets.RecordManualPurchasePayload = strawberry.mutation(
        resolver=wallets.record_manual_purchase
    )
    set_wallet_credit_limit: wallets.SetWalletCreditLimitPayload = strawberry.mutation(
        resolver=wallets.set_wallet_credit_limit
    )
    create_api_key: api_keys.CreateApiKeyPayload = strawberry.mutation(resolver=api_keys.create_api_key)
    revoke_api_key: api_keys.RevokeApiKeyPayload = strawberry.mutation(resolver=api_keys.revoke_api_key)
    login: identity.LoginPayload = strawberry.mutation(resolver=identity.login)
    logout: identity.DonePayload = strawberry.mutation(resolver=identity.logout)
    request_password_reset: identity.DonePayload = strawberry.mutation(resolver=identity.request_password_reset)
    reset_password: identity.DonePayload = strawberry.mutation(resolver=identity.reset_password)
    change_password: identity.DonePayload = strawberry.mutation(resolver=identity.change_password)
    invite_partner_user: identity.InvitePartnerUserPayload = strawberry.mutation(resolver=identity.invite_partner_user)
    set_partner_user_permissions: identity.InvitePartnerUserPayload = strawberry.mutation(
        resolver=identity.set_partner_user_permissions
    )
    create_workspace_user: identity.CreateWorkspaceUserPayload = strawberry.mutation(
        resolver=identity.create_workspace_user
    )
    update_branding: branding.UpdateBrandingPayload = strawberry.mutation(resolver=branding.update_branding)
    create_plan_family: catalog.PlanFamilyPayload = strawberry.mutation(resolver=catalog.create_plan_family)
    create_plan: catalog.PlanPayload = strawberry.mutation(resolver=catalog.create_plan)
    set_plan_status: catalog.PlanPayload = strawberry.mutation(resolver=catalog.set_plan_status)
    set_partner_margin: catalog.SetPartnerMarginPayload = strawberry.mutation(resolver=catalog.set_partner_margin)
    create_add_on: catalog.AddOnPayload = strawberry.mutation(resolver=catalog.create_add_on)
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
    configure_gateway: payments.ConfigureGatewayPayload = strawberry.mutation(
        resolver=payments.configure_gateway,
        description="Point new checkouts at a provider; earlier configurations keep settling what they started.",
    )
    checkout: payments.CheckoutPayload = strawberry.mutation(
        resolver=payments.checkout_,
        description="Pay for a plan, an add-on or a credit package by card, boleto, pix or by hand.",
    )
    refund_payment: payments.RefundPaymentPayload = strawberry.mutation(
        resolver=payments.refund_payment,
        description="Refund a payment in full or in part; what it bought is taken back by the refund policy.",
    )
    buy_platform_package: payments.BuyPlatformPackagePayload = strawberry.mutation(
        resolver=payments.buy_platform_package,
        description="A partner buys a platform package for its pool, through the platform's gateway.",
    )
    set_refund_policy: payments.SetRefundPolicyPayload = strawberry.mutation(resolver=payments.set_refund_policy)
    create_credit_package: payments.CreateCreditPackagePayload = strawberry.mutation(
        resolver=payments.create_credit_package
    )
    set_credit_billing: credit.SetCreditBillingPayload = strawberry.mutation(
        resolver=credit.set_credit_billing, description="Credit billing on: add-ons cost points per period."
    )
    buy_add_on_with_points: credit.AddOnWithPointsPayload = strawberry.mutation(resolver=credit.buy_add_on_with_points)
    set_auto_top_up: credit.WalletPayload = strawberry.mutation(resolver=credit.set_auto_top_up)
    set_low_balance_threshold: credit.WalletPayload = strawberry.mutation(resolver=credit.set_low_balance_threshold)
    set_auto_billing: SetAutoBillingPayload = strawberry.mutation(
        resolver=set_auto_billing,
        description="Auto-billing on: plan grants come out of the partner's pool, and a short pool buys what it lacks.",
    )
    top_up_wallet: credit.TopUpWalletPayload = strawberry.mutation(
        resolver=credit.top_up_wallet, description="Buy a package for a wallet now; retried keys credit once."
    )
    transfer_units: credit.TransferUnitsPayload = strawberry.mutation(resolver=credit.transfer_units)
    consume_units: credit.ConsumeUnitsPayload = strawberry.mutation(
        resolver=credit.consume_units, description="The product reports units used; a repeated eventId is a no-op."
    )
    set_platform_rates: usage.RateCardPayload = strawberry.mutation(
        resolver=usage.set_platform_rates, description="The platform's WhatsApp price per message, by cell."
    )
    set_rate_margin: usage.RateCardPayload = strawberry.mutation(
        resolver=usage.set_rate_margin, description="A partner's margin over WhatsApp rates: bulk or per cell."
    )
    assign_project_credit: usage.AssignProjectCreditPayload = strawberry.mutation(
        resolver=usage.assign_project_credit,
        description="Add or take back a project's WhatsApp credit; the centralised balance is not touched.",
    )
    set_usage_credit_policy: usage.SetUsageCreditPolicyPayload = strawberry.mutation(
        resolver=usage.set_usage_credit_policy,
        description="When a project's credit runs out: refuse usage, or allow it down to the credit limit.",
    )
    top_up_partner_balance: usage.TopUpPartnerBalancePayload = strawberry.mutation(
        resolver=usage.top_up_partner_balance,
        description="The partner pays the platform, through its gateway, to raise its centralised balance.",
    )
    report_usage_events: usage.ReportUsageEventsPayload = strawberry.mutation(
        resolver=usage.report_usage_events,
        description="The product reports delivered messages (up to 1,000 per call); one result per event.",
    )
    create_webhook_endpoint: webhooks.CreateWebhookEndpointPayload = strawberry.mutation(
        resolver=webhooks.create_webhook_endpoint, description="Receive events, signed; the secret is shown once."
    )
    send_test_webhook: webhooks.SendTestWebhookPayload = strawberry.mutation(resolver=webhooks.send_test_webhook)
    resend_webhook_delivery: webhooks.WebhookDeliveryPayload = strawberry.mutation(
        resolver=webhooks.resend_webhook_delivery
    )
    record_payment: wallets.RecordPaymentPayload = strawberry.mutation(
        resolver=wallets.record_payment,
        description="Record a pending manual payment as collected; it is delivered once.",
    )


@strawberry.type(
    description="Subscriptions, over graphql-transport-ws on /graphql: the current state first, then each change."
)
class LiveUpdates:  # "Subscription" is a plan's subscription
    wallet_balance_changed: Wallet = strawberry.subscription(
        resolver=realtime.wallet_balance_changed,
        description="A wallet you can see, now and after each change of its balance.",
    )
    workspace_status_changed: Workspace = strawberry.subscription(
        resolver=realtime.workspace_status_changed,
        description="A workspace you can see, now and after each change of its status or status reasons.",
    )


VALIDATION_RULES = [
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
    cost_rule(MAX_COST, MAX_PAGE, DEFAULT_PAGE),
    StorableStrings,
]


class WhitebillSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        # Expected failures are not logged as errors; unexpected ones are, with the request id.
        log_unexpected(errors)


def build_schema() -> strawberry.Schema:
    return WhitebillSchema(
        query=Query,
        mutation=Mutation,
        subscription=LiveUpdates,
        types=[Partner, Workspace],
        config=StrawberryConfig(relay_max_results=MAX_PAGE),
        extensions=[
            lambda: ParseOnce(maxsize=512),
            lambda: ValidationCache(maxsize=512),
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
            # The same rule classes for every request: ValidationCache keys on them.
            lambda: AddValidationRules(VALIDATION_RULES),
            ShapeErrors,
            OneConnectionPerQuery,
            SubscriptionsOverWebsockets,
            FreshLoadersOnWebsockets,
        ],
    )


schema = build_schema()
