"""Subscriptions: plans assigned, bought, changed, cancelled; add-ons, limits, dunning, forecasts."""

from resolvers.subscriptions.mutations import Mutation
from resolvers.subscriptions.queries import Query

__all__ = ["Mutation", "Query"]
