"""GraphQL object types. Leaf fields are plain attributes copied from rows; only fields that need
I/O are async, and those go through the request's DataLoaders."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, TypeVar

import strawberry
from strawberry.types import Info

from billing.money import format_minor
from models import enums
from models import payments as payment_models
from models import tenancy as tenancy_models
from models import wallets as wallet_models
from schema.context import Context
from schema.ids import encode_cursor, to_global_id

WorkspaceStatus = strawberry.enum(enums.WorkspaceStatus)
PartnerStatus = strawberry.enum(enums.PartnerStatus)
Permission = strawberry.enum(enums.Permission)
LedgerCause = strawberry.enum(enums.LedgerCause)
OwnerKind = strawberry.enum(enums.OwnerKind)
PaymentStatus = strawberry.enum(enums.PaymentStatus)
PaymentMethodKind = strawberry.enum(enums.PaymentMethodKind, name="PaymentMethod")


@strawberry.interface(description="An object with a global id, fetchable with node(id:).")
class Node:
    id: strawberry.ID


@strawberry.type(description="An exact amount of money: a decimal string and its ISO 4217 currency.")
class Money:
    amount: str
    currency: str

    @classmethod
    def of(cls, minor: int, currency: str) -> Money:
        return cls(amount=format_minor(minor, currency), currency=currency)


@strawberry.type(description="An exact quantity of a wallet unit (POINTS, MESSAGE_CREDITS, ... or a currency).")
class Quantity:
    amount: str
    unit: str

    @classmethod
    def of(cls, value: int, unit: str) -> Quantity:
        return cls(amount=format_minor(value, unit), unit=unit)


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


N = TypeVar("N")


@strawberry.type
class Edge(Generic[N]):
    cursor: str
    node: N


@strawberry.type
class Connection(Generic[N]):
    edges: list[Edge[N]]
    page_info: PageInfo

    @strawberry.field
    def nodes(self) -> list[N]:
        return [edge.node for edge in self.edges]


def connection_of(nodes: list[N], db_ids: list[int], *, has_next: bool, has_previous: bool) -> Connection[N]:
    edges = [Edge(cursor=encode_cursor(i), node=n) for n, i in zip(nodes, db_ids, strict=True)]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_next,
            has_previous_page=has_previous,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )


@strawberry.type
class Project(Node):
    db_id: strawberry.Private[int]
    workspace_db_id: strawberry.Private[int]
    name: str
    is_default: bool
    created_at: datetime

    @classmethod
    def of(cls, row: tenancy_models.Project) -> Project:
        return cls(
            id=strawberry.ID(to_global_id("Project", row.id)),
            db_id=row.id,
            workspace_db_id=row.workspace_id,
            name=row.name,
            is_default=row.is_default,
            created_at=row.created_at,
        )


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
        )

    @strawberry.field(description="Ledger entries of this wallet, oldest first.")
    async def entries(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        cause: LedgerCause | None = None,
    ) -> Connection[LedgerEntry]:
        from resolvers.wallets import wallet_entries

        return await wallet_entries(info, self.db_id, first=first, after=after, cause=cause)


@strawberry.type(description="One immutable movement on a wallet; amount is signed (debits are negative).")
class LedgerEntry(Node):
    amount: Quantity
    balance_after: Quantity
    cause: LedgerCause
    note: str
    actor: str | None
    caused_by_type: str | None
    caused_by_id: str | None
    counter_account: str | None
    posting_id: str
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
            caused_by_type=posting.caused_by_type,
            caused_by_id=posting.caused_by_id,
            counter_account=row.counter_account,
            posting_id=str(row.posting_id),
            created_at=row.created_at,
        )


@strawberry.type(description="A partner's client.")
class Workspace(Node):
    db_id: strawberry.Private[int]
    partner_db_id: strawberry.Private[int]
    name: str
    owner_email: str
    status: WorkspaceStatus
    auto_renew: bool
    created_at: datetime

    @classmethod
    def of(cls, row: tenancy_models.Workspace) -> Workspace:
        return cls(
            id=strawberry.ID(to_global_id("Workspace", row.id)),
            db_id=row.id,
            partner_db_id=row.partner_id,
            name=row.name,
            owner_email=row.owner_email,
            status=row.status,
            auto_renew=row.auto_renew,
            created_at=row.created_at,
        )

    @strawberry.field
    async def partner(self, info: Info[Context, None]) -> Annotated[Partner, strawberry.lazy("schema.types")]:
        row = await info.context.loaders.partner.load(self.partner_db_id)
        assert row is not None  # a workspace always has its partner
        return Partner.of(row)

    @strawberry.field
    async def projects(self, info: Info[Context, None]) -> list[Project]:
        return [Project.of(p) for p in await info.context.loaders.projects_of_workspace.load(self.db_id)]

    @strawberry.field
    async def wallets(self, info: Info[Context, None]) -> list[Wallet]:
        return [Wallet.of(w) for w in await info.context.loaders.wallets_of_workspace.load(self.db_id)]


@strawberry.type(description="An agency or reseller.")
class Partner(Node):
    db_id: strawberry.Private[int]
    name: str
    slug: str
    status: PartnerStatus
    default_currency: str
    created_at: datetime

    @classmethod
    def of(cls, row: tenancy_models.Partner) -> Partner:
        return cls(
            id=strawberry.ID(to_global_id("Partner", row.id)),
            db_id=row.id,
            name=row.name,
            slug=row.slug,
            status=row.status,
            default_currency=row.default_currency,
            created_at=row.created_at,
        )

    @strawberry.field(description="This partner's workspaces, oldest first; ownerEmail finds one by its owner.")
    async def workspaces(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        owner_email: str | None = None,
    ) -> Connection[Workspace]:
        from resolvers.workspaces import list_workspaces

        return await list_workspaces(info, first=first, after=after, owner_email=owner_email, partner_db_id=self.db_id)


@strawberry.type(description="An attempt to collect money.")
class Payment(Node):
    amount: Money
    status: PaymentStatus
    method: PaymentMethodKind
    provider: str
    provider_reference: str | None
    purpose: str
    note: str
    created_at: datetime

    @classmethod
    def of(cls, row: payment_models.Payment) -> Payment:
        return cls(
            id=strawberry.ID(to_global_id("Payment", row.id)),
            amount=Money.of(row.amount, row.currency),
            status=row.status,
            method=row.method,
            provider=row.provider,
            provider_reference=row.provider_ref,
            purpose=row.purpose_kind,
            note=row.note,
            created_at=row.created_at,
        )


@strawberry.type(description="Who is calling and what they may do.")
class Viewer:
    kind: str
    permissions: list[Permission]
    partner_db_id: strawberry.Private[int | None]

    @strawberry.field
    async def partner(self, info: Info[Context, None]) -> Partner | None:
        if self.partner_db_id is None:
            return None
        row = await info.context.loaders.partner.load(self.partner_db_id)
        return Partner.of(row) if row else None
