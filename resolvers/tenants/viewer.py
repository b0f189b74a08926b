"""viewer: who is calling."""

from __future__ import annotations

from strawberry.types import Info

from billing.tenants import identity
from resolvers.tenants.identity import viewer_type
from schema.auth import viewer_with
from schema.context import Context
from schema.tenants.types import Viewer


async def viewer(info: Info[Context, None]) -> Viewer:
    current = viewer_with(info)
    via = "SESSION" if (info.context.token or "").startswith(f"{identity.SESSION_PREFIX}_") else "API_KEY"
    email = await identity.email_of(current) if via == "SESSION" else None
    return viewer_type(current, via=via, email=email)
