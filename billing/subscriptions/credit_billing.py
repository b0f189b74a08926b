"""Credit billing (flow B, UChat): clients buy points, and add-ons cost points per period.

With the partner's credit billing on, a workspace activates or extends an add-on by spending its
``points_cost`` per unit from its POINTS wallet; the add-on is paid through ``paid_through``. At that
time the worker spends the points again for the next period. If the wallet is short, the wallet's
auto top-up (when on) buys its package first; if it is still short, the add-on lapses and the
workspace's status is recomputed (it pauses if its usage no longer fits the reduced limits).

Each period is paid once: the roll of ``paid_through`` is a conditional update in the transaction
that spends the points, so any number of workers can run it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from tortoise.transactions import in_transaction

from billing.accounts import opening, top_ups, wallets
from billing.accounts.ledger import CausedBy
from billing.core import audit, clock, idempotency, sql, tenancy, work
from billing.core.errors import BillingError, ErrorCode
from billing.core.periods import period_end
from billing.core.tenancy import Viewer
from billing.subscriptions import workspace_status
from models.catalog import AddOn
from models.enums import BillingInterval, LedgerCause, Permission, PlanStatus
from models.subscriptions import WorkspaceAddOn
from models.tenancy import Partner, Workspace
from models.wallets import Wallet

log = logging.getLogger("whitebill.credit_billing")
POINTS = "POINTS"
MAX_QUANTITY = 1000
_DUE = (
    "SELECT id, paid_through FROM workspace_add_on WHERE active AND paid_through IS NOT NULL "
    "AND paid_through <= $1 ORDER BY paid_through, id LIMIT $2"
)


async def set_credit_billing(viewer: Viewer, *, partner_id: int, enabled: bool) -> Partner:
    """Turn credit billing on or off for a partner's clients (a partner setting)."""
    viewer.require(Permission.MANAGE_BILLING)
    partner = await tenancy.get_scoped(tenancy.partners(viewer), partner_id, "partner")
    before = partner.credit_billing_enabled
    partner.credit_billing_enabled = enabled
    await partner.save(update_fields=["credit_billing_enabled"])
    await audit.record(
        actor=viewer.actor,
        action="credit_billing.set",
        target_type="Partner",
        target_id=partner.id,
        partner_id=partner.id,
        before={"enabled": before},
        after={"enabled": enabled},
    )
    return partner


def _next_period(start: datetime) -> datetime:
    return period_end(start, BillingInterval.MONTHLY, start.day)


async def _spend_points(wallet: Wallet, amount: int, row_id: int, note: str, actor: str | None = None) -> None:
    await wallets.spend(
        wallet.id,
        amount,
        cause=LedgerCause.ADD_ON,
        caused_by=CausedBy("WorkspaceAddOn", str(row_id)),
        note=note,
        actor=actor,
    )


async def buy_add_on_with_points(
    viewer: Viewer, *, workspace_id: int, add_on_id: int, quantity: int, idempotency_key: str
) -> WorkspaceAddOn:
    """Activate an add-on, or add units to an active one, paying its points for the current period."""
    if viewer.kind != "WORKSPACE":
        viewer.require(Permission.MANAGE_BILLING)
    workspace = await tenancy.get_scoped(tenancy.workspaces(viewer), workspace_id, "workspace")
    partner = await Partner.get(id=workspace.partner_id)
    if not partner.credit_billing_enabled:
        raise BillingError(ErrorCode.CREDIT_BILLING_OFF, "this partner does not sell add-ons for points")
    if not 1 <= quantity <= MAX_QUANTITY:
        raise BillingError(ErrorCode.INVALID_INPUT, f"quantity is 1 to {MAX_QUANTITY}", field="quantity")
    add_on = await AddOn.get_or_none(id=add_on_id, partner_id=workspace.partner_id)
    if add_on is None or add_on.status is not PlanStatus.ACTIVE or not add_on.points_cost:
        raise BillingError(ErrorCode.NOT_FOUND, "no add-on of that id is sold for points", field="addOnId")
    workspace_status.require_operational(workspace)
    cost = add_on.points_cost * quantity

    async def act() -> int:
        wallet = await opening.workspace_wallet(workspace, POINTS)
        row, _ = await WorkspaceAddOn.get_or_create(
            workspace_id=workspace.id,
            add_on_id=add_on.id,
            defaults={"partner_id": workspace.partner_id, "quantity": 0, "active": False},
        )
        live = row.active and row.paid_through is not None and row.paid_through > clock.now()
        await _spend_points(wallet, cost, row.id, f"{add_on.name} x{quantity}", actor=viewer.actor)
        row.quantity = (row.quantity if live else 0) + quantity
        row.active, row.lapsed_at = True, None
        if not live:
            row.paid_through = _next_period(clock.now())
        await row.save(update_fields=["quantity", "active", "paid_through", "lapsed_at"])
        await workspace_status.recompute(workspace.id)
        await audit.record(
            actor=viewer.actor,
            action="add_on.points",
            target_type="Workspace",
            target_id=workspace.id,
            partner_id=workspace.partner_id,
            after={
                "add_on_id": audit.global_id("AddOn", add_on.id),
                "quantity": row.quantity,
                "points": audit.quantity(cost, POINTS),
            },
        )
        return int(row.id)

    row_id = await idempotency.run_once(
        scope=viewer.scope,
        operation="add_on.points",
        key=idempotency_key,
        request={"workspace": workspace_id, "add_on": add_on_id, "quantity": quantity},
        action=act,
        encode=int,
        decode=int,
    )
    return await WorkspaceAddOn.get(id=row_id)


async def _roll(row: WorkspaceAddOn, due: datetime, cost: int, name: str) -> bool:
    """Spend the next period's points and move ``paid_through`` on, together; False if short."""
    wallet = await opening.workspace_wallet(await Workspace.get(id=row.workspace_id), POINTS)
    try:
        async with in_transaction("default"):
            moved = await sql.execute(
                "UPDATE workspace_add_on SET paid_through = $1 WHERE id = $2 AND paid_through = $3 AND active",
                _next_period(due),
                row.id,
                due,
            )
            if moved == 1:  # else another worker renewed it
                await _spend_points(wallet, cost, row.id, f"{name} x{row.quantity}, renewal")
    except BillingError as error:
        if error.code is not ErrorCode.INSUFFICIENT_BALANCE:
            raise
        return False
    return True


async def renew(row: WorkspaceAddOn) -> bool:
    """Renew one add-on whose paid period is over: True if renewed, False if it lapsed."""
    due = row.paid_through
    assert due is not None
    add_on = await AddOn.get(id=row.add_on_id)
    cost = (add_on.points_cost or 0) * row.quantity
    partner = await Partner.get(id=row.partner_id)
    if partner.credit_billing_enabled and cost > 0:
        if await _roll(row, due, cost, add_on.name):
            return True
        wallet = await opening.workspace_wallet(await Workspace.get(id=row.workspace_id), POINTS)
        if await top_ups.top_up_now(wallet.id) and await _roll(row, due, cost, add_on.name):
            return True
    # The lapse, its event and the status it leaves commit together: a worker stopped half-way leaves
    # the add-on active and due, and the retried job lapses it whole.
    async with in_transaction("default"):
        lapsed = await sql.execute(
            "UPDATE workspace_add_on SET active = FALSE, quantity = 0, lapsed_at = $3"
            " WHERE id = $1 AND paid_through = $2 AND active",
            row.id,
            due,
            clock.now(),
        )
        if lapsed == 1:
            await audit.emit(
                "add_on.lapsed",
                row.partner_id,
                {"workspace_id": row.workspace_id, "add_on_id": row.add_on_id, "points_needed": cost},
            )
            await workspace_status.recompute(row.workspace_id)
    return False


RENEW_JOB = "add_on.renew"


async def renew_job(job: dict[str, Any]) -> dict[str, Any]:
    row = await WorkspaceAddOn.get(id=int(job["workspace_add_on_id"]))
    if not row.active or row.paid_through is None or row.paid_through.isoformat() != job["due"]:
        return {"skipped": "already renewed or lapsed"}
    return {"renewed": await renew(row)}


async def run_due(*, limit: int = 50) -> int:
    """Queue the renewal of every add-on whose paid period is over, once per period (a job's lease
    gives each to one worker); returns how many were queued."""
    queued = 0
    for found in await sql.fetch(_DUE, clock.now(), limit):
        row = await WorkspaceAddOn.get(id=int(found["id"]))
        if row.paid_through is None:
            continue
        due = row.paid_through.isoformat()
        if await work.schedule(
            RENEW_JOB, {"workspace_add_on_id": row.id, "due": due}, dedupe_key=f"add-on:{row.id}:{due}"
        ):
            queued += 1
    return queued
