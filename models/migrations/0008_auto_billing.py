from tortoise import migrations
from tortoise.migrations import operations as ops
from models.auto_billing import PoolGrantStatus
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0007_usage_billing')]

    initial = False

    operations = [
        ops.CreateModel(
            name='AutoBillingSlot',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('partner', fields.ForeignKeyField('models.Partner', source_field='partner_id', db_constraint=True, to_field='id', on_delete=OnDelete.CASCADE)),
                ('wallet', fields.OneToOneField('models.Wallet', source_field='wallet_id', db_constraint=True, to_field='id', related_name='auto_billing_slot', on_delete=OnDelete.CASCADE)),
                ('in_flight_payment_id', fields.BigIntField(null=True)),
                ('failures', fields.IntField(default=0)),
                ('retry_after', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_failure', fields.TextField(null=True, unique=False)),
                ('credit_limit_before', fields.BigIntField(null=True)),
            ],
            options={'table': 'auto_billing_slot', 'app': 'models', 'pk_attr': 'id', 'table_description': "At most one auto-billing purchase in flight per wallet (a partner's pool, or a workspace's"},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='PoolGrant',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('partner', fields.ForeignKeyField('models.Partner', source_field='partner_id', db_constraint=True, to_field='id', on_delete=OnDelete.RESTRICT)),
                ('workspace', fields.ForeignKeyField('models.Workspace', source_field='workspace_id', db_constraint=True, to_field='id', on_delete=OnDelete.RESTRICT)),
                ('unit', fields.CharField(max_length=32)),
                ('quantity', fields.BigIntField()),
                ('source', fields.CharField(max_length=64)),
                ('status', fields.CharEnumField(default=PoolGrantStatus.PENDING, description='PENDING: PENDING\nDELIVERED: DELIVERED', enum_type=PoolGrantStatus, max_length=16)),
                ('note', fields.TextField(default='', unique=False)),
                ('expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('posting_id', fields.BigIntField(null=True)),
                ('delivered_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'pool_grant', 'app': 'models', 'unique_together': (('source', 'unit'),), 'indexes': [Index(fields=['partner_id', 'unit', 'status'])], 'pk_attr': 'id', 'table_description': "Units a workspace receives from its partner's pool: a plan's included units for one paid period,"},
            bases=['Entity'],
        ),
    ]
