"""The one way a resolver states what it needs."""

from __future__ import annotations

from strawberry.types import Info

from billing.tenancy import Viewer
from models.enums import Permission
from schema.context import Context


def viewer_with(info: Info[Context, None], permission: Permission | None = None) -> Viewer:
    viewer = info.context.require_viewer()
    if permission is not None:
        viewer.require(permission)
    return viewer
