"""Wallets: manual grants and debits, credit limits, transfers, automatic top-ups, low-balance notices."""

from __future__ import annotations

import strawberry

from resolvers.accounts import credit, wallets


@strawberry.type
class Mutation:
    grant_units: wallets.AdjustWorkspaceBalancePayload = strawberry.mutation(
        resolver=wallets.grant_units, description="Add units to a workspace's wallet by hand, with a note."
    )
    debit_units: wallets.AdjustWorkspaceBalancePayload = strawberry.mutation(
        resolver=wallets.debit_units, description="Take units from a workspace's wallet by hand, with a note."
    )
    grant_partner_balance: wallets.AdjustWorkspaceBalancePayload = strawberry.mutation(
        resolver=wallets.grant_partner_balance,
        description="The platform funds a partner's centralised balance by hand, with a note.",
    )
    set_wallet_credit_limit: wallets.SetWalletCreditLimitPayload = strawberry.mutation(
        resolver=wallets.set_wallet_credit_limit
    )
    set_auto_top_up: credit.WalletPayload = strawberry.mutation(resolver=credit.set_auto_top_up)
    set_low_balance_threshold: credit.WalletPayload = strawberry.mutation(resolver=credit.set_low_balance_threshold)
    top_up_wallet: credit.TopUpWalletPayload = strawberry.mutation(
        resolver=credit.top_up_wallet, description="Buy a package for a wallet now; retried keys credit once."
    )
    transfer_units: credit.TransferUnitsPayload = strawberry.mutation(resolver=credit.transfer_units)
