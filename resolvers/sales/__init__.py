"""Sales: gateway configurations, checkout, refunds, manual payments, the partner's centralised balance."""

from __future__ import annotations

from resolvers.sales.mutations import Mutation

__all__ = ["Mutation"]
