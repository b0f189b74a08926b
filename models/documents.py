"""Documents a business keeps for its money (invoices, credit notes, receipts), numbered in gapless series
per issuer and kind. A finalized document never changes: a correction is a credit note against it."""

from tortoise import fields

from models.base import Entity
from models.enums import DocumentKind, DocumentStatus, SeriesReset


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
