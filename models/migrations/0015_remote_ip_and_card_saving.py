"""Saved cards in production: the payer's address at checkout (``payment.remote_ip``), kept with the
card it saved (``saved_payment_method.remote_ip``) for its later off-session charges, and the gateway
configuration's ``card_saving_unavailable_since``. All nullable: rows made before it have no address (a
card saved then is charged without one, as before) and saving is taken as available."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0014_refunds')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Payment',
            name='remote_ip',
            field=fields.CharField(null=True, max_length=45),
        ),
        ops.AddField(
            model_name='SavedPaymentMethod',
            name='remote_ip',
            field=fields.CharField(null=True, max_length=45),
        ),
        ops.AddField(
            model_name='GatewayConfig',
            name='card_saving_unavailable_since',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
