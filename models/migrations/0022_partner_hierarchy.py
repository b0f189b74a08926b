"""Resellers of resellers: ``partner.parent`` (the partner one resells through; none: the platform's own)
and ``partner.level`` (1 for the platform's direct partners, which every existing partner is), and a
platform deduction's ``chain`` (each level a sub-partner's client payment debits; empty for a direct
partner's, as every existing deduction is)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0021_coupons')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Partner',
            name='level',
            field=fields.IntField(default=1, db_default=1),
        ),
        ops.AddField(
            model_name='Partner',
            name='parent',
            field=fields.ForeignKeyField('models.Partner', source_field='parent_id', null=True, db_constraint=True, to_field='id', on_delete=OnDelete.RESTRICT),
        ),
        ops.AddField(
            model_name='PlatformDeduction',
            name='chain',
            field=fields.JSONField(default=list, db_default='[]', encoder=JSON_DUMPS, decoder=loads),
        ),
    ]
