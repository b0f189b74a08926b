"""What is sold: plans and plan families, margins, add-ons, credit packages, rate cards.

Prices are integer minor units next to their ISO 4217 currency; rate card prices are exact decimals
(fractions of a cent) rounded once at charge time.
"""

from tortoise import fields

from models.base import Entity
from models.enums import BillingInterval, MarginKind, MessageCategory, PlanStatus, TierScope


class PlanFamily(Entity):
    """Platform plans grouped for partners (Basic/Pro x Monthly/Yearly)."""

    name = fields.CharField(max_length=200, unique=True)
    description = fields.TextField(default="")

    class Meta:
        table = "plan_family"


class Plan(Entity):
    """A platform plan (partner is null) or a partner-defined plan."""

    partner = fields.ForeignKeyField("models.Partner", related_name="plans", null=True, on_delete=fields.CASCADE)
    partner_id: int | None
    family = fields.ForeignKeyField("models.PlanFamily", related_name="plans", null=True, on_delete=fields.RESTRICT)
    family_id: int | None
    for_partners = fields.BooleanField(default=False)  # a plan partners subscribe to themselves (MonoChat)
    name = fields.CharField(max_length=200)
    interval = fields.CharEnumField(BillingInterval, max_length=16, default=BillingInterval.MONTHLY)
    price_amount = fields.BigIntField()
    currency = fields.CharField(max_length=3)
    # {"chatbots": 5, "members": 3, "conversations": 1000, "message_credits": 10000}
    limits = fields.JSONField(default=dict)
    validity_periods = fields.IntField(null=True)
    max_renewals = fields.IntField(null=True)
    grace_days = fields.IntField(default=0)
    trial_days = fields.IntField(default=0)
    trial_requires_payment_method = fields.BooleanField(default=False)
    status = fields.CharEnumField(PlanStatus, max_length=16, default=PlanStatus.ACTIVE)
    # Units granted each paid period: {"MESSAGE_CREDITS": 10000}.
    included_units = fields.JSONField(default=dict)
    # Included units unused at the period's end expire (a plan's allowance of conversations).
    included_units_expire = fields.BooleanField(default=False)

    class Meta:
        table = "plan"


class PartnerMargin(Entity):
    """A partner's margin over platform prices: on one plan, on a family, or in bulk (both null)."""

    partner = fields.ForeignKeyField("models.Partner", related_name="margins", on_delete=fields.CASCADE)
    partner_id: int
    plan = fields.ForeignKeyField("models.Plan", related_name=None, null=True, on_delete=fields.CASCADE)
    plan_id: int | None
    family = fields.ForeignKeyField("models.PlanFamily", related_name=None, null=True, on_delete=fields.CASCADE)
    family_id: int | None
    kind = fields.CharEnumField(MarginKind, max_length=16)
    percentage = fields.DecimalField(max_digits=9, decimal_places=4, null=True)
    # A fixed margin: minor units of its currency, added only to plans in that currency.
    fixed_amount = fields.BigIntField(null=True)
    currency = fields.CharField(max_length=3, null=True)
    # "PLAN:5", "FAMILY:3", "BULK" (the bulk percentage) or "BULK:JPY" (the bulk fixed margin in JPY):
    # unique per partner, so there is one margin per scope even in bulk (a unique key over nullable plan
    # and family would let two bulk rows in).
    scope = fields.CharField(max_length=40)

    class Meta:
        table = "partner_margin"
        unique_together = (("partner", "plan", "family"), ("partner", "scope"))


class AddOn(Entity):
    """A priced extension of limits: {"chatbots": 1} for one extra chatbot per unit of quantity."""

    partner = fields.ForeignKeyField("models.Partner", related_name="add_ons", null=True, on_delete=fields.CASCADE)
    partner_id: int | None
    name = fields.CharField(max_length=200)
    limit_deltas = fields.JSONField(default=dict)
    price_amount = fields.BigIntField(default=0)
    currency = fields.CharField(max_length=3)
    points_cost = fields.BigIntField(null=True)  # per period, when credit billing is on
    status = fields.CharEnumField(PlanStatus, max_length=16, default=PlanStatus.ACTIVE)

    class Meta:
        table = "add_on"


class CreditPackage(Entity):
    """price -> quantity of a unit. Sold by the platform to partners (partner null) or by a partner."""

    partner = fields.ForeignKeyField(
        "models.Partner", related_name="credit_packages", null=True, on_delete=fields.CASCADE
    )
    partner_id: int | None
    name = fields.CharField(max_length=200)
    unit = fields.CharField(max_length=32)
    quantity = fields.BigIntField()
    price_amount = fields.BigIntField()
    currency = fields.CharField(max_length=3)
    expires_after_days = fields.IntField(null=True)
    status = fields.CharEnumField(PlanStatus, max_length=16, default=PlanStatus.ACTIVE)

    class Meta:
        table = "credit_package"


class RateCard(Entity):
    """WhatsApp conversation charges: the platform's card (partner null) and partners' margins over it."""

    partner = fields.ForeignKeyField("models.Partner", related_name="rate_cards", null=True, on_delete=fields.CASCADE)
    partner_id: int | None
    name = fields.CharField(max_length=200)
    currency = fields.CharField(max_length=3)
    # Bulk margin over the platform card, when this is a partner's card.
    margin_kind = fields.CharEnumField(MarginKind, max_length=16, null=True)
    margin_value = fields.DecimalField(max_digits=18, decimal_places=8, null=True)
    effective_from = fields.DatetimeField(null=True)
    # Whose messages a month's volume tiers count, on the platform's card: each PARTNER's or each PROJECT's.
    tier_scope = fields.CharEnumField(TierScope, max_length=16, default=TierScope.PARTNER, db_default="PARTNER")
    # Moves on every change to the card or its cells: ingestion caches cards by it.
    version = fields.BigIntField(default=1)

    class Meta:
        table = "rate_card"
        unique_together = (("partner", "currency"),)


class PlatformRate(Entity):
    """The platform's price per delivered message for one cell of its card, from ``effective_from`` until
    the cell's next price. A cell's earliest price also covers every moment before it (there was no other).
    A usage event is priced by the price in force at its ``occurred_at``."""

    rate_card = fields.ForeignKeyField("models.RateCard", related_name="rates", on_delete=fields.CASCADE)
    rate_card_id: int
    country = fields.CharField(max_length=2)  # ISO 3166 alpha-2, "*" for the rest of the world
    category = fields.CharEnumField(MessageCategory, max_length=32)
    price = fields.DecimalField(max_digits=18, decimal_places=8)
    effective_from = fields.DatetimeField()
    # Volume tiers over a calendar month: [{"from": 1001, "price": "0.05"}, ...], ascending; ``price`` above
    # prices messages 1 to the first tier's "from" - 1 (0 there: a free quota). Empty: one price for all.
    tiers = fields.JSONField(default=list, db_default="[]")

    class Meta:
        table = "platform_rate"
        unique_together = (("rate_card", "country", "category", "effective_from"),)


class RateCardCell(Entity):
    """A partner's margin on one country and category of the platform's prices: ``margin_kind`` with
    ``price`` as its value (a percentage, or an amount in the currency's major unit). (Before 0017 the
    platform's own prices were cells too; they are :class:`PlatformRate` rows now.)"""

    rate_card = fields.ForeignKeyField("models.RateCard", related_name="cells", on_delete=fields.CASCADE)
    rate_card_id: int
    country = fields.CharField(max_length=2)  # ISO 3166 alpha-2, "*" for the rest of the world
    category = fields.CharEnumField(MessageCategory, max_length=32)
    price = fields.DecimalField(max_digits=18, decimal_places=8)
    margin_kind = fields.CharEnumField(MarginKind, max_length=16, null=True)

    class Meta:
        table = "rate_card_cell"
        unique_together = (("rate_card", "country", "category"),)
