"""P1's floor: the partner dashboard page hand-written with Starlette and asyncpg.

GET /dashboard?first=N[&after=CURSOR] with ``Authorization: Bearer <partner API key>`` answers the
same JSON as the data of whitebill's dashboard query (bench/p1_dashboard.py's DASHBOARD) from the
same database: the key is looked up and checked, the page is read in one statement (the live
subscription and its plan joined laterally), then the add-ons, wallets and margins of the page in
three more, all on one pooled connection, in one read-only transaction.

Run as a process: ``FLOOR_DATABASE_URL=postgresql://... PORT=... python -m bench.dashboard_floor``
(pool size FLOOR_POOL, default 8).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
from collections import defaultdict
from collections.abc import AsyncIterator
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from billing.core.money import format_minor
from whitebill.cli import KEEP_ALIVE_SECONDS

LIVE = ("ACTIVE", "TRIALING", "PAST_DUE")
MAX_PAGE = 100

AUTH = "SELECT id, partner_id, is_platform, key_hash, revoked_at FROM api_key WHERE prefix = $1"
PAGE = """
WITH page AS (
    SELECT id, name, status FROM workspace
    WHERE partner_id = $1 AND deleted_at IS NULL AND id > $2
    ORDER BY id
    LIMIT $3
)
SELECT w.id, w.name, w.status, s.status AS sub_status, s.current_period_end,
       p.id AS plan_id, p.name AS plan_name, p.partner_id AS plan_partner_id, p.family_id,
       p.price_amount, p.currency, p.limits::text AS plan_limits
FROM page w
LEFT JOIN LATERAL (
    SELECT status, current_period_end, plan_id FROM subscription
    WHERE workspace_id = w.id AND status = ANY($4::text[]) ORDER BY id DESC LIMIT 1
) s ON true
LEFT JOIN plan p ON p.id = s.plan_id
ORDER BY w.id
"""
ADD_ONS = """
SELECT wa.workspace_id, wa.quantity, a.limit_deltas::text AS limit_deltas
FROM workspace_add_on wa JOIN add_on a ON a.id = wa.add_on_id
WHERE wa.workspace_id = ANY($1::bigint[]) AND wa.active
"""
WALLETS = "SELECT workspace_id, unit, balance FROM wallet WHERE workspace_id = ANY($1::bigint[]) ORDER BY id"
MARGINS = "SELECT scope, kind, percentage, fixed_amount FROM partner_margin WHERE partner_id = $1"


def _gid(kind: str, db_id: int) -> str:
    return base64.b64encode(f"{kind}:{db_id}".encode()).decode()


def _error(status: int, message: str) -> Response:
    return Response(orjson.dumps({"error": message}), status_code=status, media_type="application/json")


def _price(row: asyncpg.Record, margins: dict[str, asyncpg.Record]) -> int:
    """The platform price plus the most specific margin (plan, family, bulk), rounded once, half-even."""
    amount: int = row["price_amount"]
    if row["plan_partner_id"] is not None:
        return amount
    margin = margins.get(f"PLAN:{row['plan_id']}") or margins.get(f"FAMILY:{row['family_id']}") or margins.get("BULK")
    if margin is None:
        return amount
    if margin["kind"] == "PERCENTAGE":
        extra = (Decimal(amount) * margin["percentage"] / 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
        return amount + int(extra)
    return amount + (margin["fixed_amount"] or 0)


async def page(conn: asyncpg.Connection, partner_id: int, first: int, after: int) -> dict[str, Any]:
    rows = await conn.fetch(PAGE, partner_id, after, first + 1, list(LIVE))
    rows, more = rows[:first], len(rows) > first
    ids = [r["id"] for r in rows]
    add_ons: dict[int, list[tuple[dict[str, int], int]]] = defaultdict(list)
    for r in await conn.fetch(ADD_ONS, ids):
        add_ons[r["workspace_id"]].append((orjson.loads(r["limit_deltas"]), r["quantity"]))
    wallets: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in await conn.fetch(WALLETS, ids):
        wallets[r["workspace_id"]].append(
            {"unit": r["unit"], "balance": {"amount": format_minor(r["balance"], r["unit"])}}
        )
    margins = {m["scope"]: m for m in await conn.fetch(MARGINS, partner_id)} if any(r["plan_id"] for r in rows) else {}
    nodes = []
    for r in rows:
        limits: dict[str, int] = orjson.loads(r["plan_limits"]) if r["plan_id"] is not None else {}
        for deltas, quantity in add_ons.get(r["id"], ()):
            for name, delta in deltas.items():
                limits[name] = limits.get(name, 0) + delta * quantity
        subscription = None
        if r["plan_id"] is not None:
            subscription = {
                "status": r["sub_status"],
                "currentPeriodEnd": r["current_period_end"].isoformat(),
                "plan": {
                    "id": _gid("Plan", r["plan_id"]),
                    "name": r["plan_name"],
                    "price": {"amount": format_minor(_price(r, margins), r["currency"]), "currency": r["currency"]},
                },
            }
        nodes.append(
            {
                "id": _gid("Workspace", r["id"]),
                "name": r["name"],
                "status": r["status"],
                "subscription": subscription,
                "limits": [{"name": k, "value": v} for k, v in sorted(limits.items())],
                "wallets": wallets.get(r["id"], []),
            }
        )
    end = base64.b64encode(f"cursor:{ids[-1]}".encode()).decode() if ids else None
    return {"workspaces": {"nodes": nodes, "pageInfo": {"hasNextPage": more, "endCursor": end}}}


def create_floor_app(dsn: str, pool_size: int) -> Starlette:
    state: dict[str, asyncpg.Pool] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state["pool"] = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
        try:
            yield
        finally:
            await state["pool"].close()

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def dashboard(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        parts = token.split("_", 2)
        if len(parts) != 3:
            return _error(401, "unauthenticated")
        try:
            first = int(request.query_params.get("first", "20"))
            after_cursor = request.query_params.get("after")
            after = int(base64.b64decode(after_cursor).decode().split(":", 1)[1]) if after_cursor else 0
        except ValueError:
            return _error(400, "bad page")
        if not 0 < first <= MAX_PAGE:
            return _error(400, "bad page size")
        async with state["pool"].acquire() as conn, conn.transaction(readonly=True):
            key = await conn.fetchrow(AUTH, parts[1])
            digest = hashlib.sha256(token.encode()).hexdigest()
            if key is None or key["revoked_at"] is not None or not hmac.compare_digest(key["key_hash"], digest):
                return _error(401, "unauthenticated")
            if key["is_platform"] or key["partner_id"] is None:
                return _error(403, "a partner's key is needed")
            body = await page(conn, key["partner_id"], first, after)
        return Response(orjson.dumps(body), media_type="application/json")

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/dashboard", dashboard)],
        lifespan=lifespan,
    )


def main() -> None:
    import uvicorn

    app = create_floor_app(os.environ["FLOOR_DATABASE_URL"], int(os.environ.get("FLOOR_POOL", "8")))
    # The same server settings as `whitebill serve`.
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ["PORT"]),
        log_config=None,
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,  # the load generator's connections wait through the other turns
    )


if __name__ == "__main__":
    main()
