"""Wallets, their ledger entries, expiring credits and automatic top-ups."""

from __future__ import annotations

from datetime import datetime

import strawberry
import strawberry.scalars
from strawberry.types import Info

from billing.accounts import expiry, statements
from billing.core import tenancy
from models import enums
from models import wallets as wallet_models
from schema.amounts import Money, Quantity
from schema.catalog.types import CreditPackage
from schema.context import Context
from schema.ids import decode_cursor, to_global_id
from schema.relay import Connection, Node, connection_of, page_size, paginate

LedgerCause = strawberry.enum(enums.LedgerCause)
ExternalAccount = strawberry.enum(
    enums.ExternalAccount, description="The other side of an entry when it is not a wallet (it has no balance)."
)


OwnerKind = strawberry.enum(enums.OwnerKind)


@strawberry.type
class Wallet(Node):
    db_id: strawberry.Private[int]
    owner_kind: OwnerKind
    unit: str
    balance: Quantity
    credit_limit: Quantity
    updated_at: datetime

    @classmethod
    def of(cls, row: wallet_models.Wallet) -> Wallet:
        return cls(
            id=strawberry.ID(to_global_id("Wallet", row.id)),
            db_id=row.id,
            owner_kind=row.owner_kind,
            unit=row.unit,
            balance=Quantity.of(row.balance, row.unit),
            credit_limit=Quantity.of(row.credit_limit, row.unit),
            updated_at=row.updated_at,
            low_balance_threshold=(
                Quantity.of(row.low_balance_threshold, row.unit) if row.low_balance_threshold is not None else None
            ),
        )

    low_balance_threshold: Quantity | None = strawberry.field(
        default=None, description="Below this, a wallet.low_balance notice is sent (once per crossing)."
    )

    @strawberry.field(description="Ledger entries of this wallet, oldest first; filter by cause and time.")
    async def entries(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        cause: LedgerCause | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Connection[LedgerEntry]:
        queryset = tenancy.ledger_entries(info.context.require_viewer(), with_descendants=True).filter(
            wallet_id=self.db_id
        )
        if cause is not None:
            queryset = queryset.filter(cause=cause)
        if since is not None:
            queryset = queryset.filter(created_at__gte=since)
        if until is not None:
            queryset = queryset.filter(created_at__lt=until)
        return await paginate(queryset.select_related("posting"), first=first, after=after, to_node=LedgerEntry.of)

    @strawberry.field(description="Credits that will expire, earliest first (spent before the rest).")
    async def expiring_credits(self, first: int | None = None, after: str | None = None) -> Connection[ExpiringCredit]:
        size = page_size(first)
        after_lot = decode_cursor(after) if after is not None else None
        lots = await expiry.open_lots(self.db_id, after=after_lot, limit=size + 1) if size else []
        page = lots[:size]
        return connection_of(
            [ExpiringCredit.of(lot, self.unit) for lot in page],
            [lot.id for lot in page],
            has_next=len(lots) > size,
            has_previous=after is not None,
        )

    @strawberry.field(description="Buy a package when the balance falls below a threshold (null: not set up).")
    async def auto_top_up(self) -> AutoTopUp | None:
        rule = await wallet_models.AutoTopUp.get_or_none(wallet_id=self.db_id).prefetch_related("package")
        return AutoTopUp.of(rule) if rule else None


@strawberry.type(description="Credit granted or bought with an expiry, and what is left of it.")
class ExpiringCredit:
    amount: Quantity
    remaining: Quantity
    expires_at: datetime | None

    @classmethod
    def of(cls, lot: wallet_models.CreditLot, unit: str) -> ExpiringCredit:
        return cls(
            amount=Quantity.of(lot.amount, unit), remaining=Quantity.of(lot.remaining, unit), expires_at=lot.expires_at
        )


@strawberry.type(description="A wallet's automatic top-up: one in flight at a time, backing off after a decline.")
class AutoTopUp:
    package: CreditPackage
    threshold: Quantity
    enabled: bool
    in_flight: bool
    failures: int
    retry_after: datetime | None

    @classmethod
    def of(cls, row: wallet_models.AutoTopUp) -> AutoTopUp:
        return cls(
            package=CreditPackage.of(row.package),
            threshold=Quantity.of(row.threshold, row.package.unit),
            enabled=row.enabled,
            in_flight=row.in_flight_payment_id is not None,
            failures=row.failures,
            retry_after=row.retry_after,
        )


@strawberry.type(description="One immutable movement on a wallet; amount is signed (debits are negative).")
class LedgerEntry(Node):
    amount: Quantity
    balance_after: Quantity
    cause: LedgerCause
    note: str
    actor: str | None
    caused_by: strawberry.ID | None = strawberry.field(
        description="The global id of what caused the entry: a Payment, a SubscriptionPeriod, a CreditLot, a"
        " UsageReport..."
    )
    counter_account: ExternalAccount | None = strawberry.field(
        description="The other side when it is not a wallet (a payment's gateway, revenue, issuance, expiry)."
    )
    posting_id: strawberry.ID = strawberry.field(
        description="The entries written together (a transfer's two sides) share it."
    )
    created_at: datetime

    @classmethod
    def of(cls, row: wallet_models.LedgerEntry) -> LedgerEntry:
        posting = row.posting
        return cls(
            id=strawberry.ID(to_global_id("LedgerEntry", row.id)),
            amount=Quantity.of(row.amount, row.unit),
            balance_after=Quantity.of(row.balance_after, row.unit),
            cause=row.cause,
            note=posting.note,
            actor=posting.actor,
            caused_by=(
                strawberry.ID(to_global_id(posting.caused_by_type, posting.caused_by_id))
                if posting.caused_by_type and posting.caused_by_id
                else None
            ),
            counter_account=enums.ExternalAccount(row.counter_account) if row.counter_account else None,
            posting_id=strawberry.ID(to_global_id("Posting", row.posting_id)),
            created_at=row.created_at,
        )


StatementDirection = strawberry.enum(
    enums.StatementDirection, description="Whether a statement line put money into the balance or took it out."
)


@strawberry.type(description="The month's ledger entries of one cause and direction, added up.")
class StatementLine:
    cause: LedgerCause
    direction: StatementDirection
    amount: Money = strawberry.field(description="Signed: what these entries added to the balance (negative: took).")
    entry_count: int
    statement: strawberry.Private[statements.Statement]
    line: strawberry.Private[statements.Line]

    @strawberry.field(description="The ledger entries this line adds up, oldest first.")
    async def entries(self, first: int | None = None, after: str | None = None) -> Connection[LedgerEntry]:
        rows = statements.line_entries(self.statement, self.line).select_related("posting")
        return await paginate(rows, first=first, after=after, to_node=LedgerEntry.of)


@strawberry.type(description="What the partner's clients paid it through its own gateway, in one currency.")
class ClientMoney:
    paid: Money
    payments: int
    refunded: Money
    refunds: int


@strawberry.type(description="A partner's month: how its centralised balance moved, and what its clients paid it.")
class PartnerStatement:
    partner_id: strawberry.ID
    month: str
    currency: str
    opening_balance: Money = strawberry.field(description="At the start of the month (UTC).")
    closing_balance: Money = strawberry.field(description="At its end.")
    movement: Money = strawberry.field(description="The lines added up.")
    reconciled: bool = strawberry.field(description="Opening balance plus the lines is the closing balance.")
    lines: list[StatementLine]
    client_money: list[ClientMoney] = strawberry.field(description="One per currency clients paid in.")

    @classmethod
    def of(cls, statement: statements.Statement) -> PartnerStatement:
        money = statement.currency
        return cls(
            partner_id=strawberry.ID(to_global_id("Partner", statement.partner_id)),
            month=statement.month,
            currency=money,
            opening_balance=Money.of(statement.opening, money),
            closing_balance=Money.of(statement.closing, money),
            movement=Money.of(statement.movement, money),
            reconciled=statement.reconciled,
            lines=[
                StatementLine(
                    cause=line.cause,
                    direction=enums.StatementDirection.CREDIT if line.credit else enums.StatementDirection.DEBIT,
                    amount=Money.of(line.amount, money),
                    entry_count=line.entries,
                    statement=statement,
                    line=line,
                )
                for line in statement.lines
            ],
            client_money=[
                ClientMoney(
                    paid=Money.of(c.paid, c.currency),
                    payments=c.payments,
                    refunded=Money.of(c.refunded, c.currency),
                    refunds=c.refunds,
                )
                for c in statement.client_money
            ],
        )
