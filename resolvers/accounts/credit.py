"""Credit billing and balances: add-ons paid in points, auto top-up, top-ups, low-balance notices,
transfers between a partner's pool and its workspaces (flows B and E)."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from billing.accounts import top_ups, wallets
from billing.core import money, tenancy
from billing.core.money import to_minor
from billing.sales import checkout
from billing.subscriptions import credit_billing
from billing.usage import units
from models.enums import Permission
from models.tenancy import Workspace as WorkspaceRow
from models.wallets import Wallet as WalletRow
from schema.accounts.types import Wallet
from schema.amounts import Quantity
from schema.auth import target_partner, viewer_with
from schema.context import Context
from schema.errors import UserError, payload
from schema.ids import expect_id
from schema.sales.types import Payment
from schema.tenants.types import Partner, Workspace


@strawberry.type
class SetCreditBillingPayload:
    partner: Partner | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def set_credit_billing(
    info: Info[Context, None], enabled: bool, partner_id: strawberry.ID | None = None
) -> SetCreditBillingPayload:
    async def run() -> SetCreditBillingPayload:
        viewer = viewer_with(info, Permission.MANAGE_BILLING)
        row = await credit_billing.set_credit_billing(
            viewer, partner_id=target_partner(viewer, partner_id), enabled=enabled
        )
        return SetCreditBillingPayload(partner=Partner.of(row))

    return await payload(run, lambda errors: SetCreditBillingPayload(errors=errors))


@strawberry.input(description="Activate an add-on, or add units to it, paying its points for this period.")
class BuyAddOnWithPointsInput:
    workspace_id: strawberry.ID
    add_on_id: strawberry.ID
    idempotency_key: str
    quantity: int = 1


@strawberry.type
class AddOnWithPointsPayload:
    workspace: Workspace | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def buy_add_on_with_points(info: Info[Context, None], input: BuyAddOnWithPointsInput) -> AddOnWithPointsPayload:
    async def run() -> AddOnWithPointsPayload:
        row = await credit_billing.buy_add_on_with_points(
            viewer_with(info),
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            add_on_id=expect_id(input.add_on_id, "AddOn", "addOnId"),
            quantity=input.quantity,
            idempotency_key=input.idempotency_key,
        )
        return AddOnWithPointsPayload(workspace=Workspace.of(await WorkspaceRow.get(id=row.workspace_id)))

    return await payload(run, lambda errors: AddOnWithPointsPayload(errors=errors))


@strawberry.type
class WalletPayload:
    wallet: Wallet | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="Buy packageId for the wallet whenever its balance falls below threshold.")
class SetAutoTopUpInput:
    wallet_id: strawberry.ID
    package_id: strawberry.ID
    threshold: str = strawberry.field(description='In the wallet\'s unit, e.g. "100".')
    enabled: bool = True


async def set_auto_top_up(info: Info[Context, None], input: SetAutoTopUpInput) -> WalletPayload:
    async def run() -> WalletPayload:
        viewer = viewer_with(info)
        wallet_id = expect_id(input.wallet_id, "Wallet", "walletId")
        unit = (await tenancy.get_scoped(tenancy.wallets(viewer), wallet_id, "wallet")).unit
        rule = await top_ups.configure(
            viewer,
            wallet_id=wallet_id,
            package_id=expect_id(input.package_id, "CreditPackage", "packageId"),
            threshold=to_minor(input.threshold, unit, field="threshold"),
            enabled=input.enabled,
        )
        return WalletPayload(wallet=Wallet.of(await WalletRow.get(id=rule.wallet_id)))

    return await payload(run, lambda errors: WalletPayload(errors=errors))


async def set_low_balance_threshold(
    info: Info[Context, None], wallet_id: strawberry.ID, threshold: str | None = None
) -> WalletPayload:
    async def run() -> WalletPayload:
        viewer = viewer_with(info)
        db_id = expect_id(wallet_id, "Wallet", "walletId")
        unit = (await tenancy.get_scoped(tenancy.wallets(viewer), db_id, "wallet")).unit
        row = await top_ups.set_low_balance_threshold(
            viewer,
            wallet_id=db_id,
            threshold=to_minor(threshold, unit, field="threshold") if threshold is not None else None,
        )
        return WalletPayload(wallet=Wallet.of(row))

    return await payload(run, lambda errors: WalletPayload(errors=errors))


@strawberry.input(description="Buy a package for a workspace's wallet now, with the card on file (or by hand).")
class TopUpWalletInput:
    wallet_id: strawberry.ID
    package_id: strawberry.ID
    idempotency_key: str


@strawberry.type
class TopUpWalletPayload:
    payment: Payment | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def top_up_wallet(info: Info[Context, None], input: TopUpWalletInput) -> TopUpWalletPayload:
    async def run() -> TopUpWalletPayload:
        made = await checkout.top_up_wallet(
            viewer_with(info),
            wallet_id=expect_id(input.wallet_id, "Wallet", "walletId"),
            package_id=expect_id(input.package_id, "CreditPackage", "packageId"),
            idempotency_key=input.idempotency_key,
        )
        return TopUpWalletPayload(payment=Payment.of(made.payment) if made.payment else None)

    return await payload(run, lambda errors: TopUpWalletPayload(errors=errors))


@strawberry.input(description="Move units between the partner's pool and one of its workspaces.")
class TransferUnitsInput:
    workspace_id: strawberry.ID
    unit: str
    amount: str
    to_workspace: bool = strawberry.field(description="true: pool → workspace; false: workspace → pool.")
    idempotency_key: str
    note: str = ""


@strawberry.type
class TransferUnitsPayload:
    pool: Wallet | None = None
    workspace_wallet: Wallet | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def transfer_units(info: Info[Context, None], input: TransferUnitsInput) -> TransferUnitsPayload:
    async def run() -> TransferUnitsPayload:
        viewer = viewer_with(info, Permission.MANAGE_BILLING)
        unit = money.check_unit(input.unit)
        made = await wallets.transfer_units(
            viewer,
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            unit=unit,
            amount=to_minor(input.amount, unit),
            to_workspace=input.to_workspace,
            note=input.note,
            idempotency_key=input.idempotency_key,
        )
        return TransferUnitsPayload(
            pool=Wallet.of(await WalletRow.get(id=made.pool_wallet_id)),
            workspace_wallet=Wallet.of(await WalletRow.get(id=made.workspace_wallet_id)),
        )

    return await payload(run, lambda errors: TransferUnitsPayload(errors=errors))


@strawberry.input(
    description="Units used by a workspace (conversations, messages), reported by the platform's product."
)
class ConsumeUnitsInput:
    workspace_id: strawberry.ID
    unit: str
    amount: str
    event_id: str = strawberry.field(description="Unique per report: a repeated report changes nothing.")
    note: str = ""


@strawberry.type
class ConsumeUnitsPayload:
    balance: Quantity | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def consume_units(info: Info[Context, None], input: ConsumeUnitsInput) -> ConsumeUnitsPayload:
    async def run() -> ConsumeUnitsPayload:
        viewer = viewer_with(info, Permission.REPORT_USAGE)
        unit = money.check_unit(input.unit)
        balance = await units.consume_units(
            viewer,
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            unit=unit,
            amount=to_minor(input.amount, unit),
            event_id=input.event_id,
            note=input.note,
        )
        return ConsumeUnitsPayload(balance=Quantity.of(balance, unit))

    return await payload(run, lambda errors: ConsumeUnitsPayload(errors=errors))
