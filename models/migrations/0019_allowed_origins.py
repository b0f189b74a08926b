"""Browser origins a partner lists for its pages (``branding.allowed_origins``), besides its custom domain:
the API answers CORS for them. Nothing to backfill: an empty list allows only the custom domain."""

from orjson import loads
from tortoise import fields, migrations
from tortoise.fields.data import JSON_DUMPS
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0018_volume_tiers')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Branding',
            name='allowed_origins',
            field=fields.JSONField(default=list, db_default='[]', encoder=JSON_DUMPS, decoder=loads),
        ),
    ]
