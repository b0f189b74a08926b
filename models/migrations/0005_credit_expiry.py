from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0004_credit_billing')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Plan',
            name='included_units_expire',
            field=fields.BooleanField(default=False),
        ),
    ]
