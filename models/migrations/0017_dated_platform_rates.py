"""Rate cards that change on a date: the platform's prices become dated rows (``platform_rate``), each in
force from its ``effective_from`` until the cell's next price; a usage event is priced by the price in force
when it occurred. The platform's cells of 0016 move there, effective from when they were made (a cell's
earliest price covers every moment before it too, so nothing priced before is priced differently);
``rate_card_cell`` keeps the partners' margins."""

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops

from models.enums import MessageCategory

PLATFORM_CARDS = "SELECT id FROM rate_card WHERE partner_id IS NULL"
MOVE = (
    "INSERT INTO platform_rate (created_at, rate_card_id, country, category, price, effective_from)"
    " SELECT created_at, rate_card_id, country, category, price, created_at FROM rate_card_cell"
    f" WHERE rate_card_id IN ({PLATFORM_CARDS})"
)
MOVE_BACK = (
    "INSERT INTO rate_card_cell (created_at, rate_card_id, country, category, price)"
    " SELECT r.created_at, r.rate_card_id, r.country, r.category, r.price FROM platform_rate r"
    " WHERE r.effective_from = (SELECT max(o.effective_from) FROM platform_rate o WHERE o.rate_card_id ="
    " r.rate_card_id AND o.country = r.country AND o.category = r.category)"
)


class Migration(migrations.Migration):
    dependencies = [('models', '0016_exact_usage')]

    initial = False

    operations = [
        ops.CreateModel(
            name='PlatformRate',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('rate_card', fields.ForeignKeyField('models.RateCard', source_field='rate_card_id', db_constraint=True, to_field='id', related_name='rates', on_delete=OnDelete.CASCADE)),
                ('country', fields.CharField(max_length=2)),
                ('category', fields.CharEnumField(description='MARKETING: MARKETING\nUTILITY: UTILITY\nAUTHENTICATION: AUTHENTICATION\nAUTHENTICATION_INTERNATIONAL: AUTHENTICATION_INTERNATIONAL\nSERVICE: SERVICE', enum_type=MessageCategory, max_length=32)),
                ('price', fields.DecimalField(max_digits=18, decimal_places=8)),
                ('effective_from', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'platform_rate', 'app': 'models', 'unique_together': (('rate_card', 'country', 'category', 'effective_from'),), 'pk_attr': 'id', 'table_description': "The platform's price per delivered message for one cell of its card, from ``effective_from`` until"},
            bases=['Entity'],
        ),
        # Back: the platform's cells as they stand (each cell's latest price), before the table goes.
        ops.RunSQL([MOVE, f"DELETE FROM rate_card_cell WHERE rate_card_id IN ({PLATFORM_CARDS})"], MOVE_BACK),
        ops.AlterModelOptions(
            name='RateCardCell',
            options={'table': 'rate_card_cell', 'app': 'models', 'unique_together': (('rate_card', 'country', 'category'),), 'pk_attr': 'id', 'table_description': "A partner's margin on one country and category of the platform's prices: ``margin_kind`` with"},
        ),
    ]
