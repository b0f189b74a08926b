"""Coupons and their redemptions (``coupon``, ``coupon_redemption``); each invoice line's ``discounts``
(which coupons make up its discount); ``partner.coupons_stack``; a refund's ``invoice_line``; and one
platform series per kind of document. Nothing to backfill: existing lines have no discounts, partners
do not stack coupons, refunds name no line."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from models.enums import CouponDuration, CouponKind
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0020_documents')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Coupon',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('partner', fields.ForeignKeyField('models.Partner', source_field='partner_id', db_constraint=True, to_field='id', on_delete=OnDelete.CASCADE)),
                ('code', fields.CharField(max_length=40)),
                ('name', fields.CharField(max_length=100)),
                ('kind', fields.CharEnumField(description='PERCENTAGE: PERCENTAGE\nFIXED: FIXED', enum_type=CouponKind, max_length=16)),
                ('percentage', fields.DecimalField(null=True, max_digits=7, decimal_places=4)),
                ('amount', fields.BigIntField(null=True)),
                ('currency', fields.CharField(null=True, max_length=3)),
                ('duration', fields.CharEnumField(description='ONCE: ONCE\nREPEATING: REPEATING\nFOREVER: FOREVER', enum_type=CouponDuration, max_length=16)),
                ('periods', fields.IntField(null=True)),
                ('plan_ids', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('add_on_ids', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('package_ids', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('max_redemptions', fields.IntField(null=True)),
                ('max_per_workspace', fields.IntField(null=True)),
                ('redeemed', fields.IntField(default=0)),
                ('expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('active', fields.BooleanField(default=True)),
            ],
            options={'table': 'coupon', 'app': 'models', 'unique_together': (('partner', 'code'),), 'pk_attr': 'id', 'table_description': 'Something off a price: a percentage or a fixed amount (in one currency), for one charge, N periods or'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='CouponRedemption',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('coupon', fields.ForeignKeyField('models.Coupon', source_field='coupon_id', db_constraint=True, to_field='id', related_name='redemptions', on_delete=OnDelete.CASCADE)),
                ('partner', fields.ForeignKeyField('models.Partner', source_field='partner_id', db_constraint=True, to_field='id', on_delete=OnDelete.CASCADE)),
                ('workspace', fields.ForeignKeyField('models.Workspace', source_field='workspace_id', db_constraint=True, to_field='id', on_delete=OnDelete.CASCADE)),
                ('seq', fields.IntField(null=True)),
                ('payment', fields.ForeignKeyField('models.Payment', source_field='payment_id', null=True, db_constraint=True, to_field='id', on_delete=OnDelete.RESTRICT)),
                ('subscription', fields.ForeignKeyField('models.Subscription', source_field='subscription_id', null=True, db_constraint=True, to_field='id', on_delete=OnDelete.SET_NULL)),
                ('first_period', fields.IntField(null=True)),
                ('released_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'coupon_redemption', 'app': 'models', 'unique_together': (('coupon', 'workspace', 'seq'),), 'pk_attr': 'id', 'table_description': 'A coupon held by a workspace: taken at a checkout (``payment``) or applied by the partner by hand.'},
            bases=['Entity'],
        ),
        ops.AddField(
            model_name='DocumentLine',
            name='discounts',
            field=fields.JSONField(default=list, db_default='[]', encoder=JSON_DUMPS, decoder=loads),
        ),
        ops.AddField(
            model_name='Partner',
            name='coupons_stack',
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddField(
            model_name='Refund',
            name='invoice_line',
            field=fields.ForeignKeyField('models.DocumentLine', source_field='invoice_line_id', null=True, db_constraint=True, to_field='id', on_delete=OnDelete.RESTRICT),
        ),
        # The platform's own series (partner null): one per kind, which a plain unique pair does not hold
        # (two nulls are not equal), so a partial index does.
        ops.RunSQL(
            ["CREATE UNIQUE INDEX document_series_platform ON document_series (kind) WHERE partner_id IS NULL"],
            "DROP INDEX document_series_platform",
        ),
    ]
