from tortoise import migrations
from tortoise.migrations import operations as ops
from models.enums import MarginKind
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index
from tortoise.migrations.constraints import UniqueConstraint

class Migration(migrations.Migration):
    dependencies = [('models', '0006_partner_webhooks')]

    initial = False

    operations = [
        ops.CreateModel(
            name='PlatformDeduction',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('partner', fields.ForeignKeyField('models.Partner', source_field='partner_id', db_constraint=True, to_field='id', on_delete=OnDelete.RESTRICT)),
                ('workspace', fields.ForeignKeyField('models.Workspace', source_field='workspace_id', null=True, db_constraint=True, to_field='id', on_delete=OnDelete.SET_NULL)),
                ('kind', fields.CharField(max_length=16)),
                ('source', fields.CharField(max_length=64)),
                ('plan', fields.ForeignKeyField('models.Plan', source_field='plan_id', null=True, db_constraint=True, to_field='id', on_delete=OnDelete.SET_NULL)),
                ('amount', fields.BigIntField()),
                ('currency', fields.CharField(max_length=3)),
                ('posting_id', fields.BigIntField(null=True)),
                ('debited_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('attempts', fields.IntField(default=0)),
            ],
            options={'table': 'platform_deduction', 'app': 'models', 'unique_together': (('source', 'kind'),), 'indexes': [Index(fields=['partner_id', 'created_at'])], 'pk_attr': 'id', 'table_description': "What the platform takes from a partner's centralised balance for a client's plan: the"},
            bases=['Entity'],
        ),
        ops.AddField(
            model_name='Partner',
            name='usage_credit_policy',
            field=fields.CharField(default='REFUSE', max_length=24),
        ),
        ops.AddField(
            model_name='RateCard',
            name='version',
            field=fields.BigIntField(default=1),
        ),
        ops.AddConstraint(
            model_name='RateCard',
            constraint=UniqueConstraint(fields=('partner', 'currency'), name=None),
        ),
        ops.AddField(
            model_name='RateCardCell',
            name='margin_kind',
            field=fields.CharEnumField(null=True, description='PERCENTAGE: PERCENTAGE\nFIXED: FIXED', enum_type=MarginKind, max_length=16),
        ),
        ops.AddField(
            model_name='UsageEvent',
            name='posting_id',
            field=fields.BigIntField(null=True),
        ),
        ops.AddField(
            model_name='UsageEvent',
            name='window_kind',
            field=fields.CharField(default='NONE', max_length=24),
        ),
        ops.AddIndex(
            model_name='UsageEvent',
            index=Index(fields=['project_id', 'occurred_at']),
        ),
    ]
