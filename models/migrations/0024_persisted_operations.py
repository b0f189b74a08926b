"""Persisted operations: ``persisted_operation``, the GraphQL operations a deployment trusts, by the SHA-256
of their document (``whitebill operations register``). Empty at first: nothing is registered."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0023_usage_levels")]

    initial = False

    operations = [
        ops.CreateModel(
            name="PersistedOperation",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("sha256", fields.CharField(unique=True, max_length=64)),
                ("name", fields.CharField(null=True, max_length=200)),
                ("document", fields.TextField(unique=False)),
            ],
            options={
                "table": "persisted_operation",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A GraphQL operation the deployment trusts (``whitebill operations register``):"
                " its document, as",
            },
            bases=["Entity"],
        ),
    ]
