"""A workspace's (or a partner's) plan over time, its add-ons and its usage."""

from tortoise import fields

from models.base import Entity
from models.enums import AddOnState, PaymentMode, PeriodStatus, PlanHistoryStatus, SubscriptionStatus


class Subscription(Entity):
    """The current plan of a workspace, or of a partner for partner plans (workspace null)."""

    partner = fields.ForeignKeyField("models.Partner", related_name="subscriptions", on_delete=fields.CASCADE)
    partner_id: int
    workspace = fields.ForeignKeyField(
        "models.Workspace", related_name="subscriptions", null=True, on_delete=fields.CASCADE
    )
    workspace_id: int | None
    plan = fields.ForeignKeyField("models.Plan", related_name="subscriptions", on_delete=fields.RESTRICT)
    plan_id: int
    status = fields.CharEnumField(SubscriptionStatus, max_length=16)
    price_amount = fields.BigIntField()  # the price this subscriber pays each period
    currency = fields.CharField(max_length=3)
    anchor_day = fields.IntField()  # monthly periods keep this day, clamped to the month's end
    current_period_start = fields.DatetimeField()
    current_period_end = fields.DatetimeField()
    trial_end = fields.DatetimeField(null=True)
    renewals = fields.IntField(default=0)
    cancel_at_period_end = fields.BooleanField(default=False)
    payment_mode = fields.CharEnumField(PaymentMode, max_length=16, default=PaymentMode.MANUAL)
    failed_renewals = fields.IntField(default=0)
    next_retry_at = fields.DatetimeField(null=True)
    ended_at = fields.DatetimeField(null=True)
    # When the worker must next look at it: period end, a dunning retry. Null once it has ended.
    next_action_at = fields.DatetimeField(null=True)
    # A downgrade (or any change asked for at period end) waiting for the current period to end.
    scheduled_plan = fields.ForeignKeyField(
        "models.Plan", related_name="scheduled_subscriptions", null=True, on_delete=fields.RESTRICT
    )
    scheduled_plan_id: int | None

    class Meta:
        table = "subscription"
        indexes = (("next_action_at",),)


class SubscriptionPeriod(Entity):
    """One billed period. Unique per subscription and start: no period can be billed twice."""

    partner = fields.ForeignKeyField("models.Partner", related_name=None, on_delete=fields.CASCADE)
    partner_id: int
    subscription = fields.ForeignKeyField("models.Subscription", related_name="periods", on_delete=fields.CASCADE)
    subscription_id: int
    plan = fields.ForeignKeyField("models.Plan", related_name=None, on_delete=fields.RESTRICT)
    plan_id: int
    number = fields.IntField()  # 1 for the first billed period
    starts_at = fields.DatetimeField()
    ends_at = fields.DatetimeField()
    amount = fields.BigIntField()
    currency = fields.CharField(max_length=3)
    status = fields.CharEnumField(PeriodStatus, max_length=8)
    payment = fields.ForeignKeyField("models.Payment", related_name=None, null=True, on_delete=fields.RESTRICT)
    payment_id: int | None
    paid_at = fields.DatetimeField(null=True)

    class Meta:
        table = "subscription_period"
        unique_together = (("subscription", "starts_at"),)


class SubscriptionHistory(Entity):
    """Every plan a subscriber has had, with the dates it was active (MonoChat)."""

    partner = fields.ForeignKeyField("models.Partner", related_name=None, on_delete=fields.CASCADE)
    partner_id: int
    subscription = fields.ForeignKeyField("models.Subscription", related_name="history", on_delete=fields.CASCADE)
    subscription_id: int
    plan = fields.ForeignKeyField("models.Plan", related_name=None, on_delete=fields.RESTRICT)
    plan_id: int
    status = fields.CharEnumField(PlanHistoryStatus, max_length=16)  # once ended: what ended it
    started_at = fields.DatetimeField()
    ended_at = fields.DatetimeField(null=True)
    note = fields.TextField(default="")

    class Meta:
        table = "subscription_history"


class WorkspaceAddOn(Entity):
    @property
    def state(self) -> AddOnState:
        if self.active:
            return AddOnState.ACTIVE
        return AddOnState.LAPSED if self.lapsed_at is not None else AddOnState.REMOVED

    partner = fields.ForeignKeyField("models.Partner", related_name=None, on_delete=fields.CASCADE)
    partner_id: int
    workspace = fields.ForeignKeyField("models.Workspace", related_name="add_ons", on_delete=fields.CASCADE)
    workspace_id: int
    add_on = fields.ForeignKeyField("models.AddOn", related_name=None, on_delete=fields.RESTRICT)
    add_on_id: int
    quantity = fields.IntField()
    active = fields.BooleanField(default=True)
    paid_through = fields.DatetimeField(null=True)  # when paid in points, the end of the paid period
    lapsed_at = fields.DatetimeField(null=True)  # when its points ran short; None while held or once removed

    class Meta:
        table = "workspace_add_on"
        unique_together = (("workspace", "add_on"),)


class UsageCounter(Entity):
    """Current usage of one limited metric (members, chatbots, conversations this period...)."""

    partner = fields.ForeignKeyField("models.Partner", related_name=None, on_delete=fields.CASCADE)
    partner_id: int
    workspace = fields.ForeignKeyField("models.Workspace", related_name="usage", on_delete=fields.CASCADE)
    workspace_id: int
    metric = fields.CharField(max_length=64)
    value = fields.BigIntField(default=0)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "usage_counter"
        unique_together = (("workspace", "metric"),)


class MessageVolume(Entity):
    """Messages charged in one calendar month (of their ``occurred_at``, UTC) for one scope (a partner or a
    project, as the platform's card says), country and category: each message's position in the month
    picks its volume tier."""

    scope = fields.CharField(max_length=32)  # "PARTNER:7" or "PROJECT:12"
    country = fields.CharField(max_length=2)
    category = fields.CharField(max_length=32)
    month = fields.CharField(max_length=7)  # "2027-03"
    count = fields.BigIntField(default=0)

    class Meta:
        table = "message_volume"
        unique_together = (("scope", "country", "category", "month"),)


class UsageEvent(Entity):
    """A delivered-message report (WCC). The event id makes ingestion exactly-once."""

    partner = fields.ForeignKeyField("models.Partner", related_name=None, on_delete=fields.CASCADE)
    partner_id: int
    project = fields.ForeignKeyField("models.Project", related_name=None, on_delete=fields.CASCADE)
    project_id: int
    event_id = fields.CharField(max_length=128)
    country = fields.CharField(max_length=2)
    category = fields.CharField(max_length=32)
    # The conversation window it was sent in: NONE, CUSTOMER_SERVICE (24 h) or FREE_ENTRY (72 h).
    window_kind = fields.CharField(max_length=24, default="NONE")
    count = fields.IntField()
    free = fields.BooleanField(default=False)
    occurred_at = fields.DatetimeField()
    # Each amount exact: whole minor units, and the fine units (10^-10 of one) beyond them.
    charged_amount = fields.BigIntField(default=0)  # the project's credit, at the partner's rate
    charged_fraction = fields.BigIntField(default=0, db_default=0)  # db_default: rows made before it start at 0
    platform_amount = fields.BigIntField(default=0)  # the partner's centralised balance, at the platform's rate
    platform_fraction = fields.BigIntField(default=0, db_default=0)  # db_default: rows made before it start at 0
    currency = fields.CharField(max_length=3)
    # Resellers of resellers: what each partner above the event's pays its parent for it, exact in fine units,
    # the platform's direct partner first: [[partner id, fine units], ...]; null for a direct partner's event.
    levels = fields.JSONField(null=True)
    # The batch's posting: its entries on the project's credit and the partner's balance move the whole
    # minor units the wallets' running totals crossed (billing.usage.exact_amounts); no foreign key, so
    # that a batch's inserts check nothing they need not.
    posting_id = fields.BigIntField(null=True)

    class Meta:
        table = "usage_event"
        unique_together = (("partner", "event_id"),)
        indexes = (("project_id", "occurred_at"),)
