"""Refunds become rows with a state (``refund``): REQUESTED until the provider says DONE, or FAILED. A
payment's ``refunded_amount`` stays the sum of its DONE refunds. Each payment refunded before this
release gets one DONE refund of its refunded amount (key ``before-0014``), so the rows add up.
``LedgerCause.REFUND_FAILED`` fits the cause columns' 16 characters: no change there."""

from orjson import loads
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise.migrations import operations as ops

from models.enums import RefundStatus

BACKFILL = (
    "INSERT INTO refund (created_at, payment_id, partner_id, amount, currency, status, key, reason, check_attempts,"
    " settled_at, updated_at) SELECT updated_at, id, partner_id, refunded_amount, currency, 'DONE', 'before-0014',"
    " '', 0, updated_at, updated_at FROM payment WHERE refunded_amount > 0"
)


class Migration(migrations.Migration):
    dependencies = [('models', '0013_provider_webhook_queue')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Refund',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('payment', fields.ForeignKeyField('models.Payment', source_field='payment_id', db_constraint=True, to_field='id', related_name='refunds', on_delete=OnDelete.RESTRICT)),
                ('partner', fields.ForeignKeyField('models.Partner', source_field='partner_id', null=True, db_constraint=True, to_field='id', on_delete=OnDelete.RESTRICT)),
                ('amount', fields.BigIntField()),
                ('currency', fields.CharField(max_length=3)),
                ('status', fields.CharEnumField(default=RefundStatus.REQUESTED, description='REQUESTED: REQUESTED\nDONE: DONE\nFAILED: FAILED', enum_type=RefundStatus, max_length=16)),
                ('key', fields.CharField(max_length=128)),
                ('provider_ref', fields.CharField(null=True, max_length=255)),
                ('reason', fields.TextField(default='', unique=False)),
                ('failure_reason', fields.TextField(null=True, unique=False)),
                ('payer_action', fields.JSONField(null=True, encoder=JSON_DUMPS, decoder=loads)),
                ('next_check_at', fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False)),
                ('check_attempts', fields.IntField(default=0)),
                ('settled_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'refund', 'app': 'models', 'unique_together': (('payment', 'key'),), 'pk_attr': 'id', 'table_description': 'Money going back to the payer, asked of the provider (or recorded for a manual payment)'},
            bases=['Entity'],
        ),
        ops.RunSQL(BACKFILL, "DELETE FROM refund WHERE key = 'before-0014'"),
    ]
