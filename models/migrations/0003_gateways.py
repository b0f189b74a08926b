from tortoise import migrations
from tortoise.migrations import operations as ops
from models.enums import RefundPlanPolicy
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0002_subscriptions_renewals')]

    initial = False

    operations = [
        ops.CreateModel(
            name='GatewayCustomer',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('gateway_config', fields.ForeignKeyField('models.GatewayConfig', source_field='gateway_config_id', db_constraint=True, to_field='id', on_delete=OnDelete.CASCADE)),
                ('payer_key', fields.CharField(max_length=64)),
                ('provider_customer_ref', fields.CharField(max_length=128)),
            ],
            options={'table': 'gateway_customer', 'app': 'models', 'unique_together': (('gateway_config', 'payer_key'),), 'pk_attr': 'id', 'table_description': "A payer's customer record at one configuration's provider."},
            bases=['Entity'],
        ),
        ops.AddField(
            model_name='Partner',
            name='refund_plan_policy',
            field=fields.CharEnumField(default=RefundPlanPolicy.KEEP_TO_PERIOD_END, description='END_NOW: END_NOW\nKEEP_TO_PERIOD_END: KEEP_TO_PERIOD_END', enum_type=RefundPlanPolicy, max_length=24),
        ),
        ops.AddField(
            model_name='Partner',
            name='refund_takes_back_units',
            field=fields.BooleanField(default=True),
        ),
        ops.AddField(
            model_name='Partner',
            name='tax_id',
            field=fields.CharField(null=True, max_length=20),
        ),
        ops.AddField(
            model_name='Payment',
            name='check_attempts',
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name='Payment',
            name='next_check_at',
            field=fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Payment',
            name='reversed_amount',
            field=fields.BigIntField(default=0),
        ),
        ops.AddField(
            model_name='Workspace',
            name='tax_id',
            field=fields.CharField(null=True, max_length=20),
        ),
    ]
