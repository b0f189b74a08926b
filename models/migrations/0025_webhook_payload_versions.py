"""Partner webhook payloads get versions: ``webhook_endpoint.payload_version`` (``billing.outbox.payloads``).
Version 2, the API's global ids and ISO 8601 times, is what endpoints made from now on receive; endpoints
that exist already keep receiving version 1, the shape their receivers were written for, until their
partner moves them (``setWebhookPayloadVersion``)."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0024_persisted_operations")]

    initial = False

    operations = [
        ops.AddField(
            model_name="WebhookEndpoint",
            name="payload_version",
            field=fields.SmallIntField(default=2, db_default=1),  # rows made before it keep version 1
        ),
    ]
