"""Every fixed margin has a currency and applies only to plans in it.

Before, a fixed margin was bare minor units added to any plan's price whatever its currency (5.00 KWD on
a 30.00 USD plan made it 80.00 USD; a bulk 5.00 USD made a 1,000 JPY plan 1,500 JPY). From now on
pricing adds a fixed margin only to a plan in the margin's currency, and bulk fixed margins are one per
currency (scope "BULK:USD", "BULK:JPY"; the bulk percentage keeps "BULK"). What this migration does
with the fixed margins already stored:

- on one plan: the margin takes the plan's currency and keeps its minor units, so the plan's clients go
  on paying exactly what they paid (that is the amount they were charged, whatever currency was named);
- on a family whose platform plans are all in one currency: the same, that currency;
- on a family with plans in several currencies (or none): the currency it was given, else USD, which
  was the input's default; its plans in other currencies stop receiving it;
- in bulk: the currency it was given, else USD (the input's default, so a bulk margin set without a
  currency was a USD one as far as its partner could tell); it becomes that currency's bulk fixed
  margin, and plans in other currencies stop receiving it: they were charged a margin counted in
  another currency's units, which no partner meant.

Every row changed is logged (logger "whitebill.migrations", WARNING, so `whitebill migrate` shows it
without any logging set up): partner, scope, amount, the currency before and after.
"""

from __future__ import annotations

import logging
from typing import Any

from tortoise import migrations
from tortoise.migrations import operations as ops

log = logging.getLogger("whitebill.migrations")

DEFAULT_CURRENCY = "USD"  # what setPartnerMargin's currency defaulted to before


async def _rows(client: Any, query: str, *values: Any) -> list[dict[str, Any]]:
    return list(await client.execute_query_dict(_placeholders(client, query), list(values)))


async def _run(client: Any, query: str, *values: Any) -> None:
    await client.execute_query(_placeholders(client, query), list(values))


def _placeholders(client: Any, query: str) -> str:
    """$1, $2... for PostgreSQL; SQLite takes ? in the same order (every query here uses each once)."""
    if client.capabilities.dialect == "postgres":
        return query
    for number in range(9, 0, -1):
        query = query.replace(f"${number}", "?")
    return query


async def settle_fixed_margin_currencies(client: Any) -> list[str]:
    """Give every fixed margin its currency (and bulk ones their per-currency scope); returns what it
    did, one line per margin changed, each also logged."""
    done: list[str] = []
    margins = await _rows(
        client,
        "SELECT id, partner_id, plan_id, family_id, scope, fixed_amount, currency FROM partner_margin"
        " WHERE kind = 'FIXED' ORDER BY id",
    )
    for margin in margins:
        before = margin["currency"]
        if margin["plan_id"] is not None:
            plan = await _rows(client, "SELECT currency FROM plan WHERE id = $1", margin["plan_id"])
            currency = plan[0]["currency"]
            why = "the plan's currency, amount kept as charged"
        elif margin["family_id"] is not None:
            found = await _rows(
                client,
                "SELECT DISTINCT currency FROM plan WHERE family_id = $1 AND partner_id IS NULL",
                margin["family_id"],
            )
            if len(found) == 1:
                currency, why = found[0]["currency"], "the family's one currency, amount kept as charged"
            else:
                currency = before or DEFAULT_CURRENCY
                why = "family in several currencies: " + (
                    "the currency it was given" if before else "no currency given, USD (the old default)"
                )
        else:
            currency = before or DEFAULT_CURRENCY
            why = "bulk: " + ("the currency it was given" if before else "no currency given, USD (the old default)")
        scope = f"BULK:{currency}" if margin["scope"] == "BULK" else margin["scope"]
        if currency == before and scope == margin["scope"]:
            continue
        await _run(client, "UPDATE partner_margin SET currency = $1, scope = $2 WHERE id = $3", currency, scope, margin["id"])
        line = (
            f"partner {margin['partner_id']} fixed margin {margin['id']} ({margin['scope']}):"
            f" {margin['fixed_amount']} minor units, currency {before or 'none'} -> {currency}, scope {scope} ({why})"
        )
        log.warning("migration 0010: %s", line)
        done.append(line)
    if done:
        log.warning("migration 0010: %d fixed margin(s) given a currency", len(done))
    else:
        log.info("migration 0010: every fixed margin already had its currency")
    return done


async def _forward(apps: Any, schema_editor: Any) -> None:
    await settle_fixed_margin_currencies(schema_editor.client)


class Migration(migrations.Migration):
    dependencies = [("models", "0009_plan_history_replaced")]

    initial = False

    operations = [
        ops.RunPython(_forward),
    ]
