"""Usage priced exactly: each usage event keeps the fine units (10^-10 of a minor unit) of its two amounts
beyond their whole minor units, and each wallet its usage remainder. Rows made before it were charged
rounded event by event: their fractions and remainders are 0, which is what they were charged."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0015_remote_ip_and_card_saving')]

    initial = False

    operations = [
        ops.AddField(
            model_name='UsageEvent',
            name='charged_fraction',
            field=fields.BigIntField(default=0, db_default=0),  # existing rows start at 0
        ),
        ops.AddField(
            model_name='UsageEvent',
            name='platform_fraction',
            field=fields.BigIntField(default=0, db_default=0),  # existing rows start at 0
        ),
        ops.AddField(
            model_name='Wallet',
            name='usage_remainder',
            field=fields.BigIntField(default=0, db_default=0),  # existing rows start at 0
        ),
    ]
