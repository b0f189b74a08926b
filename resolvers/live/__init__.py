"""Live updates over graphql-transport-ws."""

from __future__ import annotations

from resolvers.live.subscriptions import LiveUpdates

__all__ = ["LiveUpdates"]
