"""Wallets (manual grants and debits, credit limits, transfers, automatic top-ups, low-balance notices) and
the partner's monthly statement."""

from __future__ import annotations

from resolvers.accounts.mutations import Mutation
from resolvers.accounts.queries import Query

__all__ = ["Mutation", "Query"]
