"""The audit log: a partner reads its own tenant's, the platform everyone's."""

from __future__ import annotations

from strawberry.types import Info

from billing.core import tenancy
from models.enums import Permission
from schema.auth import viewer_with
from schema.context import Context
from schema.relay import Connection, paginate
from schema.tenants.types import AuditEntry


async def audit_log(
    info: Info[Context, None], first: int | None = None, after: str | None = None, action: str | None = None
) -> Connection[AuditEntry]:
    viewer = viewer_with(info, Permission.READ_REPORTS)
    scoped = tenancy.audit_entries(viewer)
    if action:
        scoped = scoped.filter(action=action[:64])
    return await paginate(scoped, first=first, after=after, to_node=AuditEntry.of)
