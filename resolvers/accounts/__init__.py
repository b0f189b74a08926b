"""Wallets: manual grants and debits, credit limits, transfers, automatic top-ups, low-balance notices."""

from __future__ import annotations

from resolvers.accounts.mutations import Mutation

__all__ = ["Mutation"]
