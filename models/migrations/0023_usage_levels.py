"""Resellers of resellers: ``usage_event.levels``, what each partner above an event's partner pays its parent
for it (exact, in fine units, the platform's direct partner first), so that every level's usage report adds up
to its ledger; null for a direct partner's event, as every existing event is."""

from orjson import loads
from tortoise import fields, migrations
from tortoise.fields.data import JSON_DUMPS
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0022_partner_hierarchy")]

    initial = False

    operations = [
        ops.AddField(
            model_name="UsageEvent",
            name="levels",
            field=fields.JSONField(null=True, encoder=JSON_DUMPS, decoder=loads),
        ),
    ]
