"""Wallets: balances, their entries, manual grants and debits, manual purchases."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from billing.accounts import wallets
from billing.core import money, tenancy
from billing.core.money import Money as DomainMoney
from billing.core.money import to_minor
from billing.sales import purchases
from models.enums import LedgerCause as DomainLedgerCause
from models.enums import Permission
from models.payments import Payment as PaymentRow
from models.wallets import Wallet as WalletRow
from schema.accounts.types import LedgerEntry, Wallet
from schema.amounts import Quantity
from schema.auth import viewer_with
from schema.context import Context
from schema.errors import UserError, payload
from schema.ids import expect_id
from schema.relay import Connection, paginate
from schema.sales.types import Payment


async def wallet_entries(
    info: Info[Context, None],
    wallet_db_id: int,
    *,
    first: int | None,
    after: str | None,
    cause: DomainLedgerCause | None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Connection[LedgerEntry]:
    viewer = viewer_with(info)
    queryset = tenancy.ledger_entries(viewer).filter(wallet_id=wallet_db_id).select_related("posting")
    if cause is not None:
        queryset = queryset.filter(cause=cause)
    if since is not None:
        queryset = queryset.filter(created_at__gte=since)
    if until is not None:
        queryset = queryset.filter(created_at__lt=until)
    return await paginate(queryset, first=first, after=after, to_node=LedgerEntry.of)


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
    async def run() -> AdjustWorkspaceBalancePayload:
        viewer = viewer_with(info, Permission.MANAGE_BILLING)
        workspace_id = expect_id(input.workspace_id, "Workspace", "workspaceId")
        unit = money.check_unit(input.unit)
        adjustment = await wallets.adjust_workspace_balance(
            viewer,
            workspace_id=workspace_id,
            unit=unit,
            amount=to_minor(input.amount, unit),
            note=input.note,
            idempotency_key=input.idempotency_key,
            debit=debit,
            expires_at=input.expires_at,
        )
        return AdjustWorkspaceBalancePayload(adjustment=adjustment)

    return await payload(run, lambda errors: AdjustWorkspaceBalancePayload(errors=errors))


async def grant_units(info: Info[Context, None], input: AdjustWorkspaceBalanceInput) -> AdjustWorkspaceBalancePayload:
    return await _adjust(info, input, debit=False)


async def debit_units(info: Info[Context, None], input: AdjustWorkspaceBalanceInput) -> AdjustWorkspaceBalancePayload:
    return await _adjust(info, input, debit=True)


@strawberry.input(description="The partner collected a payment its own way; the workspace receives units.")
class RecordManualPurchaseInput:
    workspace_id: strawberry.ID
    unit: str
    quantity: str
    price_amount: str
    price_currency: str
    note: str = ""
    idempotency_key: str


@strawberry.type
class RecordManualPurchasePayload:
    payment: Payment | None = None
    wallet: Wallet | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def record_manual_purchase(
    info: Info[Context, None], input: RecordManualPurchaseInput
) -> RecordManualPurchasePayload:
    async def run() -> RecordManualPurchasePayload:
        viewer = viewer_with(info, Permission.MANAGE_BILLING)
        workspace_id = expect_id(input.workspace_id, "Workspace", "workspaceId")
        unit = money.check_unit(input.unit)
        purchase = await purchases.record_manual_purchase(
            viewer,
            workspace_id=workspace_id,
            unit=unit,
            quantity=to_minor(input.quantity, unit, field="quantity"),
            price=DomainMoney.parse(input.price_amount, input.price_currency, field="priceAmount"),
            note=input.note,
            idempotency_key=input.idempotency_key,
        )
        payment_row = await PaymentRow.get(id=purchase.payment_id)
        wallet_row = await WalletRow.get(id=purchase.wallet_id)
        return RecordManualPurchasePayload(payment=Payment.of(payment_row), wallet=Wallet.of(wallet_row))

    return await payload(run, lambda errors: RecordManualPurchasePayload(errors=errors))


@strawberry.input
class SetWalletCreditLimitInput:
    wallet_id: strawberry.ID
    credit_limit: str


@strawberry.type
class SetWalletCreditLimitPayload:
    wallet: Wallet | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def set_wallet_credit_limit(
    info: Info[Context, None], input: SetWalletCreditLimitInput
) -> SetWalletCreditLimitPayload:
    async def run() -> SetWalletCreditLimitPayload:
        viewer = viewer_with(info, Permission.MANAGE_BILLING)
        wallet_id = expect_id(input.wallet_id, "Wallet", "walletId")
        current = await tenancy.get_scoped(tenancy.wallets(viewer), wallet_id, "wallet")
        row = await wallets.set_credit_limit(
            viewer,
            wallet_id=wallet_id,
            credit_limit=to_minor(input.credit_limit, current.unit, field="creditLimit"),
        )
        return SetWalletCreditLimitPayload(wallet=Wallet.of(row))

    return await payload(run, lambda errors: SetWalletCreditLimitPayload(errors=errors))


@strawberry.input(description="The partner collected a pending manual payment its own way.")
class RecordPaymentInput:
    payment_id: strawberry.ID
    note: str = ""


@strawberry.type
class RecordPaymentPayload:
    payment: Payment | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def record_payment(info: Info[Context, None], input: RecordPaymentInput) -> RecordPaymentPayload:
    async def run() -> RecordPaymentPayload:
        row = await purchases.record_payment(
            viewer_with(info, Permission.MANAGE_BILLING),
            payment_id=expect_id(input.payment_id, "Payment", "paymentId"),
            note=input.note,
        )
        return RecordPaymentPayload(payment=Payment.of(row))

    return await payload(run, lambda errors: RecordPaymentPayload(errors=errors))


@strawberry.input(description="The platform funds a partner's centralised balance by hand.")
class GrantPartnerBalanceInput:
    partner_id: strawberry.ID
    amount: str = strawberry.field(description='A positive decimal string, e.g. "1500.00".')
    currency: str
    note: str = ""
    idempotency_key: str


async def grant_partner_balance(
    info: Info[Context, None], input: GrantPartnerBalanceInput
) -> AdjustWorkspaceBalancePayload:
    async def run() -> AdjustWorkspaceBalancePayload:
        money = DomainMoney.parse(input.amount, input.currency)
        adjustment = await wallets.grant_partner_balance(
            viewer_with(info, Permission.MANAGE_PARTNERS),
            partner_id=expect_id(input.partner_id, "Partner", "partnerId"),
            currency=money.currency,
            amount=money.amount,
            note=input.note,
            idempotency_key=input.idempotency_key,
        )
        return AdjustWorkspaceBalancePayload(adjustment=adjustment)

    return await payload(run, lambda errors: AdjustWorkspaceBalancePayload(errors=errors))
