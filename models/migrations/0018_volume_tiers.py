"""Volume tiers: a platform price may fall as a month's messages grow (``platform_rate.tiers``; a first
price of 0 is a free quota), counted per partner or per project as the platform's card says
(``rate_card.tier_scope``), in ``message_volume``. Nothing to backfill: prices without tiers price as
before, and counting starts with this release."""

from orjson import loads
from tortoise import fields, migrations
from tortoise.fields.data import JSON_DUMPS
from tortoise.migrations import operations as ops

from models.enums import TierScope


class Migration(migrations.Migration):
    dependencies = [('models', '0017_dated_platform_rates')]

    initial = False

    operations = [
        ops.CreateModel(
            name='MessageVolume',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('scope', fields.CharField(max_length=32)),
                ('country', fields.CharField(max_length=2)),
                ('category', fields.CharField(max_length=32)),
                ('month', fields.CharField(max_length=7)),
                ('count', fields.BigIntField(default=0)),
            ],
            options={'table': 'message_volume', 'app': 'models', 'unique_together': (('scope', 'country', 'category', 'month'),), 'pk_attr': 'id', 'table_description': 'Messages charged in one calendar month (of their ``occurred_at``, UTC) for one scope (a partner or a'},
            bases=['Entity'],
        ),
        ops.AddField(
            model_name='PlatformRate',
            name='tiers',
            field=fields.JSONField(default=list, db_default='[]', encoder=JSON_DUMPS, decoder=loads),
        ),
        ops.AddField(
            model_name='RateCard',
            name='tier_scope',
            field=fields.CharEnumField(default=TierScope.PARTNER, db_default='PARTNER', description='PARTNER: PARTNER\nPROJECT: PROJECT', enum_type=TierScope, max_length=16),
        ),
    ]
