"""Enumerations shared by models, the domain layer and the GraphQL schema."""

from enum import StrEnum


class OwnerKind(StrEnum):
    PLATFORM = "PLATFORM"
    PARTNER = "PARTNER"
    WORKSPACE = "WORKSPACE"
    PROJECT = "PROJECT"


class ViewerKind(StrEnum):
    """Who a caller is: the platform operator, a partner (agency), or a partner's client."""

    PLATFORM = "PLATFORM"
    PARTNER = "PARTNER"
    WORKSPACE = "WORKSPACE"


class CredentialKind(StrEnum):
    """What a caller authenticated with."""

    API_KEY = "API_KEY"
    SESSION = "SESSION"  # a person's login


class PartnerStatus(StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    CLOSED = "CLOSED"


class WorkspaceStatus(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    RESTRICTED = "RESTRICTED"
    SUSPENDED = "SUSPENDED"


class Permission(StrEnum):
    """The fixed set of named permissions a key or a user can hold."""

    MANAGE_PARTNERS = "MANAGE_PARTNERS"  # platform only
    MANAGE_CATALOG = "MANAGE_CATALOG"  # platform plans, families, packages, rate cards
    REPORT_USAGE = "REPORT_USAGE"  # platform product only
    MANAGE_WORKSPACES = "MANAGE_WORKSPACES"
    MANAGE_PLANS = "MANAGE_PLANS"
    MANAGE_BILLING = "MANAGE_BILLING"  # wallets, grants, payments
    CONFIGURE_GATEWAY = "CONFIGURE_GATEWAY"
    READ_REPORTS = "READ_REPORTS"
    MANAGE_USERS = "MANAGE_USERS"
    MANAGE_SUB_PARTNERS = "MANAGE_SUB_PARTNERS"  # a partner's resellers of its own


PLATFORM_PERMISSIONS = frozenset(Permission)
PARTNER_PERMISSIONS = frozenset(
    {
        Permission.MANAGE_WORKSPACES,
        Permission.MANAGE_PLANS,
        Permission.MANAGE_BILLING,
        Permission.CONFIGURE_GATEWAY,
        Permission.READ_REPORTS,
        Permission.MANAGE_USERS,
        Permission.MANAGE_SUB_PARTNERS,
    }
)


class BillingInterval(StrEnum):
    MONTHLY = "MONTHLY"
    YEARLY = "YEARLY"


class PlanStatus(StrEnum):
    ACTIVE = "ACTIVE"
    HIDDEN = "HIDDEN"
    ARCHIVED = "ARCHIVED"


class MarginKind(StrEnum):
    PERCENTAGE = "PERCENTAGE"
    FIXED = "FIXED"


class SubscriptionStatus(StrEnum):
    TRIALING = "TRIALING"
    ACTIVE = "ACTIVE"
    PAST_DUE = "PAST_DUE"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"


class PlanHistoryStatus(StrEnum):
    """A plan in a subscriber's history: while current, its subscription's status; once over, what
    ended it (another plan put in its place, or the subscription's end)."""

    TRIALING = "TRIALING"
    ACTIVE = "ACTIVE"
    PAST_DUE = "PAST_DUE"
    REPLACED = "REPLACED"  # a change of plan put another in its place
    CANCELED = "CANCELED"  # its subscription was canceled (now, at period end, auto-renew off, a refund)
    EXPIRED = "EXPIRED"  # its subscription ran out (validity, maximum renewals, unpaid: the fallback plan)


class StatusReasonKind(StrEnum):
    """Why a workspace has its status (every reason that applies is listed)."""

    NO_PLAN = "NO_PLAN"  # no live subscription: RESTRICTED
    PAYMENT_OVERDUE = "PAYMENT_OVERDUE"  # a renewal is unpaid: RESTRICTED or SUSPENDED by the dunning policy
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"  # usage above a limit: PAUSED


class PeriodStatus(StrEnum):
    """A billed period: DUE until its payment succeeds, VOID when dunning gave up on it."""

    DUE = "DUE"
    PAID = "PAID"
    VOID = "VOID"


class AddOnState(StrEnum):
    """Where a workspace's add-on stands: held, lapsed because its next period could not be paid in
    points at renewal, or removed (set to 0, or taken back with the refunded or charged-back payment
    that bought it)."""

    ACTIVE = "ACTIVE"
    LAPSED = "LAPSED"
    REMOVED = "REMOVED"


class PaymentMode(StrEnum):
    """How a subscription's charges are collected."""

    MANUAL = "MANUAL"  # the partner collects its own way and records it
    PARTNER_BALANCE = "PARTNER_BALANCE"  # debited from the partner's centralised balance


class PlanChangeTiming(StrEnum):
    AUTO = "AUTO"  # upgrades now, downgrades at the end of the period
    NOW = "NOW"
    PERIOD_END = "PERIOD_END"


class Unit(StrEnum):
    """Non-currency wallet units. A wallet's unit is one of these or an ISO 4217 currency code."""

    POINTS = "POINTS"
    MESSAGE_CREDITS = "MESSAGE_CREDITS"
    SEATS = "SEATS"
    CONVERSATIONS = "CONVERSATIONS"


class LedgerCause(StrEnum):
    PURCHASE = "PURCHASE"
    GRANT = "GRANT"
    RENEWAL = "RENEWAL"
    USAGE = "USAGE"
    TRANSFER = "TRANSFER"
    REFUND = "REFUND"
    CHARGEBACK = "CHARGEBACK"
    ADD_ON = "ADD_ON"  # points spent on an add-on's period (credit billing)
    ADJUSTMENT = "ADJUSTMENT"
    EXPIRY = "EXPIRY"
    REFUND_FAILED = "REFUND_FAILED"  # a refund that failed after it was done gives back what it took


class ExternalAccount(StrEnum):
    """Counterparties outside whitebill's wallets; they have no balance row."""

    GATEWAY = "GATEWAY"  # money or units that came in through a payment
    PLATFORM_REVENUE = "PLATFORM_REVENUE"
    PARTNER_REVENUE = "PARTNER_REVENUE"
    ISSUANCE = "ISSUANCE"  # units created by a grant or adjustment
    EXPIRY = "EXPIRY"


class TierScope(StrEnum):
    """Whose messages a month's volume tiers count."""

    PARTNER = "PARTNER"  # all of a partner's projects together
    PROJECT = "PROJECT"  # each project on its own


class MessageCategory(StrEnum):
    MARKETING = "MARKETING"
    UTILITY = "UTILITY"
    AUTHENTICATION = "AUTHENTICATION"
    AUTHENTICATION_INTERNATIONAL = "AUTHENTICATION_INTERNATIONAL"
    SERVICE = "SERVICE"


class PaymentStatus(StrEnum):
    CREATED = "CREATED"
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    DECLINED = "DECLINED"
    NOT_ATTEMPTED = "NOT_ATTEMPTED"
    UNKNOWN = "UNKNOWN"
    REQUIRES_ACTION = "REQUIRES_ACTION"  # waits for the payer to authenticate an off-session card charge
    CANCELED = "CANCELED"
    REFUNDED = "REFUNDED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    DISPUTED = "DISPUTED"
    CHARGED_BACK = "CHARGED_BACK"


class RefundStatus(StrEnum):
    REQUESTED = "REQUESTED"  # asked of the provider, not done yet: nothing is taken back
    DONE = "DONE"  # the money went back: what the payment bought is taken back (by the refund policy)
    FAILED = "FAILED"  # refused, denied, cancelled or failed: nothing is taken back (or it is given back)


class PaymentMethodKind(StrEnum):
    CARD = "CARD"
    BOLETO = "BOLETO"
    PIX = "PIX"
    MANUAL = "MANUAL"
    BALANCE = "BALANCE"  # the partner's centralised balance with the platform


class RefundPlanPolicy(StrEnum):
    """What a refunded or charged-back plan payment does to the plan it bought."""

    END_NOW = "END_NOW"  # the plan ends at once (the partner's fallback plan, if any, takes over)
    KEEP_TO_PERIOD_END = "KEEP_TO_PERIOD_END"  # the paid-for period runs out, nothing renews


class GatewayMode(StrEnum):
    TEST = "TEST"
    LIVE = "LIVE"


class IdempotencyStatus(StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"


class WorkState(StrEnum):
    """State of a background item (job or outbox event)."""

    PENDING = "PENDING"
    DONE = "DONE"
    DEAD = "DEAD"


class UsageCreditPolicy(StrEnum):
    """When a project's WhatsApp credit runs out."""

    REFUSE = "REFUSE"  # a hard stop at zero (the default)
    ALLOW_TO_CREDIT_LIMIT = "ALLOW_TO_CREDIT_LIMIT"  # down to the project wallet's credit limit


class PaymentPurpose(StrEnum):
    """What a payment buys; a paid payment's delivery is chosen by it (billing.dispatch)."""

    PLAN_PURCHASE = "PLAN_PURCHASE"
    PLAN_CHANGE = "PLAN_CHANGE"
    SUBSCRIPTION_PERIOD = "SUBSCRIPTION_PERIOD"
    ADD_ON_PURCHASE = "ADD_ON_PURCHASE"
    WALLET_CREDIT = "WALLET_CREDIT"


class DocumentKind(StrEnum):
    """What a numbered document is: each kind has its own gapless series per issuer."""

    INVOICE = "INVOICE"
    CREDIT_NOTE = "CREDIT_NOTE"
    RECEIPT = "RECEIPT"


class DocumentStatus(StrEnum):
    """An invoice goes DRAFT → FINALIZED → PAID or VOID; a credit note or a receipt is FINALIZED when made."""

    DRAFT = "DRAFT"  # being put together: its lines may change, it has no number
    FINALIZED = "FINALIZED"  # numbered and immutable from here on
    PAID = "PAID"
    VOID = "VOID"  # cancelled after finalizing; it keeps its number (a gap would be one the accountant asks about)


class SeriesReset(StrEnum):
    """When a series' numbers start again at 1."""

    NEVER = "NEVER"
    YEARLY = "YEARLY"  # at each new UTC year (its prefix then usually shows the year)


class CouponKind(StrEnum):
    PERCENTAGE = "PERCENTAGE"  # a percentage off each line it applies to
    FIXED = "FIXED"  # an amount off, in the coupon's currency


class CouponDuration(StrEnum):
    """How many of the charges for a plan a coupon takes something off."""

    ONCE = "ONCE"  # the first only
    REPEATING = "REPEATING"  # the first N periods
    FOREVER = "FOREVER"


class StatementDirection(StrEnum):
    CREDIT = "CREDIT"  # into the balance
    DEBIT = "DEBIT"  # out of it
