"""Documents a business keeps for its money (invoices, credit notes, receipts), numbered in gapless series
per issuer and kind. A finalized document never changes: a correction is a credit note against it."""

from tortoise import fields

from models.base import Entity
from models.enums import CouponDuration, CouponKind, DocumentKind, DocumentStatus, SeriesReset


class DocumentSeries(Entity):
    """One issuer's numbering of one kind of document (partner null: the platform's). ``next_number`` is
    taken and advanced in the transaction that finalizes a document, so a rolled-back finalization
    leaves no gap and two finalizations never share a number."""

    partner = fields.ForeignKeyField("models.Partner", related_name=None, null=True, on_delete=fields.RESTRICT)
    partner_id: int | None
    kind = fields.CharEnumField(DocumentKind, max_length=16)
    # The number's text: the prefix (``{year}`` is the document's UTC year), then the number, zero-padded.
    prefix = fields.CharField(max_length=40)
    digits = fields.IntField(default=6)
    reset = fields.CharEnumField(SeriesReset, max_length=8, default=SeriesReset.NEVER)
    next_number = fields.BigIntField(default=1)
    year = fields.IntField(null=True)  # the year ``next_number`` counts in, for a YEARLY series

    class Meta:
        table = "document_series"
        unique_together = (("partner", "kind"),)


class Document(Entity):
    """What a buyer (a workspace, or a partner the platform bills) owes an issuer (an invoice), was given
    back (a credit note, against an invoice) or paid (a receipt, for a payment), line by line, in minor
    units of one currency."""

    kind = fields.CharEnumField(DocumentKind, max_length=16)
    partner = fields.ForeignKeyField("models.Partner", related_name=None, null=True, on_delete=fields.RESTRICT)
    partner_id: int | None  # the issuer; null: the platform
    buyer_key = fields.CharField(max_length=64)  # "WORKSPACE:12" or "PARTNER:7"
    currency = fields.CharField(max_length=3)
    status = fields.CharEnumField(DocumentStatus, max_length=16, default=DocumentStatus.DRAFT)
    series = fields.ForeignKeyField("models.DocumentSeries", related_name=None, null=True, on_delete=fields.RESTRICT)
    series_id: int | None
    number = fields.BigIntField(null=True)
    number_text = fields.CharField(max_length=64, null=True)
    subtotal = fields.BigIntField(default=0)  # before discounts and taxes
    discount_total = fields.BigIntField(default=0)
    tax_total = fields.BigIntField(default=0)
    total = fields.BigIntField(default=0)
    finalized_at = fields.DatetimeField(null=True)
    paid_at = fields.DatetimeField(null=True)
    voided_at = fields.DatetimeField(null=True)
    payment = fields.ForeignKeyField("models.Payment", related_name=None, null=True, on_delete=fields.RESTRICT)
    payment_id: int | None
    # A credit note's invoice, a receipt's invoice.
    refers_to = fields.ForeignKeyField("models.Document", related_name=None, null=True, on_delete=fields.RESTRICT)
    refers_to_id: int | None
    note = fields.CharField(max_length=300, default="")  # a credit note's reason
    # An external fiscal document issued for it (a Brazilian NFS-e through Asaas, later): its provider's id
    # and state, kept beside the document, which stays as it was finalized.
    fiscal_document = fields.JSONField(null=True)

    class Meta:
        table = "document"
        # The database holds a number to one document of its series whatever the code does.
        unique_together = (("series", "number"),)


class DocumentLine(Entity):
    document = fields.ForeignKeyField("models.Document", related_name="lines", on_delete=fields.CASCADE)
    document_id: int
    position = fields.IntField()
    description = fields.CharField(max_length=300)
    quantity = fields.BigIntField(default=1)
    unit_price = fields.BigIntField()  # minor units
    subtotal = fields.BigIntField()  # quantity times unit price
    discount = fields.BigIntField(default=0)
    tax = fields.BigIntField(default=0)
    # Each tax on the line: name, percentage, inclusive or not, amount (rounded once, half-even).
    taxes = fields.JSONField(default=list)
    # What makes up ``discount``: each coupon's code, name and amount, in the order they were applied.
    discounts = fields.JSONField(default=list, db_default="[]")
    total = fields.BigIntField()
    # What the line bills (a plan period, an add-on, a package...), as a global id's parts.
    item_type = fields.CharField(max_length=32, default="")
    item_id = fields.BigIntField(null=True)
    refers_to_line = fields.ForeignKeyField(
        "models.DocumentLine", related_name=None, null=True, on_delete=fields.RESTRICT
    )  # a credit note's line: the invoice line it credits
    refers_to_line_id: int | None

    class Meta:
        table = "document_line"
        unique_together = (("document", "position"),)


class TaxRate(Entity):
    """A tax an issuer applies to every line of its documents (partner null: the platform's): a name, a
    percentage, and whether prices already include it (inclusive) or it is added on top (exclusive)."""

    partner = fields.ForeignKeyField("models.Partner", related_name=None, null=True, on_delete=fields.CASCADE)
    partner_id: int | None
    name = fields.CharField(max_length=60)
    percentage = fields.DecimalField(max_digits=7, decimal_places=4)  # 5.0000 is 5 %
    inclusive = fields.BooleanField(default=False)
    active = fields.BooleanField(default=True)

    class Meta:
        table = "tax_rate"
        unique_together = (("partner", "name"),)


class Coupon(Entity):
    """Something off a price: a percentage or a fixed amount (in one currency), for one charge, N periods or
    for ever, on the plans, add-ons or packages it names (none named: on everything), redeemed by a code a
    client types at checkout or applied by its partner by hand."""

    partner = fields.ForeignKeyField("models.Partner", related_name=None, on_delete=fields.CASCADE)
    partner_id: int
    code = fields.CharField(max_length=40)  # upper case, as clients type it (compared without regard to case)
    name = fields.CharField(max_length=100)
    kind = fields.CharEnumField(CouponKind, max_length=16)
    percentage = fields.DecimalField(max_digits=7, decimal_places=4, null=True)
    amount = fields.BigIntField(null=True)  # minor units of ``currency``
    currency = fields.CharField(max_length=3, null=True)
    duration = fields.CharEnumField(CouponDuration, max_length=16)
    periods = fields.IntField(null=True)  # REPEATING: how many
    plan_ids = fields.JSONField(default=list)
    add_on_ids = fields.JSONField(default=list)
    package_ids = fields.JSONField(default=list)
    max_redemptions = fields.IntField(null=True)
    max_per_workspace = fields.IntField(null=True)
    # Redemptions held now: taken with one conditional UPDATE that refuses the one past ``max_redemptions``.
    redeemed = fields.IntField(default=0)
    expires_at = fields.DatetimeField(null=True)
    active = fields.BooleanField(default=True)

    class Meta:
        table = "coupon"
        unique_together = (("partner", "code"),)


class CouponRedemption(Entity):
    """A coupon held by a workspace: taken at a checkout (``payment``) or applied by the partner by hand.
    Its plan's periods count from ``first_period`` of ``subscription`` (set when the plan starts, or at
    the first renewal it applies to). A checkout whose invoice is voided gives its redemption back."""

    coupon = fields.ForeignKeyField("models.Coupon", related_name="redemptions", on_delete=fields.CASCADE)
    coupon_id: int
    partner = fields.ForeignKeyField("models.Partner", related_name=None, on_delete=fields.CASCADE)
    partner_id: int
    workspace = fields.ForeignKeyField("models.Workspace", related_name=None, on_delete=fields.CASCADE)
    workspace_id: int
    # 1, 2, ... among the workspace's held redemptions of the coupon; the database refuses the same twice,
    # so two checkouts racing for a workspace's last one get it once. Null once given back.
    seq = fields.IntField(null=True)
    payment = fields.ForeignKeyField("models.Payment", related_name=None, null=True, on_delete=fields.RESTRICT)
    payment_id: int | None
    subscription = fields.ForeignKeyField(
        "models.Subscription", related_name=None, null=True, on_delete=fields.SET_NULL
    )
    subscription_id: int | None
    first_period = fields.IntField(null=True)
    released_at = fields.DatetimeField(null=True)

    class Meta:
        table = "coupon_redemption"
        unique_together = (("coupon", "workspace", "seq"),)
