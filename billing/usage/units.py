"""Units consumed: the platform's product reports what a workspace used (conversations, messages...),
and it leaves the workspace's wallet. Not to be confused with a plan's limits (members, chatbots:
billing.subscriptions.limits) or with WhatsApp message events priced by rate card (billing.usage.whatsapp)."""

from __future__ import annotations

from billing.accounts.ledger import CausedBy
from billing.accounts.opening import workspace_wallet
from billing.accounts.wallets import check_note, spend
from billing.auto_billing import engine
from billing.core import idempotency, tenancy
from billing.core.money import check_amount, check_unit
from billing.core.tenancy import Viewer
from billing.subscriptions import workspace_status
from models.enums import LedgerCause, Permission


async def consume_units(
    viewer: Viewer, *, workspace_id: int, unit: str, amount: int, event_id: str, note: str = ""
) -> int:
    """The platform's product reports units used (conversations, messages...): they leave the
    workspace's wallet, its earliest-expiring credits first (a plan's allowance before extras). The
    event id makes a repeated report a no-op (it answers the first result whatever the workspace's
    status since). Like any workspace operation that is neither billing nor subscription, a new report
    is refused without a plan (PLAN_REQUIRED), with a renewal overdue past the partner's restriction
    (PAYMENT_REQUIRED) or while the workspace is paused (WORKSPACE_PAUSED). Returns the balance after
    this event."""
    viewer.require(Permission.REPORT_USAGE)
    workspace = await tenancy.get_scoped(tenancy.workspaces(viewer), workspace_id, "workspace")
    unit = check_unit(unit)
    check_amount(amount)
    note = check_note(note)

    async def act() -> int:
        workspace_status.require_usage_may_grow(workspace)
        wallet = await workspace_wallet(workspace, unit)

        async def use() -> int:
            return await spend(
                wallet.id,
                amount,
                cause=LedgerCause.USAGE,
                caused_by=CausedBy("UsageReport", event_id[:64]),
                note=note,
                actor=viewer.actor,
            )

        # Too few credits: the workspace's auto-billing (if any) accepts it within its overdraft.
        return await engine.spend_within_overdraft(wallet, use)

    return await idempotency.run_once(
        scope=viewer.scope,
        operation="units.consume",
        key=event_id,
        request={"workspace": workspace_id, "unit": unit, "amount": amount},
        action=act,
        encode=int,
        decode=int,
    )
