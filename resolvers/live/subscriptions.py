"""Subscriptions: a wallet's balance and a workspace's status, live, over graphql-transport-ws.

Each sends the current state first (so a client knows it is subscribed and misses nothing between a
query and the subscription), then the new state after each change. A change is only a cue: the
state is read again through the caller's tenant scope, after checking its credentials again, so a
subscriber sees exactly what a query would, and is told nothing of other tenants.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Hashable
from typing import TypeVar

import strawberry
from strawberry.types import Info
from tortoise.models import Model
from tortoise.queryset import QuerySet

from billing.core import realtime, tenancy
from billing.core.tenancy import Viewer
from models.tenancy import Workspace as WorkspaceRow
from models.wallets import Wallet as WalletRow
from schema.accounts.types import Wallet
from schema.auth import viewer_with
from schema.context import Context, Loaders
from schema.ids import expect_id
from schema.tenants.types import Workspace

M = TypeVar("M", bound=Model)
N = TypeVar("N")


@strawberry.type(
    description="Subscriptions, over graphql-transport-ws on /graphql: the current state first, then each change."
)
class LiveUpdates:  # "Subscription" is a plan's subscription
    @strawberry.subscription(description="A wallet you can see, now and after each change of its balance.")
    async def wallet_balance_changed(
        self, info: Info[Context, None], wallet_id: strawberry.ID
    ) -> AsyncGenerator[Wallet, None]:
        wallet = expect_id(wallet_id, "Wallet", "walletId")
        return await _follow(info, realtime.WALLET, wallet, tenancy.wallets, "wallet", _balance, Wallet.of)

    @strawberry.subscription(
        description="A workspace you can see, now and after each change of its status or status reasons."
    )
    async def workspace_status_changed(
        self, info: Info[Context, None], workspace_id: strawberry.ID
    ) -> AsyncGenerator[Workspace, None]:
        workspace = expect_id(workspace_id, "Workspace", "workspaceId")
        return await _follow(
            info, realtime.WORKSPACE, workspace, tenancy.workspaces, "workspace", _status, Workspace.of
        )


async def _follow(
    info: Info[Context, None],
    topic: str,
    object_id: int,
    scoped: Callable[[Viewer], QuerySet[M]],
    what: str,
    state: Callable[[M], Hashable],
    to_node: Callable[[M], N],
) -> AsyncGenerator[N, None]:
    """The object now, then after each change of ``state(row)``. NOT_FOUND, before anything is sent,
    for an object the caller may not see."""
    viewer = viewer_with(info)
    await tenancy.get_scoped(scoped(viewer), object_id, what)

    async def follow() -> AsyncGenerator[N, None]:
        partner_id = None if viewer.is_platform else viewer.partner_id
        with realtime.broker.watch(topic, object_id, partner_id=partner_id) as watch:
            current = await tenancy.get_scoped(scoped(viewer), object_id, what)
            while True:
                last = state(current)
                # The connection's DataLoaders would answer this event's nested fields from what an
                # earlier event cached.
                info.context.loaders = Loaders()
                yield to_node(current)
                while state(current) == last:
                    await watch.changed()
                    current = await tenancy.get_scoped(scoped(await info.context.reauthenticate()), object_id, what)

    return follow()


def _balance(row: WalletRow) -> Hashable:
    return row.balance


def _status(row: WorkspaceRow) -> Hashable:
    return (row.status, repr(row.status_reasons))
