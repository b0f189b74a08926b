"""Documents and their numbering: ``document_series`` (one gapless series per issuer and kind of document),
``document`` (invoices, credit notes, receipts), ``document_line``, and the issuers' ``tax_rate``s. Nothing
to backfill: documents start with this release."""

from orjson import loads
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise.migrations import operations as ops

from models.enums import DocumentKind, DocumentStatus, SeriesReset


class Migration(migrations.Migration):
    dependencies = [('models', '0019_allowed_origins')]

    initial = False

    operations = [
        ops.CreateModel(
            name='DocumentSeries',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('partner', fields.ForeignKeyField('models.Partner', source_field='partner_id', null=True, db_constraint=True, to_field='id', on_delete=OnDelete.RESTRICT)),
                ('kind', fields.CharEnumField(description='INVOICE: INVOICE\nCREDIT_NOTE: CREDIT_NOTE\nRECEIPT: RECEIPT', enum_type=DocumentKind, max_length=16)),
                ('prefix', fields.CharField(max_length=40)),
                ('digits', fields.IntField(default=6)),
                ('reset', fields.CharEnumField(default=SeriesReset.NEVER, description='NEVER: NEVER\nYEARLY: YEARLY', enum_type=SeriesReset, max_length=8)),
                ('next_number', fields.BigIntField(default=1)),
                ('year', fields.IntField(null=True)),
            ],
            options={'table': 'document_series', 'app': 'models', 'unique_together': (('partner', 'kind'),), 'pk_attr': 'id', 'table_description': "One issuer's numbering of one kind of document (partner null: the platform's). ``next_number`` is"},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='Document',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('kind', fields.CharEnumField(description='INVOICE: INVOICE\nCREDIT_NOTE: CREDIT_NOTE\nRECEIPT: RECEIPT', enum_type=DocumentKind, max_length=16)),
                ('partner', fields.ForeignKeyField('models.Partner', source_field='partner_id', null=True, db_constraint=True, to_field='id', on_delete=OnDelete.RESTRICT)),
                ('buyer_key', fields.CharField(max_length=64)),
                ('currency', fields.CharField(max_length=3)),
                ('status', fields.CharEnumField(default=DocumentStatus.DRAFT, description='DRAFT: DRAFT\nFINALIZED: FINALIZED\nPAID: PAID\nVOID: VOID', enum_type=DocumentStatus, max_length=16)),
                ('series', fields.ForeignKeyField('models.DocumentSeries', source_field='series_id', null=True, db_constraint=True, to_field='id', on_delete=OnDelete.RESTRICT)),
                ('number', fields.BigIntField(null=True)),
                ('number_text', fields.CharField(null=True, max_length=64)),
                ('subtotal', fields.BigIntField(default=0)),
                ('discount_total', fields.BigIntField(default=0)),
                ('tax_total', fields.BigIntField(default=0)),
                ('total', fields.BigIntField(default=0)),
                ('finalized_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('paid_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('voided_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('payment', fields.ForeignKeyField('models.Payment', source_field='payment_id', null=True, db_constraint=True, to_field='id', on_delete=OnDelete.RESTRICT)),
                ('refers_to', fields.ForeignKeyField('models.Document', source_field='refers_to_id', null=True, db_constraint=True, to_field='id', on_delete=OnDelete.RESTRICT)),
                ('note', fields.CharField(default='', max_length=300)),
                ('fiscal_document', fields.JSONField(null=True, encoder=JSON_DUMPS, decoder=loads)),
            ],
            options={'table': 'document', 'app': 'models', 'unique_together': (('series', 'number'),), 'pk_attr': 'id', 'table_description': 'What a buyer (a workspace, or a partner the platform bills) owes an issuer (an invoice), was given'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='DocumentLine',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('document', fields.ForeignKeyField('models.Document', source_field='document_id', db_constraint=True, to_field='id', related_name='lines', on_delete=OnDelete.CASCADE)),
                ('position', fields.IntField()),
                ('description', fields.CharField(max_length=300)),
                ('quantity', fields.BigIntField(default=1)),
                ('unit_price', fields.BigIntField()),
                ('subtotal', fields.BigIntField()),
                ('discount', fields.BigIntField(default=0)),
                ('tax', fields.BigIntField(default=0)),
                ('taxes', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('total', fields.BigIntField()),
                ('item_type', fields.CharField(default='', max_length=32)),
                ('item_id', fields.BigIntField(null=True)),
                ('refers_to_line', fields.ForeignKeyField('models.DocumentLine', source_field='refers_to_line_id', null=True, db_constraint=True, to_field='id', on_delete=OnDelete.RESTRICT)),
            ],
            options={'table': 'document_line', 'app': 'models', 'unique_together': (('document', 'position'),), 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='TaxRate',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('partner', fields.ForeignKeyField('models.Partner', source_field='partner_id', null=True, db_constraint=True, to_field='id', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=60)),
                ('percentage', fields.DecimalField(max_digits=7, decimal_places=4)),
                ('inclusive', fields.BooleanField(default=False)),
                ('active', fields.BooleanField(default=True)),
            ],
            options={'table': 'tax_rate', 'app': 'models', 'unique_together': (('partner', 'name'),), 'pk_attr': 'id', 'table_description': "A tax an issuer applies to every line of its documents (partner null: the platform's): a name, a"},
            bases=['Entity'],
        ),
    ]
