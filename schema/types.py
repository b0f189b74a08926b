"""GraphQL object types. Leaf fields are plain attributes copied from rows; only fields that need
I/O are async, and those go through the request's DataLoaders."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Generic, TypeVar

import strawberry
import strawberry.scalars
from strawberry.types import Info

from billing.catalog.plans import price_with
from billing.core.money import format_minor
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
from schema.context import Context
from schema.ids import encode_cursor, to_global_id

if TYPE_CHECKING:
    from resolvers.usage import UsageMonth

WorkspaceStatus = strawberry.enum(enums.WorkspaceStatus)
PartnerStatus = strawberry.enum(enums.PartnerStatus)
Permission = strawberry.enum(enums.Permission)
LedgerCause = strawberry.enum(enums.LedgerCause)
OwnerKind = strawberry.enum(enums.OwnerKind)
PaymentStatus = strawberry.enum(enums.PaymentStatus)
PaymentMethodKind = strawberry.enum(enums.PaymentMethodKind, name="PaymentMethod")


@strawberry.interface(description="An object with a global id, fetchable with node(id:).")
class Node:
    id: strawberry.ID


@strawberry.type(description="An exact amount of money: a decimal string and its ISO 4217 currency.")
class Money:
    amount: str
    currency: str

    @classmethod
    def of(cls, minor: int, currency: str) -> Money:
        return cls(amount=format_minor(minor, currency), currency=currency)


@strawberry.type(description="An exact quantity of a wallet unit (POINTS, MESSAGE_CREDITS, ... or a currency).")
class Quantity:
    amount: str
    unit: str

    @classmethod
    def of(cls, value: int, unit: str) -> Quantity:
        return cls(amount=format_minor(value, unit), unit=unit)


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


N = TypeVar("N")


@strawberry.type
class Edge(Generic[N]):
    cursor: str
    node: N


@strawberry.type
class Connection(Generic[N]):
    edges: list[Edge[N]]
    page_info: PageInfo

    @strawberry.field
    def nodes(self) -> list[N]:
        return [edge.node for edge in self.edges]


def connection_of(nodes: list[N], db_ids: list[int], *, has_next: bool, has_previous: bool) -> Connection[N]:
    edges = [Edge(cursor=encode_cursor(i), node=n) for n, i in zip(nodes, db_ids, strict=True)]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_next,
            has_previous_page=has_previous,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )


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
    async def wallets(self) -> list[Annotated[Wallet, strawberry.lazy("schema.types")]]:
        rows = await wallet_models.Wallet.filter(project_id=self.db_id).order_by("unit")
        return [Wallet.of(w) for w in rows]

    @strawberry.field(description="Delivered WhatsApp messages per month (YYYY-MM, UTC) and category.")
    async def usage_by_month(
        self, info: Info[Context, None], since: str | None = None, until: str | None = None
    ) -> list[Annotated[UsageMonth, strawberry.lazy("resolvers.usage")]]:
        from resolvers.usage import usage_by_month

        return await usage_by_month(info, self.db_id, since, until)


@strawberry.type
class Wallet(Node):
    db_id: strawberry.Private[int]
    owner_kind: OwnerKind
    unit: str
    balance: Quantity
    credit_limit: Quantity
    updated_at: datetime

    @classmethod
    def of(cls, row: wallet_models.Wallet) -> Wallet:
        return cls(
            id=strawberry.ID(to_global_id("Wallet", row.id)),
            db_id=row.id,
            owner_kind=row.owner_kind,
            unit=row.unit,
            balance=Quantity.of(row.balance, row.unit),
            credit_limit=Quantity.of(row.credit_limit, row.unit),
            updated_at=row.updated_at,
            low_balance_threshold=(
                Quantity.of(row.low_balance_threshold, row.unit) if row.low_balance_threshold is not None else None
            ),
        )

    low_balance_threshold: Quantity | None = strawberry.field(
        default=None, description="Below this, a wallet.low_balance notice is sent (once per crossing)."
    )

    @strawberry.field(description="Ledger entries of this wallet, oldest first; filter by cause and time.")
    async def entries(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        cause: LedgerCause | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Connection[LedgerEntry]:
        from resolvers.wallets import wallet_entries

        return await wallet_entries(info, self.db_id, first=first, after=after, cause=cause, since=since, until=until)

    @strawberry.field(description="Credits that will expire, earliest first (spent before the rest).")
    async def expiring_credits(self) -> list[ExpiringCredit]:
        lots = (
            await wallet_models.CreditLot.filter(wallet_id=self.db_id, expired_at=None, remaining__gt=0)
            .order_by("expires_at", "id")
            .limit(100)
        )
        return [
            ExpiringCredit(
                amount=Quantity.of(lot.amount, self.unit),
                remaining=Quantity.of(lot.remaining, self.unit),
                expires_at=lot.expires_at,
            )
            for lot in lots
        ]

    @strawberry.field(description="Buy a package when the balance falls below a threshold (null: not set up).")
    async def auto_top_up(self) -> AutoTopUp | None:
        rule = await wallet_models.AutoTopUp.get_or_none(wallet_id=self.db_id).prefetch_related("package")
        return AutoTopUp.of(rule) if rule else None


@strawberry.type(description="Credit granted or bought with an expiry, and what is left of it.")
class ExpiringCredit:
    amount: Quantity
    remaining: Quantity
    expires_at: datetime | None


@strawberry.type(description="A wallet's automatic top-up: one in flight at a time, backing off after a decline.")
class AutoTopUp:
    package: Annotated[CreditPackage, strawberry.lazy("schema.types")]
    threshold: Quantity
    enabled: bool
    in_flight: bool
    failures: int
    retry_after: datetime | None

    @classmethod
    def of(cls, row: wallet_models.AutoTopUp) -> AutoTopUp:
        return cls(
            package=CreditPackage.of(row.package),
            threshold=Quantity.of(row.threshold, row.package.unit),
            enabled=row.enabled,
            in_flight=row.in_flight_payment_id is not None,
            failures=row.failures,
            retry_after=row.retry_after,
        )


@strawberry.type(description="One immutable movement on a wallet; amount is signed (debits are negative).")
class LedgerEntry(Node):
    amount: Quantity
    balance_after: Quantity
    cause: LedgerCause
    note: str
    actor: str | None
    caused_by_type: str | None
    caused_by_id: str | None
    counter_account: str | None
    posting_id: str
    created_at: datetime

    @classmethod
    def of(cls, row: wallet_models.LedgerEntry) -> LedgerEntry:
        posting = row.posting
        return cls(
            id=strawberry.ID(to_global_id("LedgerEntry", row.id)),
            amount=Quantity.of(row.amount, row.unit),
            balance_after=Quantity.of(row.balance_after, row.unit),
            cause=row.cause,
            note=posting.note,
            actor=posting.actor,
            caused_by_type=posting.caused_by_type,
            caused_by_id=posting.caused_by_id,
            counter_account=row.counter_account,
            posting_id=str(row.posting_id),
            created_at=row.created_at,
        )


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
            status_reasons=[
                StatusReason(
                    kind=r.get("kind", ""),
                    limit=r.get("limit"),
                    usage=r.get("usage"),
                    max=r.get("max"),
                    failures=r.get("failures"),
                )
                for r in row.status_reasons
            ],
        )

    @strawberry.field
    async def partner(self, info: Info[Context, None]) -> Annotated[Partner, strawberry.lazy("schema.types")]:
        row = await info.context.loaders.partner.load(self.partner_db_id)
        assert row is not None  # a workspace always has its partner
        return Partner.of(row)

    status_reasons: list[StatusReason] = strawberry.field(default_factory=list)

    @strawberry.field(description="The live subscription, if any.")
    async def subscription(
        self, info: Info[Context, None]
    ) -> Annotated[Subscription, strawberry.lazy("schema.types")] | None:
        row = await info.context.loaders.live_subscription.load(self.db_id)
        return Subscription.of(row) if row else None

    @strawberry.field(description="Every plan this workspace has had, with status and dates, oldest first.")
    async def plan_history(self) -> list[Annotated[SubscriptionHistoryEntry, strawberry.lazy("schema.types")]]:
        return await SubscriptionHistoryEntry.all_of(await history_of(workspace_id=self.db_id))

    @strawberry.field(description="Effective limits: the plan's plus every add-on's.")
    async def limits(self, info: Info[Context, None]) -> list[Limit]:
        loaders = info.context.loaders
        # Both asked for before either is awaited: one batch each for the whole page.
        subscription_of, add_ons_of = (
            loaders.live_subscription.load(self.db_id),
            loaders.add_ons_of_workspace.load(self.db_id),
        )
        subscription, add_ons = await subscription_of, await add_ons_of
        plan = await loaders.plan.load(subscription.plan_id) if subscription else None
        deltas = [(a.add_on.limit_deltas, a.quantity) for a in add_ons]
        return Limit.all_of(combine(plan.limits if plan else {}, deltas))

    @strawberry.field(description="Current usage of limited metrics, as the platform reported it.")
    async def usage(self, info: Info[Context, None]) -> list[Limit]:
        rows = await info.context.loaders.usage_of_workspace.load(self.db_id)
        return [Limit(name=u.metric, value=u.value) for u in rows]

    @strawberry.field
    async def projects(self, info: Info[Context, None]) -> list[Project]:
        return [Project.of(p) for p in await info.context.loaders.projects_of_workspace.load(self.db_id)]

    @strawberry.field
    async def wallets(self, info: Info[Context, None]) -> list[Wallet]:
        return [Wallet.of(w) for w in await info.context.loaders.wallets_of_workspace.load(self.db_id)]

    @strawberry.field(description="The workspace's payments, newest first (at most 100).")
    async def payments(self) -> list[Annotated[Payment, strawberry.lazy("schema.types")]]:
        rows = (
            await payment_models.Payment.filter(partner_id=self.partner_db_id, payer_key=f"WORKSPACE:{self.db_id}")
            .order_by("-id")
            .limit(100)
        )
        return [Payment.of(r) for r in rows]

    @strawberry.field(description="Cards kept for off-session charges (the newest one is used).")
    async def saved_payment_methods(self) -> list[Annotated[SavedPaymentMethod, strawberry.lazy("schema.types")]]:
        rows = (
            await payment_models.SavedPaymentMethod.filter(
                partner_id=self.partner_db_id, payer_key=f"WORKSPACE:{self.db_id}", replaced_at=None
            )
            .order_by("-id")
            .prefetch_related("gateway_config")
        )
        return [SavedPaymentMethod.of(r, r.gateway_config.provider) for r in rows]


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
    usage_credit_policy: str = strawberry.field(
        default="REFUSE",
        description="When a project's WhatsApp credit runs out: REFUSE, or ALLOW_TO_CREDIT_LIMIT.",
    )

    @strawberry.field(description="The partner's own plan with the platform (partner plans), if any.")
    async def plan_subscription(self) -> Annotated[Subscription, strawberry.lazy("schema.types")] | None:
        row = await live_partner_subscription(self.db_id)
        return Subscription.of(row) if row else None

    @strawberry.field(description="Every partner plan this partner has had, with status and dates, oldest first.")
    async def plan_history(self) -> list[Annotated[SubscriptionHistoryEntry, strawberry.lazy("schema.types")]]:
        return await SubscriptionHistoryEntry.all_of(await history_of(partner_id=self.db_id))

    @strawberry.field(description="The partner's own wallets: its pool of units and its balance with the platform.")
    async def wallets(self, info: Info[Context, None]) -> list[Wallet]:
        if info.context.require_viewer().kind == "WORKSPACE":
            return []  # a client sees its own wallets, not its partner's
        rows = await wallet_models.Wallet.filter(owner_key=f"PARTNER:{self.db_id}").order_by("unit")
        return [Wallet.of(w) for w in rows]

    @strawberry.field(description="Where this partner receives its events (needs MANAGE_BILLING).")
    async def webhook_endpoints(
        self, info: Info[Context, None]
    ) -> list[Annotated[WebhookEndpoint, strawberry.lazy("schema.types")]]:
        viewer = info.context.require_viewer()
        if viewer.kind == "WORKSPACE" or enums.Permission.MANAGE_BILLING not in viewer.permissions:
            return []
        rows = await operations_models.WebhookEndpoint.filter(partner_id=self.db_id).order_by("id")
        return [WebhookEndpoint.of(row) for row in rows]

    @strawberry.field(description="The methods this partner's clients may pay with at checkout.")
    async def payment_methods(self) -> list[PaymentMethodKind]:
        from billing.charges.gateway_configs import active_config

        config = await active_config(self.db_id)
        return [enums.PaymentMethodKind(m) for m in config.methods] if config else [enums.PaymentMethodKind.MANUAL]

    @strawberry.field(description="Gateway configurations, newest first (needs CONFIGURE_GATEWAY).")
    async def gateway_configs(
        self, info: Info[Context, None]
    ) -> list[Annotated[GatewayConfig, strawberry.lazy("schema.types")]]:
        from billing.charges.gateway_configs import configs_of

        viewer = info.context.require_viewer()
        if viewer.kind == "WORKSPACE":
            return []
        viewer.require(enums.Permission.CONFIGURE_GATEWAY)
        return [GatewayConfig.of(row) for row in await configs_of(self.db_id)]

    @strawberry.field
    async def branding(self, info: Info[Context, None]) -> Branding | None:
        row = await info.context.loaders.branding_of_partner.load(self.db_id)
        return Branding.of(row, self.domain) if row else None

    @strawberry.field(description="This partner's workspaces, oldest first; ownerEmail finds one by its owner.")
    async def workspaces(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        owner_email: str | None = None,
    ) -> Connection[Workspace]:
        from resolvers.workspaces import list_workspaces

        return await list_workspaces(info, first=first, after=after, owner_email=owner_email, partner_db_id=self.db_id)


@strawberry.type(description="An attempt to collect money.")
class Payment(Node):
    amount: Money
    status: PaymentStatus
    method: PaymentMethodKind
    provider: str
    provider_reference: str | None
    purpose: str
    note: str
    created_at: datetime
    refunded: Money | None = None
    decline_reason: str | None = None
    payer_action: strawberry.scalars.JSON | None = strawberry.field(
        default=None, description="What the payer needs to pay a pending payment: a link or instructions."
    )

    @classmethod
    def of(cls, row: payment_models.Payment) -> Payment:
        return cls(
            id=strawberry.ID(to_global_id("Payment", row.id)),
            amount=Money.of(row.amount, row.currency),
            status=row.status,
            method=row.method,
            provider=row.provider,
            provider_reference=row.provider_ref,
            purpose=row.purpose_kind,
            note=row.note,
            created_at=row.created_at,
            payer_action=row.payer_action,
            refunded=Money.of(row.refunded_amount, row.currency) if row.refunded_amount else None,
            decline_reason=row.decline_reason,
        )


GatewayMode = strawberry.enum(enums.GatewayMode)
RefundPlanPolicy = strawberry.enum(enums.RefundPlanPolicy)


@strawberry.type(description="A payment provider configuration. Credentials are write-only: only a hint shows.")
class GatewayConfig(Node):
    provider: str
    mode: GatewayMode
    methods: list[PaymentMethodKind]
    is_active: bool = strawberry.field(description="New checkouts go here; inactive ones still settle their payments.")
    credentials_hint: str | None = strawberry.field(description="The last characters of the API key, e.g. …f00d.")
    webhook_url: str = strawberry.field(description="Where the provider must send its events for this configuration.")
    created_at: datetime

    @classmethod
    def of(cls, row: payment_models.GatewayConfig) -> GatewayConfig:
        from billing.charges.gateway_configs import webhook_url

        return cls(
            id=strawberry.ID(to_global_id("GatewayConfig", row.id)),
            provider=row.provider,
            mode=row.mode,
            methods=[enums.PaymentMethodKind(m) for m in row.methods],
            is_active=row.is_active,
            credentials_hint=row.credentials_hint,
            webhook_url=webhook_url(row),
            created_at=row.created_at,
        )


DeliveryState = strawberry.enum(enums.WorkState, name="DeliveryState")


@strawberry.type(
    description="One event sent (or to be sent) to one endpoint; retried with back-off until DONE or DEAD."
)
class WebhookDelivery(Node):
    event_id: str = strawberry.field(description="Stable across retries: receivers dedupe on it.")
    event_type: str
    state: DeliveryState
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: operations_models.WebhookDelivery) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(to_global_id("WebhookDelivery", row.id)),
            event_id=f"evt_{row.event_id}",
            event_type=row.event_type,
            state=row.state,
            attempts=row.attempts,
            last_status=row.last_status,
            last_error=row.last_error,
            next_attempt_at=row.run_at if row.state is enums.WorkState.PENDING else None,
            created_at=row.created_at,
        )


@strawberry.type(description="Where a partner receives its events, signed with HMAC-SHA256 (see the README).")
class WebhookEndpoint(Node):
    db_id: strawberry.Private[int]
    url: str
    events: list[str] = strawberry.field(description="Event types sent here; empty: all.")
    enabled: bool
    max_attempts: int
    secret_hint: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: operations_models.WebhookEndpoint) -> WebhookEndpoint:
        return cls(
            id=strawberry.ID(to_global_id("WebhookEndpoint", row.id)),
            db_id=row.id,
            url=row.url,
            events=list(row.events),
            enabled=row.enabled,
            max_attempts=row.max_attempts,
            secret_hint=row.secret_hint,
            created_at=row.created_at,
        )

    @strawberry.field(description="Deliveries to this endpoint, oldest first.")
    async def deliveries(
        self, first: int | None = None, after: str | None = None, state: DeliveryState | None = None
    ) -> Connection[WebhookDelivery]:
        from resolvers.pagination import paginate

        queryset = operations_models.WebhookDelivery.filter(endpoint_id=self.db_id)
        if state is not None:
            queryset = queryset.filter(state=state)
        return await paginate(queryset, first=first, after=after, to_node=WebhookDelivery.of)


@strawberry.type(description="A card kept at the provider for off-session charges: never its number, only a hint.")
class SavedPaymentMethod(Node):
    kind: PaymentMethodKind
    provider: str
    brand: str | None
    last4: str | None
    is_default: bool
    created_at: datetime

    @classmethod
    def of(cls, row: payment_models.SavedPaymentMethod, provider: str) -> SavedPaymentMethod:
        return cls(
            id=strawberry.ID(to_global_id("SavedPaymentMethod", row.id)),
            kind=row.kind,
            provider=provider,
            brand=row.brand,
            last4=row.last4,
            is_default=row.is_default,
            created_at=row.created_at,
        )


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

    @classmethod
    def of(cls, row: tenancy_models.Branding, domain: str | None) -> Branding:
        return cls(
            display_name=row.display_name,
            logo_url=row.logo_url,
            logo_dark_url=row.logo_dark_url,
            favicon_url=row.favicon_url,
            primary_color=row.primary_color,
            secondary_color=row.secondary_color,
            support_email=row.support_email,
            custom_domain=domain,
        )


@strawberry.type(description="One manual or privileged action: who, when, what before and after.")
class AuditEntry(Node):
    actor: str
    action: str
    target_type: str
    target_id: str
    before: strawberry.scalars.JSON | None
    after: strawberry.scalars.JSON | None
    request_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: operations_models.AuditLog) -> AuditEntry:
        return cls(
            id=strawberry.ID(to_global_id("AuditEntry", row.id)),
            actor=row.actor,
            action=row.action,
            target_type=row.target_type,
            target_id=row.target_id,
            before=row.before,
            after=row.after,
            request_id=row.request_id,
            created_at=row.created_at,
        )


@strawberry.type(description="Who is calling and what they may do.")
class Viewer:
    kind: str = strawberry.field(description="PLATFORM, PARTNER or WORKSPACE.")
    permissions: list[Permission]
    via: str = strawberry.field(description="API_KEY or SESSION.")
    partner_db_id: strawberry.Private[int | None]
    workspace_db_id: strawberry.Private[int | None]
    email: str | None = strawberry.field(description="The signed-in person's e-mail; null for an API key.")

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


PlanStatus = strawberry.enum(enums.PlanStatus)
BillingInterval = strawberry.enum(enums.BillingInterval)
MarginKind = strawberry.enum(enums.MarginKind)
SubscriptionStatus = strawberry.enum(enums.SubscriptionStatus)
PeriodStatus = strawberry.enum(enums.PeriodStatus)


@strawberry.type(description="One limit: a name (members, chatbots...) and its value.")
class Limit:
    name: str
    value: int

    @classmethod
    def all_of(cls, limits: dict[str, int]) -> list[Limit]:
        return [cls(name=k, value=v) for k, v in sorted(limits.items())]


@strawberry.type(description="Usage above a limit: members 7 > 5.")
class LimitExcess:
    limit: str
    usage: int
    max: int


@strawberry.type(description="Why a workspace has its status; every reason that applies is listed.")
class StatusReason:
    kind: str = strawberry.field(description="NO_PLAN, PAYMENT_OVERDUE or LIMIT_EXCEEDED.")
    limit: str | None = None
    usage: int | None = None
    max: int | None = None
    failures: int | None = strawberry.field(default=None, description="Failed renewal attempts (PAYMENT_OVERDUE).")


@strawberry.type
class PlanFamily(Node):
    name: str
    description: str

    @classmethod
    def of(cls, row: catalog_models.PlanFamily) -> PlanFamily:
        return cls(id=strawberry.ID(to_global_id("PlanFamily", row.id)), name=row.name, description=row.description)


@strawberry.type(description="A plan: the platform's (sold by partners with their margin) or a partner's own.")
class Plan(Node):
    name: str
    interval: BillingInterval
    platform_price: Money = strawberry.field(
        description="The plan's own price (the platform price for platform plans)."
    )
    limits: list[Limit]
    status: PlanStatus
    is_platform_plan: bool
    validity_periods: int | None
    max_renewals: int | None
    grace_days: int
    trial_days: int
    trial_requires_payment_method: bool
    family_id: strawberry.ID | None
    included_units: list[Limit] = strawberry.field(description="Units granted each paid period (MESSAGE_CREDITS...).")
    row: strawberry.Private[catalog_models.Plan]

    @strawberry.field(description="What the caller's clients pay each period: the platform price plus its margin.")
    async def price(self, info: Info[Context, None]) -> Money:
        viewer = info.context.viewer
        partner_id = viewer.partner_id if viewer else None
        margins = await info.context.loaders.margins_of_partner.load(partner_id) if partner_id is not None else []
        price = price_with(margins, partner_id, self.row)
        return Money.of(price.amount, price.currency)

    @classmethod
    def of(cls, row: catalog_models.Plan) -> Plan:
        return cls(
            row=row,
            id=strawberry.ID(to_global_id("Plan", row.id)),
            name=row.name,
            interval=row.interval,
            platform_price=Money.of(row.price_amount, row.currency),
            limits=Limit.all_of(row.limits),
            status=row.status,
            is_platform_plan=row.partner_id is None,
            validity_periods=row.validity_periods,
            max_renewals=row.max_renewals,
            grace_days=row.grace_days,
            trial_days=row.trial_days,
            trial_requires_payment_method=row.trial_requires_payment_method,
            family_id=strawberry.ID(to_global_id("PlanFamily", row.family_id)) if row.family_id else None,
            included_units=Limit.all_of(row.included_units),
        )


@strawberry.type(description="A priced extension of limits.")
class AddOn(Node):
    name: str
    limit_deltas: list[Limit]
    price: Money
    points_cost: str | None

    @classmethod
    def of(cls, row: catalog_models.AddOn) -> AddOn:
        return cls(
            id=strawberry.ID(to_global_id("AddOn", row.id)),
            name=row.name,
            limit_deltas=Limit.all_of(row.limit_deltas),
            price=Money.of(row.price_amount, row.currency),
            points_cost=str(row.points_cost) if row.points_cost is not None else None,
        )


@strawberry.type(description="A package of units (points, credits...) sold for a price.")
class CreditPackage(Node):
    name: str
    unit: str
    quantity: str = strawberry.field(description="Units, as a decimal string (64-bit).")
    price: Money

    @classmethod
    def of(cls, row: catalog_models.CreditPackage) -> CreditPackage:
        return cls(
            id=strawberry.ID(to_global_id("CreditPackage", row.id)),
            name=row.name,
            unit=row.unit,
            quantity=str(row.quantity),
            price=Money.of(row.price_amount, row.currency),
        )


@strawberry.type(description="A plan a subscriber had, with the dates it was active.")
class SubscriptionHistoryEntry:
    plan_id: strawberry.ID
    plan_name: str
    status: SubscriptionStatus
    started_at: datetime
    ended_at: datetime | None
    note: str

    @classmethod
    async def all_of(cls, rows: list[subscription_models.SubscriptionHistory]) -> list[SubscriptionHistoryEntry]:
        plans = {p.id: p for p in await catalog_models.Plan.filter(id__in=list({r.plan_id for r in rows}))}
        return [
            cls(
                plan_id=strawberry.ID(to_global_id("Plan", r.plan_id)),
                plan_name=plans[r.plan_id].name,
                status=r.status,
                started_at=r.started_at,
                ended_at=r.ended_at,
                note=r.note,
            )
            for r in rows
        ]


@strawberry.type(description="One billed period of a subscription.")
class SubscriptionPeriod:
    number: int
    starts_at: datetime
    ends_at: datetime
    amount: Money
    status: PeriodStatus
    paid_at: datetime | None
    payment_id: strawberry.ID | None


@strawberry.type(description="A workspace's (or, for partner plans, a partner's) plan over time.")
class Subscription(Node):
    db_id: strawberry.Private[int]
    status: SubscriptionStatus
    price: Money
    current_period_start: datetime
    current_period_end: datetime
    plan_id: strawberry.ID
    plan_db_id: strawberry.Private[int]
    payment_mode: str = strawberry.field(description="MANUAL or PARTNER_BALANCE.")
    trial_end: datetime | None
    cancel_at_period_end: bool
    renewals: int
    failed_renewals: int
    next_retry_at: datetime | None
    ended_at: datetime | None
    scheduled_plan_id: strawberry.ID | None = strawberry.field(
        description="A change (a downgrade) that takes effect at the end of the current period."
    )

    @classmethod
    def of(cls, row: subscription_models.Subscription) -> Subscription:
        return cls(
            id=strawberry.ID(to_global_id("Subscription", row.id)),
            db_id=row.id,
            status=row.status,
            price=Money.of(row.price_amount, row.currency),
            current_period_start=row.current_period_start,
            current_period_end=row.current_period_end,
            plan_id=strawberry.ID(to_global_id("Plan", row.plan_id)),
            plan_db_id=row.plan_id,
            payment_mode=row.payment_mode,
            trial_end=row.trial_end,
            cancel_at_period_end=row.cancel_at_period_end,
            renewals=row.renewals,
            failed_renewals=row.failed_renewals,
            next_retry_at=row.next_retry_at,
            ended_at=row.ended_at,
            scheduled_plan_id=(
                strawberry.ID(to_global_id("Plan", row.scheduled_plan_id)) if row.scheduled_plan_id else None
            ),
        )

    @strawberry.field(description="Billed periods, newest first (at most 100).")
    async def periods(self) -> list[SubscriptionPeriod]:
        rows = await subscription_models.SubscriptionPeriod.filter(subscription_id=self.db_id).order_by("-number")
        return [
            SubscriptionPeriod(
                number=r.number,
                starts_at=r.starts_at,
                ends_at=r.ends_at,
                amount=Money.of(r.amount, r.currency),
                status=r.status,
                paid_at=r.paid_at,
                payment_id=strawberry.ID(to_global_id("Payment", r.payment_id)) if r.payment_id else None,
            )
            for r in rows[:100]
        ]

    @strawberry.field
    async def plan(self, info: Info[Context, None]) -> Plan:
        row = await info.context.loaders.plan.load(self.plan_db_id)
        assert row is not None  # a subscription's plan is never deleted (RESTRICT)
        return Plan.of(row)

    @strawberry.field(description="Every plan this subscription has had, oldest first.")
    async def history(self) -> list[SubscriptionHistoryEntry]:
        rows = await subscription_models.SubscriptionHistory.filter(subscription_id=self.db_id).order_by("id")
        return await SubscriptionHistoryEntry.all_of(rows)
