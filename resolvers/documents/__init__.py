"""Documents: invoices, credit notes and receipts, the issuer's tax rates and numbering, coupons."""

from __future__ import annotations

from resolvers.documents.mutations import Mutation
from resolvers.documents.queries import Query

__all__ = ["Mutation", "Query"]
