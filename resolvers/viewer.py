"""viewer: who is calling."""

from __future__ import annotations

from strawberry.types import Info

from resolvers.auth import viewer_with
from schema.context import Context
from schema.types import Permission, Viewer


async def viewer(info: Info[Context, None]) -> Viewer:
    current = viewer_with(info)
    return Viewer(
        kind=current.kind,
        permissions=[Permission(p.value) for p in sorted(current.permissions)],
        partner_db_id=current.partner_id,
    )
