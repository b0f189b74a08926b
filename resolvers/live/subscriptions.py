"""Subscriptions: a wallet's balance, a workspace's status and a payment's, live, over graphql-transport-ws.

Each sends the current state first (so a client knows it is subscribed and misses nothing between a
query and the subscription), then the new state after each change. A change is only a cue: the
state is read again through the caller's tenant scope, so a subscriber sees exactly what a query
would, and is told nothing of other tenants. The subscribers of one object in one tenant scope share
that read (``realtime.Broker.read``: one read per change, not one per subscriber), and each checks its
credentials again when some credential changed or its session expired: a key revoked or a session
ended stops the subscription at the next event with UNAUTHENTICATED.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Hashable
from typing import TypeVar

import strawberry
from strawberry.types import Info
from tortoise.models import Model
from tortoise.queryset import QuerySet

from billing.core import clock, realtime, tenancy
from billing.core.tenancy import Viewer
from models.payments import Payment as PaymentRow
from models.tenancy import Workspace as WorkspaceRow
from models.wallets import Wallet as WalletRow
from schema.accounts.types import Wallet
from schema.auth import viewer_with
from schema.context import Context, Loaders
from schema.ids import expect_id
from schema.live import shared
from schema.sales.types import Payment
from schema.tenants.types import Workspace

# Credentials are checked again when a change to some credential is heard, when a session expires,
# and at the latest this long after the last check (a change made where this process cannot hear it:
# another process on SQLite).
RECHECK_SECONDS = 60.0

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

    @strawberry.subscription(
        description="A payment you can see, now and after each change of its status (a pix or boleto turning"
        " SUCCEEDED when the provider's webhook arrives, say)."
    )
    async def payment_changed(
        self, info: Info[Context, None], payment_id: strawberry.ID
    ) -> AsyncGenerator[Payment, None]:
        payment = expect_id(payment_id, "Payment", "paymentId")
        return await _follow(info, realtime.PAYMENT, payment, tenancy.payments, "payment", _payment, Payment.of)


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
    broker, key = realtime.broker, (topic, object_id)
    # What the scoped read depends on: subscribers alike in these share it.
    tenant = (viewer.kind, viewer.partner_id, viewer.workspace_id)

    async def read() -> tuple[M, N]:
        row = await tenancy.get_scoped(scoped(viewer), object_id, what)
        return row, shared(to_node(row))  # one event object: its execution is shared too (schema.live)

    async def follow() -> AsyncGenerator[N, None]:
        nonlocal viewer
        checked, checked_at = broker.credentials_version, time.monotonic()
        partner_id = None if viewer.is_platform else viewer.partner_id
        with broker.watch(topic, object_id, partner_id=partner_id, scope=tenant, read=read) as watch:
            current, event = await broker.read(key, tenant, read)
            while True:
                last = state(current)
                # The connection's DataLoaders would answer this event's nested fields from what an
                # earlier event cached.
                info.context.loaders = Loaders()
                yield event
                while state(current) == last:
                    await watch.changed()
                    if (
                        broker.credentials_version != checked
                        or _expired(viewer)
                        or time.monotonic() - checked_at > RECHECK_SECONDS
                    ):
                        checked, checked_at = broker.credentials_version, time.monotonic()
                        viewer = await info.context.reauthenticate()
                    current, event = await broker.read(key, tenant, read)

    return follow()


def _expired(viewer: Viewer) -> bool:
    return viewer.expires_at is not None and clock.now() >= viewer.expires_at


def _balance(row: WalletRow) -> Hashable:
    return row.balance


def _payment(row: PaymentRow) -> Hashable:
    return row.status


def _status(row: WorkspaceRow) -> Hashable:
    return (row.status, repr(row.status_reasons))
