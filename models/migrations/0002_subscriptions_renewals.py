from tortoise import migrations
from tortoise.migrations import operations as ops
from models.enums import PeriodStatus
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index
from tortoise.migrations.constraints import UniqueConstraint

"""Billed periods, scheduled plan changes, the worker's next-action time, plans' included units, and one
margin per scope (existing margins get their scope from their plan or family, or BULK)."""

SCOPE_FROM_COLUMNS = (
    "UPDATE partner_margin SET scope = CASE WHEN plan_id IS NOT NULL THEN 'PLAN:' || plan_id "
    "WHEN family_id IS NOT NULL THEN 'FAMILY:' || family_id ELSE 'BULK' END"
)
KEEP_NEWEST_PER_SCOPE = (
    "DELETE FROM partner_margin WHERE id NOT IN (SELECT MAX(id) FROM partner_margin GROUP BY partner_id, scope)"
)


class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='SubscriptionPeriod',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('partner', fields.ForeignKeyField('models.Partner', source_field='partner_id', db_constraint=True, to_field='id', on_delete=OnDelete.CASCADE)),
                ('subscription', fields.ForeignKeyField('models.Subscription', source_field='subscription_id', db_constraint=True, to_field='id', related_name='periods', on_delete=OnDelete.CASCADE)),
                ('plan', fields.ForeignKeyField('models.Plan', source_field='plan_id', db_constraint=True, to_field='id', on_delete=OnDelete.RESTRICT)),
                ('number', fields.IntField()),
                ('starts_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('ends_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('amount', fields.BigIntField()),
                ('currency', fields.CharField(max_length=3)),
                ('status', fields.CharEnumField(description='DUE: DUE\nPAID: PAID\nVOID: VOID', enum_type=PeriodStatus, max_length=8)),
                ('payment', fields.ForeignKeyField('models.Payment', source_field='payment_id', null=True, db_constraint=True, to_field='id', on_delete=OnDelete.RESTRICT)),
                ('paid_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'subscription_period', 'app': 'models', 'unique_together': (('subscription', 'starts_at'),), 'pk_attr': 'id', 'table_description': 'One billed period. Unique per subscription and start: no period can be billed twice.'},
            bases=['Entity'],
        ),
        ops.AddField(
            model_name='PartnerMargin',
            name='scope',
            field=fields.CharField(max_length=40, default="BULK"),
        ),
        ops.RunSQL([SCOPE_FROM_COLUMNS, KEEP_NEWEST_PER_SCOPE]),
        ops.AddConstraint(
            model_name='PartnerMargin',
            constraint=UniqueConstraint(fields=('partner', 'scope'), name=None),
        ),
        ops.AddField(
            model_name='Plan',
            name='included_units',
            field=fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads),
        ),
        ops.AddField(
            model_name='Subscription',
            name='next_action_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Subscription',
            name='scheduled_plan',
            field=fields.ForeignKeyField('models.Plan', source_field='scheduled_plan_id', null=True, db_constraint=True, to_field='id', related_name='scheduled_subscriptions', on_delete=OnDelete.RESTRICT),
        ),
        ops.AddIndex(
            model_name='Subscription',
            index=Index(fields=['next_action_at']),
        ),
    ]
