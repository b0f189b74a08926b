"""Partners, their workspaces and projects, the people and keys that act for them, branding, audit."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime

import strawberry
import strawberry.scalars
from strawberry.types import Info

from billing.charges.charging import saved_methods
from billing.charges.gateway_configs import active_config, configs_of
from billing.core import tenancy
from billing.core.text import check_text
from billing.outbox import partner_webhooks
from billing.subscriptions.current import live_partner_subscription
from billing.subscriptions.lifecycle import history_of
from billing.subscriptions.limits import combine
from models import catalog as catalog_models
from models import enums
from models import operations as operations_models
from models import payments as payment_models
from models import subscriptions as subscription_models
from models import tenancy as tenancy_models
from models import wallets as wallet_models
from schema.accounts.types import Wallet
from schema.catalog.types import Limit, PartnerMargin
from schema.context import Context, now_or_later, page_asks, ready
from schema.ids import to_global_id
from schema.outbox.types import WebhookEndpoint
from schema.relay import Connection, Node, paginate, paginate_loaded, paginate_plain
from schema.sales.types import GatewayConfig, Payment, PaymentMethodKind, RefundPlanPolicy, SavedPaymentMethod
from schema.subscriptions.types import (
    DunningPolicy,
    StatusReason,
    Subscription,
    SubscriptionHistoryEntry,
    WorkspaceAddOn,
)
from schema.usage.types import UsageCreditPolicy, UsageMonth, usage_by_month

WorkspaceStatus = strawberry.enum(enums.WorkspaceStatus)


PartnerStatus = strawberry.enum(enums.PartnerStatus)


Permission = strawberry.enum(enums.Permission)


ViewerKind = strawberry.enum(enums.ViewerKind)


CredentialKind = strawberry.enum(enums.CredentialKind)


@strawberry.type
class Project(Node):
    db_id: strawberry.Private[int]
    workspace_db_id: strawberry.Private[int]
    name: str
    is_default: bool
    created_at: datetime

    @classmethod
    def of(cls, row: tenancy_models.Project) -> Project:
        return cls(
            id=strawberry.ID(to_global_id("Project", row.id)),
            db_id=row.id,
            workspace_db_id=row.workspace_id,
            name=row.name,
            is_default=row.is_default,
            created_at=row.created_at,
        )

    @strawberry.field(description="The project's credit, per unit (assigned by its partner).")
    async def wallets(self) -> list[Wallet]:
        rows = await wallet_models.Wallet.filter(project_id=self.db_id).order_by("unit")
        return [Wallet.of(w) for w in rows]

    @strawberry.field(description="Delivered WhatsApp messages per month (YYYY-MM, UTC) and category.")
    async def usage_by_month(
        self, info: Info[Context, None], since: str | None = None, until: str | None = None
    ) -> list[UsageMonth]:
        return await usage_by_month(info, self.db_id, since, until)


@strawberry.type(description="A partner's client.")
class Workspace(Node):
    db_id: strawberry.Private[int]
    partner_db_id: strawberry.Private[int]
    name: str
    owner_email: str
    status: WorkspaceStatus
    auto_renew: bool
    created_at: datetime

    @classmethod
    def of(cls, row: tenancy_models.Workspace) -> Workspace:
        return cls(
            id=strawberry.ID(to_global_id("Workspace", row.id)),
            db_id=row.id,
            partner_db_id=row.partner_id,
            name=row.name,
            owner_email=row.owner_email,
            status=row.status,
            auto_renew=row.auto_renew,
            created_at=row.created_at,
            status_reasons=[StatusReason.of(r) for r in row.status_reasons],
        )

    @strawberry.field
    async def partner(self, info: Info[Context, None]) -> Partner:
        row = await info.context.loaders.partner.load(self.partner_db_id)
        assert row is not None  # a workspace always has its partner
        return Partner.of(row)

    status_reasons: list[StatusReason] = strawberry.field(default_factory=list)

    @strawberry.field(description="The live subscription, if any.")
    def subscription(self, info: Info[Context, None]) -> Subscription | None:
        pending = info.context.loaders.live_subscription.load(self.db_id)
        return now_or_later(pending, lambda row: Subscription.of(row) if row else None)  # type: ignore[no-any-return]

    @strawberry.field(description="Every plan this workspace has had, with dates and what ended it, oldest first.")
    async def plan_history(
        self, first: int | None = None, after: str | None = None
    ) -> Connection[SubscriptionHistoryEntry]:
        return await paginate(
            history_of(workspace_id=self.db_id), first=first, after=after, to_node=SubscriptionHistoryEntry.of
        )

    @strawberry.field(
        description="The add-ons set on this workspace, or bought with points (removed and lapsed ones too), oldest"
        " first."
    )
    async def add_ons(self, first: int | None = None, after: str | None = None) -> Connection[WorkspaceAddOn]:
        held = subscription_models.WorkspaceAddOn.filter(workspace_id=self.db_id).select_related("add_on")
        return await paginate(held, first=first, after=after, to_node=WorkspaceAddOn.of)

    @strawberry.field(description="Effective limits: the plan's plus every add-on's.")
    def limits(self, info: Info[Context, None]) -> list[Limit]:
        loaders = info.context.loaders
        # Both asked for before either is awaited: one batch each for the whole page.
        subscription_of, add_ons_of = (
            loaders.live_subscription.load(self.db_id),
            loaders.add_ons_of_workspace.load(self.db_id),
        )
        settled = ready(subscription_of, add_ons_of)
        if settled is not None:  # a primed page
            subscription, add_ons = settled
            plan_of = loaders.plan.load(subscription.plan_id) if subscription else None
            plan = ready(plan_of) if plan_of is not None else [None]
            if plan is not None:
                return _limits(plan[0], add_ons)
        return self._limits_later(info, subscription_of, add_ons_of)  # type: ignore[return-value]

    async def _limits_later(
        self,
        info: Info[Context, None],
        subscription_of: Awaitable[subscription_models.Subscription | None],
        add_ons_of: Awaitable[list[subscription_models.WorkspaceAddOn]],
    ) -> list[Limit]:
        subscription, add_ons = await subscription_of, await add_ons_of
        plan = await info.context.loaders.plan.load(subscription.plan_id) if subscription else None
        return _limits(plan, add_ons)

    @strawberry.field(description="Current usage of limited metrics, as the platform reported it.")
    async def usage(self, info: Info[Context, None]) -> list[Limit]:
        rows = await info.context.loaders.usage_of_workspace.load(self.db_id)
        return [Limit(name=u.metric, value=u.value) for u in rows]

    @strawberry.field(description="The workspace's projects, oldest first (the default one is made with it).")
    async def projects(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[Project]:
        # One statement for every workspace of a page, then this workspace's page of it.
        rows = await info.context.loaders.projects_of_workspace.load(self.db_id)
        return paginate_loaded(rows, first=first, after=after, to_node=Project.of)

    @strawberry.field
    def wallets(self, info: Info[Context, None]) -> list[Wallet]:
        pending = info.context.loaders.wallets_of_workspace.load(self.db_id)
        return now_or_later(pending, lambda rows: [Wallet.of(w) for w in rows])  # type: ignore[no-any-return]

    @strawberry.field(description="The workspace's payments, newest first.")
    async def payments(self, first: int | None = None, after: str | None = None) -> Connection[Payment]:
        paid_by = payment_models.Payment.filter(partner_id=self.partner_db_id, payer_key=f"WORKSPACE:{self.db_id}")
        return await paginate(paid_by, first=first, after=after, to_node=Payment.of, newest_first=True)

    @strawberry.field(description="Cards kept for off-session charges (the newest one is used).")
    async def saved_payment_methods(self) -> list[SavedPaymentMethod]:
        rows = (
            await saved_methods(f"WORKSPACE:{self.db_id}")
            .filter(partner_id=self.partner_db_id)
            .order_by("-id")
            .prefetch_related("gateway_config")
        )
        return [SavedPaymentMethod.of(r, r.gateway_config.provider) for r in rows]


def _limits(plan: catalog_models.Plan | None, add_ons: list[subscription_models.WorkspaceAddOn]) -> list[Limit]:
    deltas = [(a.add_on.limit_deltas, a.quantity) for a in add_ons]
    return Limit.all_of(combine(plan.limits if plan else {}, deltas))


@strawberry.type(description="An agency or reseller.")
class Partner(Node):
    db_id: strawberry.Private[int]
    name: str
    slug: str
    status: PartnerStatus
    default_currency: str
    created_at: datetime

    @classmethod
    def of(cls, row: tenancy_models.Partner) -> Partner:
        return cls(
            id=strawberry.ID(to_global_id("Partner", row.id)),
            db_id=row.id,
            name=row.name,
            slug=row.slug,
            status=row.status,
            default_currency=row.default_currency,
            created_at=row.created_at,
            domain=row.domain,
            refund_plan_policy=row.refund_plan_policy,
            refund_takes_back_units=row.refund_takes_back_units,
            credit_billing_enabled=row.credit_billing_enabled,
            usage_credit_policy=row.usage_credit_policy,
            coupons_stack=row.coupons_stack,
            level=row.level,
        )

    domain: str | None = None
    refund_plan_policy: RefundPlanPolicy = strawberry.field(
        default=enums.RefundPlanPolicy.KEEP_TO_PERIOD_END,
        description="What a refunded or charged-back plan payment does to the plan.",
    )
    refund_takes_back_units: bool = strawberry.field(
        default=True, description="Whether refunds take back the points (or other units) a payment bought."
    )
    credit_billing_enabled: bool = strawberry.field(
        default=False, description="Clients buy points, and add-ons cost points per period."
    )
    usage_credit_policy: UsageCreditPolicy = strawberry.field(
        default=enums.UsageCreditPolicy.REFUSE, description="When a project's WhatsApp credit runs out."
    )
    coupons_stack: bool = strawberry.field(
        default=False, description="Whether two coupons on one charge add up (otherwise a charge takes one)."
    )
    level: int = strawberry.field(
        default=1, description="How far below the platform it resells: 1 for the platform's own partners."
    )

    @strawberry.field(description="The partners reselling through this one (its sub-partners), oldest first.")
    async def sub_partners(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[Partner]:
        children = tenancy.partners(info.context.require_viewer(), with_descendants=True).filter(parent_id=self.db_id)
        return await paginate(children, first=first, after=after, to_node=Partner.of)

    @strawberry.field(description="Margins over platform plan prices: the bulk one, then per family, then per plan.")
    async def margins(self, info: Info[Context, None]) -> list[PartnerMargin]:
        if info.context.require_viewer().kind == "WORKSPACE":
            return []  # a client sees its prices, not its partner's margins
        return PartnerMargin.all_of(await info.context.loaders.margins_of_partner.load(self.db_id))

    @strawberry.field(description="The partner's own plan with the platform (partner plans), if any.")
    async def plan_subscription(self) -> Subscription | None:
        row = await live_partner_subscription(self.db_id)
        return Subscription.of(row) if row else None

    @strawberry.field(
        description="Every partner plan this partner has had, with dates and what ended it, oldest first."
    )
    async def plan_history(
        self, first: int | None = None, after: str | None = None
    ) -> Connection[SubscriptionHistoryEntry]:
        return await paginate(
            history_of(partner_id=self.db_id), first=first, after=after, to_node=SubscriptionHistoryEntry.of
        )

    @strawberry.field(
        description="How failed renewals of this partner's clients are retried and what they lead to"
        " (setDunningPolicy); null for the partner's clients."
    )
    async def dunning_policy(self, info: Info[Context, None]) -> DunningPolicy | None:
        if info.context.require_viewer().kind == "WORKSPACE":
            return None  # how a partner chases unpaid clients is the partner's business
        row = await info.context.loaders.partner.load(self.db_id)
        assert row is not None  # this partner was loaded to build it
        return DunningPolicy.of(row)

    @strawberry.field(description="The partner's own wallets: its pool of units and its balance with the platform.")
    async def wallets(self, info: Info[Context, None]) -> list[Wallet]:
        if info.context.require_viewer().kind == "WORKSPACE":
            return []  # a client sees its own wallets, not its partner's
        rows = await wallet_models.Wallet.filter(owner_key=f"PARTNER:{self.db_id}").order_by("unit")
        return [Wallet.of(w) for w in rows]

    @strawberry.field(description="Where this partner receives its events, oldest first (needs MANAGE_BILLING).")
    async def webhook_endpoints(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[WebhookEndpoint]:
        endpoints = partner_webhooks.endpoints_of(info.context.require_viewer(), self.db_id)
        return await paginate(endpoints, first=first, after=after, to_node=WebhookEndpoint.of)

    @strawberry.field(description="The methods this partner's clients may pay with at checkout.")
    async def payment_methods(self) -> list[PaymentMethodKind]:
        config = await active_config(self.db_id)
        return [enums.PaymentMethodKind(m) for m in config.methods] if config else [enums.PaymentMethodKind.MANUAL]

    @strawberry.field(description="Gateway configurations, newest first (needs CONFIGURE_GATEWAY).")
    async def gateway_configs(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[GatewayConfig]:
        configs = configs_of(info.context.require_viewer(), self.db_id)
        return await paginate(configs, first=first, after=after, to_node=GatewayConfig.of, newest_first=True)

    @strawberry.field
    async def branding(self, info: Info[Context, None]) -> Branding | None:
        row = await info.context.loaders.branding_of_partner.load(self.db_id)
        return Branding.of(row, self.domain) if row else None

    @strawberry.field(
        description="This partner's workspaces, oldest first; ownerEmail finds one by its owner. A parent reads"
        " those of the partners below it here."
    )
    async def workspaces(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        owner_email: str | None = None,
    ) -> Connection[Workspace]:
        return await workspaces_seen(info, first=first, after=after, owner_email=owner_email, partner_db_id=self.db_id)


@strawberry.type(description="A person on a partner's team.")
class PartnerUser(Node):
    email: str
    name: str
    is_admin: bool
    permissions: list[Permission]
    is_active: bool
    has_password: bool
    created_at: datetime

    @classmethod
    def of(cls, row: tenancy_models.PartnerUser) -> PartnerUser:
        return cls(
            id=strawberry.ID(to_global_id("PartnerUser", row.id)),
            email=row.email,
            name=row.name,
            is_admin=row.is_admin,
            permissions=[enums.Permission(p) for p in row.permissions],
            is_active=row.is_active,
            has_password=row.password_hash is not None,
            created_at=row.created_at,
        )


@strawberry.type(description="A client's login to the partner's branded portal.")
class WorkspaceUser(Node):
    email: str
    name: str
    is_active: bool
    has_password: bool
    created_at: datetime

    @classmethod
    def of(cls, row: tenancy_models.WorkspaceUser) -> WorkspaceUser:
        return cls(
            id=strawberry.ID(to_global_id("WorkspaceUser", row.id)),
            email=row.email,
            name=row.name,
            is_active=row.is_active,
            has_password=row.password_hash is not None,
            created_at=row.created_at,
        )


@strawberry.type(description="A machine client's key. The secret is shown only when it is created.")
class ApiKey(Node):
    name: str
    prefix: str
    permissions: list[Permission]
    is_platform: bool
    last_used_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: tenancy_models.ApiKey) -> ApiKey:
        return cls(
            id=strawberry.ID(to_global_id("ApiKey", row.id)),
            name=row.name,
            prefix=row.prefix,
            permissions=[enums.Permission(p) for p in row.permissions],
            is_platform=row.is_platform,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
            created_at=row.created_at,
        )


@strawberry.type(description="How a partner's white-label portal looks.")
class Branding:
    display_name: str
    logo_url: str | None
    logo_dark_url: str | None
    favicon_url: str | None
    primary_color: str | None
    secondary_color: str | None
    support_email: str | None
    custom_domain: str | None
    allowed_origins: list[str] | None = strawberry.field(
        description="Browser origins, besides the custom domain, whose pages may call the API for this partner"
        " (null in the public branding(domain:))."
    )

    @classmethod
    def of(cls, row: tenancy_models.Branding, domain: str | None, *, public: bool = False) -> Branding:
        return cls(
            display_name=row.display_name,
            logo_url=row.logo_url,
            logo_dark_url=row.logo_dark_url,
            favicon_url=row.favicon_url,
            primary_color=row.primary_color,
            secondary_color=row.secondary_color,
            support_email=row.support_email,
            custom_domain=domain,
            allowed_origins=None if public else list(row.allowed_origins or ()),
        )


@strawberry.type(description="What a white-label login page shows; public.")
class PublicBranding:
    partner_id: strawberry.ID
    branding: Branding

    @classmethod
    def of(cls, partner: tenancy_models.Partner, row: tenancy_models.Branding) -> PublicBranding:
        return cls(
            partner_id=strawberry.ID(to_global_id("Partner", partner.id)),
            branding=Branding.of(row, partner.domain, public=True),
        )


_AS_SHOWN = (
    'Values as the API shows them: money as Money ({"amount": "49.90", "currency": "BRL"}), a wallet\'s'
    ' balance or movement as a Quantity ({"amount": "150", "unit": "POINTS"}), rows by their global ids.'
    " Entries written before 0.2.0 hold minor units and database ids."
)


@strawberry.type(description="One manual or privileged action: who, when, what before and after.")
class AuditEntry(Node):
    actor: str
    action: str = strawberry.field(description='What was done, e.g. "api_key.create", "margin.remove".')
    target: strawberry.ID = strawberry.field(description="The global id of what the action changed.")
    before: strawberry.scalars.JSON | None = strawberry.field(description=_AS_SHOWN)
    after: strawberry.scalars.JSON | None = strawberry.field(description=_AS_SHOWN)
    request_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: operations_models.AuditLog) -> AuditEntry:
        return cls(
            id=strawberry.ID(to_global_id("AuditEntry", row.id)),
            actor=row.actor,
            action=row.action,
            target=strawberry.ID(to_global_id(row.target_type, row.target_id)),
            before=row.before,
            after=row.after,
            request_id=row.request_id,
            created_at=row.created_at,
        )


@strawberry.type(description="Who is calling and what they may do.")
class Viewer:
    kind: ViewerKind
    permissions: list[Permission]
    via: CredentialKind = strawberry.field(description="What the caller authenticated with.")
    partner_db_id: strawberry.Private[int | None]
    workspace_db_id: strawberry.Private[int | None]
    email: str | None = strawberry.field(description="The signed-in person's e-mail; null for an API key.")

    @classmethod
    def of(cls, viewer: tenancy.Viewer, *, via: enums.CredentialKind, email: str | None = None) -> Viewer:
        return cls(
            kind=viewer.kind,
            permissions=sorted(viewer.permissions),
            via=via,
            partner_db_id=viewer.partner_id,
            workspace_db_id=viewer.workspace_id,
            email=email,
        )

    @strawberry.field
    async def partner(self, info: Info[Context, None]) -> Partner | None:
        if self.partner_db_id is None:
            return None
        row = await info.context.loaders.partner.load(self.partner_db_id)
        return Partner.of(row) if row else None

    @strawberry.field
    async def workspace(self, info: Info[Context, None]) -> Workspace | None:
        if self.workspace_db_id is None:
            return None
        row = await tenancy_models.Workspace.get_or_none(id=self.workspace_db_id)
        return Workspace.of(row) if row else None


async def workspaces_seen(
    info: Info[Context, None],
    first: int | None = None,
    after: str | None = None,
    owner_email: str | None = None,
    partner_db_id: int | None = None,
) -> Connection[Workspace]:
    """Workspaces the caller can see, oldest first; by owner e-mail. A partner's own, or with ``partner_db_id``
    (``Partner.workspaces``) that partner's: the caller's or one reselling below it."""
    viewer = info.context.require_viewer()
    if partner_db_id is None and owner_email is None:  # the dashboard's page: plain rows
        scope = tenancy.workspace_visible_sql(viewer, "r", 1)
        page = await paginate_plain(tenancy_models.Workspace, scope, first=first, after=after, to_node=Workspace.of)
    else:
        if partner_db_id is None:
            queryset = tenancy.workspaces(viewer)
        else:
            queryset = tenancy.workspaces(viewer, with_descendants=True).filter(partner_id=partner_db_id)
        if owner_email is not None:
            queryset = queryset.filter(owner_email=check_text(owner_email, "ownerEmail", max_length=254).lower())
        page = await paginate(queryset, first=first, after=after, to_node=Workspace.of)
    # What the page's workspaces are asked for, loaded now: their fields then resolve at once.
    if page.edges:
        asked = page_asks(info.selected_fields)
        subscribed = await info.context.loaders.prime_workspaces([edge.node.db_id for edge in page.edges], asked)
        if subscribed and "plan.price" in asked:
            await info.context.loaders.prime_margins(viewer.partner_id)
    return page
