"""Partners, workspaces, people and sign-in, API keys, branding, the audit log, node(id:)."""

from __future__ import annotations

from resolvers.tenants.mutations import Mutation
from resolvers.tenants.queries import Query

__all__ = ["Mutation", "Query"]
