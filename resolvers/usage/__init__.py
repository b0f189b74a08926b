"""Usage reported by the product: WhatsApp message events, project credit, units consumed."""

from __future__ import annotations

from resolvers.usage.mutations import Mutation

__all__ = ["Mutation"]
