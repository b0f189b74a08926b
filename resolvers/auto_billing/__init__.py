"""Agency auto-billing: the partner's pool and what it buys."""

from resolvers.auto_billing.mutations import Mutation
from resolvers.auto_billing.queries import Query

__all__ = ["Mutation", "Query"]
