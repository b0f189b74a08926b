"""Changing wallets: manual grants and debits, the partner's balance funded by hand, credit limits,
automatic top-ups, low-balance notices, top-ups bought now, transfers between a pool and a workspace."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from billing.accounts import top_ups, wallets
from billing.core import money
from billing.core.money import Money as DomainMoney
from billing.core.money import to_minor
from billing.sales import checkout
from models.enums import Permission
from models.wallets import Wallet as WalletRow
from schema.accounts.types import Wallet
from schema.amounts import Quantity
from schema.auth import viewer_with
from schema.context import Context
from schema.errors import UserError
from schema.ids import expect_id
from schema.mutations import mutation
from schema.sales.types import Payment

# --- grants and debits by hand ------------------------------------------------------------------------


@strawberry.input(description="Add units to (grant) or take them from (debit) a workspace's wallet by hand.")
class AdjustWorkspaceBalanceInput:
    workspace_id: strawberry.ID
    unit: str = strawberry.field(description="POINTS, MESSAGE_CREDITS, SEATS, CONVERSATIONS or a currency code.")
    amount: str = strawberry.field(description='A positive decimal string, e.g. "500" or "49.90".')
    note: str = ""
    idempotency_key: str
    expires_at: datetime | None = strawberry.field(
        default=None, description="Granted units expire then (spent before units that do not)."
    )


async def _adjusted_wallet(root: strawberry.Parent[AdjustWorkspaceBalancePayload]) -> Wallet | None:
    # Read only when asked for: a client that wants just the errors costs no second statement.
    if root.adjustment is None:
        return None
    row = await WalletRow.get(id=root.adjustment.wallet_id)
    wallet = Wallet.of(row)
    # The balance right after this adjustment: a replay answers what the first call answered.
    wallet.balance = Quantity.of(root.adjustment.balance, row.unit)
    return wallet


@strawberry.type
class AdjustWorkspaceBalancePayload:
    wallet: Wallet | None = strawberry.field(resolver=_adjusted_wallet)
    errors: list[UserError] = strawberry.field(default_factory=list)
    adjustment: strawberry.Private[wallets.Adjustment | None] = None


async def _adjust(
    info: Info[Context, None], input: AdjustWorkspaceBalanceInput, *, debit: bool
) -> AdjustWorkspaceBalancePayload:
    workspace_id = expect_id(input.workspace_id, "Workspace", "workspaceId")
    unit = money.check_unit(input.unit)
    adjustment = await wallets.adjust_workspace_balance(
        viewer_with(info),
        workspace_id=workspace_id,
        unit=unit,
        amount=to_minor(input.amount, unit),
        note=input.note,
        idempotency_key=input.idempotency_key,
        debit=debit,
        expires_at=input.expires_at,
    )
    return AdjustWorkspaceBalancePayload(adjustment=adjustment)


@strawberry.input(description="The platform funds a partner's centralised balance by hand.")
class GrantPartnerBalanceInput:
    partner_id: strawberry.ID
    amount: str = strawberry.field(description='A positive decimal string, e.g. "1500.00".')
    currency: str
    note: str = ""
    idempotency_key: str


# --- wallet settings ----------------------------------------------------------------------------------


def _wallet_named(input: SetWalletCreditLimitInput | SetAutoTopUpInput | SetLowBalanceThresholdInput) -> dict:
    """The wallet a setting names, as the services take it: by id, or a workspace's of a unit."""
    return {
        "wallet_id": expect_id(input.wallet_id, "Wallet", "walletId") if input.wallet_id else None,
        "workspace_id": expect_id(input.workspace_id, "Workspace", "workspaceId") if input.workspace_id else None,
        "unit": input.unit,
    }


@strawberry.type
class WalletPayload:
    wallet: Wallet | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="How far below zero a wallet may go; name it by walletId, or by workspaceId and unit.")
class SetWalletCreditLimitInput:
    credit_limit: str
    wallet_id: strawberry.ID | None = strawberry.field(default=None, description="The wallet; or name it by:")
    workspace_id: strawberry.ID | None = strawberry.field(
        default=None, description="A workspace, with unit: its wallet of that unit, opened if it has none yet."
    )
    unit: str | None = None


@strawberry.type
class SetWalletCreditLimitPayload:
    wallet: Wallet | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(
    description="Buy packageId for the wallet whenever its balance falls below threshold; name the wallet by"
    " walletId, or by workspaceId and unit."
)
class SetAutoTopUpInput:
    package_id: strawberry.ID
    threshold: str = strawberry.field(description='In the wallet\'s unit, e.g. "100".')
    enabled: bool = True
    wallet_id: strawberry.ID | None = strawberry.field(default=None, description="The wallet; or name it by:")
    workspace_id: strawberry.ID | None = strawberry.field(
        default=None, description="A workspace, with unit: its wallet of that unit, opened if it has none yet."
    )
    unit: str | None = None


@strawberry.input(
    description="Send a wallet.low_balance notice when the wallet's balance falls below threshold; name the wallet"
    " by walletId, or by workspaceId and unit."
)
class SetLowBalanceThresholdInput:
    threshold: str | None = strawberry.field(
        default=None, description='In the wallet\'s unit, e.g. "100"; null clears it (no notices).'
    )
    wallet_id: strawberry.ID | None = strawberry.field(default=None, description="The wallet; or name it by:")
    workspace_id: strawberry.ID | None = strawberry.field(
        default=None, description="A workspace, with unit: its wallet of that unit, opened if it has none yet."
    )
    unit: str | None = None


# --- buying and moving units --------------------------------------------------------------------------


@strawberry.input(description="Buy a package for a workspace's wallet now, with the card on file (or by hand).")
class TopUpWalletInput:
    wallet_id: strawberry.ID
    package_id: strawberry.ID
    idempotency_key: str


@strawberry.type
class TopUpWalletPayload:
    payment: Payment | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


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


@strawberry.type
class Mutation:
    @mutation(
        permission=Permission.MANAGE_BILLING, description="Add units to a workspace's wallet by hand, with a note."
    )
    async def grant_units(
        self, info: Info[Context, None], input: AdjustWorkspaceBalanceInput
    ) -> AdjustWorkspaceBalancePayload:
        return await _adjust(info, input, debit=False)

    @mutation(
        permission=Permission.MANAGE_BILLING, description="Take units from a workspace's wallet by hand, with a note."
    )
    async def debit_units(
        self, info: Info[Context, None], input: AdjustWorkspaceBalanceInput
    ) -> AdjustWorkspaceBalancePayload:
        return await _adjust(info, input, debit=True)

    @mutation(
        description="Funds a partner's centralised balance by hand, with a note: the platform its direct partners"
        " (MANAGE_PARTNERS), a partner those directly below it, whose balance is with it (MANAGE_SUB_PARTNERS).",
    )
    async def grant_partner_balance(
        self, info: Info[Context, None], input: GrantPartnerBalanceInput
    ) -> AdjustWorkspaceBalancePayload:
        amount = DomainMoney.parse(input.amount, input.currency)
        adjustment = await wallets.grant_partner_balance(
            viewer_with(info),
            partner_id=expect_id(input.partner_id, "Partner", "partnerId"),
            currency=amount.currency,
            amount=amount.amount,
            note=input.note,
            idempotency_key=input.idempotency_key,
        )
        return AdjustWorkspaceBalancePayload(adjustment=adjustment)

    @mutation(permission=Permission.MANAGE_BILLING)
    async def set_wallet_credit_limit(
        self, info: Info[Context, None], input: SetWalletCreditLimitInput
    ) -> SetWalletCreditLimitPayload:
        row = await wallets.set_credit_limit(
            viewer_with(info),
            credit_limit=input.credit_limit,
            **_wallet_named(input),
        )
        return SetWalletCreditLimitPayload(wallet=Wallet.of(row))

    @mutation()  # a workspace sets up its own; a partner needs MANAGE_BILLING: the service decides
    async def set_auto_top_up(self, info: Info[Context, None], input: SetAutoTopUpInput) -> WalletPayload:
        rule = await top_ups.configure(
            viewer_with(info),
            **_wallet_named(input),
            package_id=expect_id(input.package_id, "CreditPackage", "packageId"),
            threshold=input.threshold,
            enabled=input.enabled,
        )
        return WalletPayload(wallet=Wallet.of(await WalletRow.get(id=rule.wallet_id)))

    @mutation()  # a workspace sets its own; a partner needs MANAGE_BILLING: the service decides
    async def set_low_balance_threshold(
        self, info: Info[Context, None], input: SetLowBalanceThresholdInput
    ) -> WalletPayload:
        row = await top_ups.set_low_balance_threshold(
            viewer_with(info),
            **_wallet_named(input),
            threshold=input.threshold,
        )
        return WalletPayload(wallet=Wallet.of(row))

    @mutation(
        description="Buy a package for a wallet now; retried keys credit once.", fields={"creditPackageId": "packageId"}
    )
    async def top_up_wallet(self, info: Info[Context, None], input: TopUpWalletInput) -> TopUpWalletPayload:
        made = await checkout.top_up_wallet(
            viewer_with(info),
            wallet_id=expect_id(input.wallet_id, "Wallet", "walletId"),
            package_id=expect_id(input.package_id, "CreditPackage", "packageId"),
            idempotency_key=input.idempotency_key,
        )
        return TopUpWalletPayload(payment=Payment.of(made.payment) if made.payment else None)

    @mutation(permission=Permission.MANAGE_BILLING)
    async def transfer_units(self, info: Info[Context, None], input: TransferUnitsInput) -> TransferUnitsPayload:
        unit = money.check_unit(input.unit)
        made = await wallets.transfer_units(
            viewer_with(info),
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
