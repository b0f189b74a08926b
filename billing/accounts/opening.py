"""Opening wallets: one per owner (a workspace, a project, a partner, the platform) and unit, at zero,
on first use; and the wallet a setting names, by its id or as a workspace's wallet of a unit (a new
workspace has no wallets until something names one)."""

from __future__ import annotations

from billing.core import clock, sql, tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import check_unit
from billing.core.tenancy import Viewer
from models.enums import OwnerKind
from models.tenancy import Project, Workspace
from models.wallets import Wallet


def wallet_owner_key(owner_kind: OwnerKind, owner_id: int | None) -> str:
    return f"{owner_kind.value}:{owner_id}" if owner_id is not None else owner_kind.value


async def open_wallet(*, partner_id: int | None, owner_kind: OwnerKind, owner_id: int | None, unit: str) -> Wallet:
    """The owner's wallet of ``unit``, opened at zero if it does not exist yet (safe under concurrency)."""
    owner_key = wallet_owner_key(owner_kind, owner_id)
    await sql.execute(
        "INSERT INTO wallet (created_at, updated_at, partner_id, owner_kind, workspace_id, project_id, owner_key,"
        " unit, balance, credit_limit, usage_remainder, low_balance_notified)"
        " VALUES ($1, $1, $2, $3, $4, $5, $6, $7, 0, 0, 0, FALSE)"
        " ON CONFLICT (owner_key, unit) DO NOTHING",
        clock.now(),
        partner_id,
        owner_kind.value,
        owner_id if owner_kind is OwnerKind.WORKSPACE else None,
        owner_id if owner_kind is OwnerKind.PROJECT else None,
        owner_key,
        unit,
    )
    return await Wallet.get(owner_key=owner_key, unit=unit)


async def workspace_wallet(workspace: Workspace, unit: str) -> Wallet:
    return await open_wallet(
        partner_id=workspace.partner_id, owner_kind=OwnerKind.WORKSPACE, owner_id=workspace.id, unit=unit
    )


async def project_wallet(project: Project, unit: str) -> Wallet:
    return await open_wallet(
        partner_id=project.partner_id, owner_kind=OwnerKind.PROJECT, owner_id=project.id, unit=unit
    )


async def named_wallet(
    viewer: Viewer, *, wallet_id: int | None = None, workspace_id: int | None = None, unit: str | None = None
) -> Wallet:
    """The wallet a setting names, as ``viewer`` may see it: by its id, or as a workspace's wallet of
    ``unit``, opened if the workspace has none of that unit yet."""
    if (wallet_id is None) == (workspace_id is None):
        raise BillingError(
            ErrorCode.INVALID_INPUT, "name the wallet by walletId, or by workspaceId and unit", field="walletId"
        )
    if wallet_id is not None:
        return await tenancy.get_scoped(tenancy.wallets(viewer), wallet_id, "wallet")
    if unit is None:
        raise BillingError(ErrorCode.INVALID_INPUT, "name the unit of the workspace's wallet", field="unit")
    unit = check_unit(unit)
    workspace = await tenancy.get_scoped(tenancy.workspaces(viewer), workspace_id, "workspace")  # type: ignore[arg-type]
    return await workspace_wallet(workspace, unit)
