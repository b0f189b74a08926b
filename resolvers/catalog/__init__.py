"""The catalog: plan families, plans, margins, add-ons, credit packages, WhatsApp rate cards."""

from __future__ import annotations

from resolvers.catalog.mutations import Mutation
from resolvers.catalog.queries import Query

__all__ = ["Mutation", "Query"]
