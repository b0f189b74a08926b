from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0003_gateways')]

    initial = False

    operations = [
        ops.CreateModel(
            name='AutoTopUp',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('partner', fields.ForeignKeyField('models.Partner', source_field='partner_id', null=True, db_constraint=True, to_field='id', on_delete=OnDelete.CASCADE)),
                ('wallet', fields.OneToOneField('models.Wallet', source_field='wallet_id', db_constraint=True, to_field='id', related_name='auto_top_up', on_delete=OnDelete.CASCADE)),
                ('package', fields.ForeignKeyField('models.CreditPackage', source_field='package_id', db_constraint=True, to_field='id', on_delete=OnDelete.RESTRICT)),
                ('threshold', fields.BigIntField()),
                ('enabled', fields.BooleanField(default=True)),
                ('in_flight_payment_id', fields.BigIntField(null=True)),
                ('failures', fields.IntField(default=0)),
                ('retry_after', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'auto_top_up', 'app': 'models', 'pk_attr': 'id', 'table_description': 'Buy ``package`` for the wallet when its balance (plus a top-up in flight) falls below ``threshold``.'},
            bases=['Entity'],
        ),
        ops.AddField(
            model_name='Wallet',
            name='low_balance_notified',
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name='Wallet',
            name='low_balance_threshold',
            field=fields.BigIntField(null=True),
        ),
    ]
