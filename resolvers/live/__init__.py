"""Live updates over graphql-transport-ws."""

from __future__ import annotations

import strawberry

from resolvers.live import realtime
from schema.accounts.types import Wallet
from schema.tenants.types import Workspace


@strawberry.type(
    description="Subscriptions, over graphql-transport-ws on /graphql: the current state first, then each change."
)
class LiveUpdates:  # "Subscription" is a plan's subscription
    wallet_balance_changed: Wallet = strawberry.subscription(
        resolver=realtime.wallet_balance_changed,
        description="A wallet you can see, now and after each change of its balance.",
    )
    workspace_status_changed: Workspace = strawberry.subscription(
        resolver=realtime.workspace_status_changed,
        description="A workspace you can see, now and after each change of its status or status reasons.",
    )
