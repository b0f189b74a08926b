"""Who a resolver acts for: the signed-in viewer with the permission it needs checked, and the partner
an action is about."""

from __future__ import annotations

from strawberry.types import Info

from billing.core.errors import BillingError, ErrorCode
from billing.core.tenancy import Viewer
from models.enums import Permission
from schema.context import Context
from schema.ids import expect_id


def viewer_with(info: Info[Context, None], permission: Permission | None = None) -> Viewer:
    viewer = info.context.require_viewer()
    if permission is not None:
        viewer.require(permission)
    return viewer


def target_partner(viewer: Viewer, partner_id: str | None) -> int:
    """The partner an action is about: the one named (the platform may name any; scoping checks
    the rest later), or else the caller's own."""
    if partner_id:
        return expect_id(partner_id, "Partner", "partnerId")
    if viewer.partner_id is not None:
        return viewer.partner_id
    raise BillingError(ErrorCode.INVALID_INPUT, "name the partner", field="partnerId")
