"""Provider webhooks never stall a provider's queue: a verified event that matches no payment is kept as
ignored (``ignored_provider_event``, listed to the partner, applied later if a payment learns its provider
reference), and each gateway configuration counts our non-2xx answers to its webhooks in a row
(``webhook_failures``; ``webhook_failing_since`` is when the partner was told). Nothing to backfill: the
count starts at 0 and no event was kept before."""

from orjson import loads
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0012_add_on_lapsed_at')]

    initial = False

    operations = [
        ops.CreateModel(
            name='IgnoredProviderEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('gateway_config', fields.ForeignKeyField('models.GatewayConfig', source_field='gateway_config_id', db_constraint=True, to_field='id', on_delete=OnDelete.CASCADE)),
                ('provider', fields.CharField(max_length=32)),
                ('event_id', fields.CharField(max_length=128)),
                ('event_type', fields.CharField(max_length=64)),
                ('provider_ref', fields.CharField(null=True, db_index=True, max_length=128)),
                ('reference', fields.CharField(null=True, max_length=64)),
                ('notice', fields.JSONField(encoder=JSON_DUMPS, decoder=loads)),
                ('payload', fields.JSONField(encoder=JSON_DUMPS, decoder=loads)),
            ],
            options={'table': 'ignored_provider_event', 'app': 'models', 'unique_together': (('gateway_config', 'event_id'),), 'pk_attr': 'id', 'table_description': "A verified provider event that matched no payment of the partner's configurations of that provider"},
            bases=['Entity'],
        ),
        ops.AddField(
            model_name='GatewayConfig',
            name='webhook_failing_since',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='GatewayConfig',
            name='webhook_failures',
            field=fields.IntField(default=0, db_default=0),  # existing rows start at 0
        ),
    ]
