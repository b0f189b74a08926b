"""A workspace's add-on says whether it lapsed: ``lapsed_at`` is when its points ran short at renewal
(``Workspace.addOns`` shows it as state LAPSED), null while it is held and once it is removed.

Before, a lapse and a removal left the same row (inactive, quantity 0). For rows already inactive, the
lapse is recovered from the ``add_on.lapsed`` event the lapse wrote in the same transaction: the latest
one for that workspace and add-on gives ``lapsed_at``. An add-on that lapsed and was later bought and
removed again reads as lapsed (the removal left no trace to tell them apart); one with no such event
reads as removed."""

import re

from orjson import loads
from tortoise import fields, migrations
from tortoise.migrations import operations as ops

LAPSED_EVENT = "add_on.lapsed"


def _sql(client, text: str) -> str:
    """Statements are written with PostgreSQL's $n; SQLite takes ?n."""
    return text if client.capabilities.dialect == "postgres" else re.sub(r"\$(\d+)", r"?\1", text)


async def recover_lapses(client) -> int:
    """Set ``lapsed_at`` on inactive add-ons from their latest lapse event; returns how many."""
    lapses: dict[tuple[int, int], object] = {}
    events = await client.execute_query_dict(
        _sql(client, "SELECT payload, run_at FROM outbox_event WHERE event_type = $1 ORDER BY run_at, id"),
        [LAPSED_EVENT],
    )
    for event in events:
        payload = event["payload"] if isinstance(event["payload"], dict) else loads(event["payload"])
        lapses[(int(payload["workspace_id"]), int(payload["add_on_id"]))] = event["run_at"]
    recovered = 0
    rows = await client.execute_query_dict(
        "SELECT id, workspace_id, add_on_id FROM workspace_add_on WHERE NOT active", []
    )
    for row in rows:
        lapsed_at = lapses.get((int(row["workspace_id"]), int(row["add_on_id"])))
        if lapsed_at is not None:
            await client.execute_query(
                _sql(client, "UPDATE workspace_add_on SET lapsed_at = $1 WHERE id = $2"), [lapsed_at, row["id"]]
            )
            recovered += 1
    return recovered


async def _forward(apps, state_editor) -> None:
    await recover_lapses(state_editor.client)


class Migration(migrations.Migration):
    dependencies = [("models", "0011_reset_tokens_off_the_outbox")]

    initial = False

    operations = [
        ops.AddField(
            model_name="WorkspaceAddOn",
            name="lapsed_at",
            field=fields.DatetimeField(null=True),
        ),
        ops.RunPython(_forward),
    ]
