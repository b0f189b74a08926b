"""A workspace's add-on says whether it lapsed: ``lapsed_at`` is when its points ran short at renewal
(``Workspace.addOns`` shows it as state LAPSED), null while it is held and once it is removed.

Before, a lapse and a removal left the same row (inactive, quantity 0). For rows already inactive, the
lapse is recovered from the ``add_on.lapsed`` event the lapse wrote in the same transaction: the latest
one for that workspace and add-on gives ``lapsed_at``, unless the add-on was held again after it, which
left its own trace: the partner set its quantity (audit ``add_on.set``), the workspace bought it with
points (audit ``add_on.points``) or with money (an add-on payment fulfilled after the lapse). Held
again and inactive now, it was removed (set to 0, or taken back with a refunded payment), not lapsed.
One with no lapse event reads as removed."""

import base64
import re
from datetime import UTC, datetime

from orjson import loads
from tortoise import fields, migrations
from tortoise.migrations import operations as ops

LAPSED_EVENT = "add_on.lapsed"
HELD_AGAIN_ACTIONS = ("add_on.set", "add_on.points")


def _sql(client, text: str) -> str:
    """Statements are written with PostgreSQL's $n; SQLite takes ?n."""
    return text if client.capabilities.dialect == "postgres" else re.sub(r"\$(\d+)", r"?\1", text)


def _json(value) -> dict:
    return value if isinstance(value, dict) else loads(value)


def _time(value) -> datetime:
    """SQLite gives a stored time back as text, PostgreSQL as a datetime; both are UTC."""
    when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _keep_latest(latest: dict, key: tuple[int, int], value) -> None:
    when = _time(value)
    if key not in latest or latest[key] < when:
        latest[key] = when


def _db_id(value) -> int | None:
    """An audit row names a row by its database id, or (its values since 0.2.0) by its global id, base64
    of "AddOn:12"; None when it is neither."""
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    try:
        return int(base64.b64decode(str(value), validate=True).decode().split(":", 1)[1])
    except (ValueError, IndexError):
        return None


async def recover_lapses(client) -> int:
    """Set ``lapsed_at`` on inactive add-ons whose latest lapse nothing followed; returns how many."""

    async def fetch(text: str, *params) -> list[dict]:
        return await client.execute_query_dict(_sql(client, text), list(params))

    # Per workspace and add-on: the latest lapse (its time as the domain's clock had it, and when it
    # was written), the latest time it was set or bought with points (written), and the latest time
    # an add-on payment for it was fulfilled (the domain's clock).
    lapses: dict[tuple[int, int], tuple[object, datetime]] = {}
    for event in await fetch(
        "SELECT payload, run_at, created_at FROM outbox_event WHERE event_type = $1 ORDER BY run_at, id", LAPSED_EVENT
    ):
        payload = _json(event["payload"])
        lapses[(int(payload["workspace_id"]), int(payload["add_on_id"]))] = (
            event["run_at"],
            _time(event["created_at"]),
        )
    held_by_audit: dict[tuple[int, int], datetime] = {}
    for entry in await fetch(
        "SELECT target_id, after, created_at FROM audit_log WHERE action IN ($1, $2) AND target_type = 'Workspace'",
        *HELD_AGAIN_ACTIONS,
    ):
        after = _json(entry["after"]) if entry["after"] is not None else {}
        workspace_id, add_on_id = _db_id(entry["target_id"]), _db_id(after.get("add_on_id"))
        if workspace_id is not None and add_on_id is not None:
            _keep_latest(held_by_audit, (workspace_id, add_on_id), entry["created_at"])
    bought: dict[tuple[int, int], datetime] = {}
    for payment in await fetch(
        "SELECT purpose, fulfilled_at FROM payment WHERE purpose_kind = 'ADD_ON_PURCHASE' AND fulfilled_at IS NOT NULL"
    ):
        purpose = _json(payment["purpose"])
        _keep_latest(bought, (int(purpose["workspace_id"]), int(purpose["add_on_id"])), payment["fulfilled_at"])

    recovered = 0
    for row in await fetch("SELECT id, workspace_id, add_on_id FROM workspace_add_on WHERE NOT active"):
        key = (int(row["workspace_id"]), int(row["add_on_id"]))
        if key not in lapses:
            continue
        lapsed_at, written = lapses[key]
        if key in held_by_audit and held_by_audit[key] > written:
            continue
        if key in bought and bought[key] > _time(lapsed_at):
            continue
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
