"""Partner webhooks: endpoints, test events, deliveries."""

from __future__ import annotations

from resolvers.outbox.mutations import Mutation

__all__ = ["Mutation"]
