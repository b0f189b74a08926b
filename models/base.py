"""Common columns."""

from tortoise import fields
from tortoise.models import Model


class Entity(Model):
    """A row with a 64-bit id and creation time."""

    id = fields.BigIntField(primary_key=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        abstract = True
