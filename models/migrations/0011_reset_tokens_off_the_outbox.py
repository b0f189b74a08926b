import hashlib
import re

from orjson import dumps, loads
from tortoise import fields, migrations
from tortoise.migrations import operations as ops

"""Password e-mails no longer keep their token in the outbox: the token is made when the e-mail is sent
and only its hash is stored, tied to the e-mail's row (``outbox_event_id``) so a retried send replaces
it. Rows written before this kept the token in clear in ``payload``: each is scrubbed to the new shape
(who to write to, never a token); the token's hash row tells which user it was for. A row already sent
keeps its token valid (the person has the e-mail); one not yet sent has its old token ended, and the
worker makes a new one when it sends it. Reset tokens themselves were always stored as hashes."""

LINK_EVENT = "email.password_reset"


def _sql(client, text: str) -> str:
    """Statements are written with PostgreSQL's $n; SQLite takes ?n."""
    return text if client.capabilities.dialect == "postgres" else re.sub(r"\$(\d+)", r"?\1", text)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _fetch(client, text: str, *params):
    return await client.execute_query_dict(_sql(client, text), list(params))


async def _execute(client, text: str, *params) -> None:
    await client.execute_query(_sql(client, text), list(params))


async def scrub_link_tokens(client) -> int:
    """Rewrite every password e-mail row that still holds a token; returns how many."""
    rows = await _fetch(client, "SELECT id, state, payload FROM outbox_event WHERE event_type = $1", LINK_EVENT)
    scrubbed = 0
    for row in rows:
        payload = row["payload"] if isinstance(row["payload"], dict) else loads(row["payload"])
        if "token" not in payload:
            continue
        token_hash = _digest(str(payload["token"]))
        owners = await _fetch(
            client, "SELECT user_kind, user_id FROM password_reset_token WHERE token_hash = $1", token_hash
        )
        kind = owners[0]["user_kind"] if owners else payload.get("user_kind")
        new = {
            "purpose": "invite" if payload.get("purpose") == "invite" else "reset",
            "to": payload.get("to"),
            "platform": kind == "PLATFORM",
            "user_kind": kind if owners else None,
            "user_id": owners[0]["user_id"] if owners else None,
        }
        await _execute(client, "UPDATE outbox_event SET payload = $1 WHERE id = $2", dumps(new).decode(), row["id"])
        if row["state"] == "DONE":  # the e-mail went out: its link stays valid, tied to its row
            await _execute(
                client, "UPDATE password_reset_token SET outbox_event_id = $1 WHERE token_hash = $2", row["id"], token_hash
            )
        else:  # never sent: nobody holds the old token; the worker makes a new one when it sends
            await _execute(
                client,
                "UPDATE password_reset_token SET used_at = expires_at WHERE token_hash = $1 AND used_at IS NULL",
                token_hash,
            )
        scrubbed += 1
    return scrubbed


async def _forward(apps, state_editor) -> None:
    await scrub_link_tokens(state_editor.client)


class Migration(migrations.Migration):
    dependencies = [('models', '0010_fixed_margin_currency')]

    initial = False

    operations = [
        ops.AddField(
            model_name='PasswordResetToken',
            name='outbox_event_id',
            field=fields.BigIntField(null=True, unique=True),
        ),
        ops.RunPython(_forward),
    ]
