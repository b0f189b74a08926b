"""Workspaces: partners create and list their clients."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from billing.core import tenancy
from billing.core.text import check_text
from billing.tenants import partners
from models.enums import Permission
from schema.auth import target_partner, viewer_with
from schema.context import Context
from schema.errors import UserError, payload
from schema.relay import Connection, paginate
from schema.tenants.types import Project, Workspace


@strawberry.input
class CreateWorkspaceInput:
    name: str
    owner_email: str
    partner_id: strawberry.ID | None = strawberry.field(
        default=None, description="Required for the platform operator; a partner creates in its own tenant."
    )


@strawberry.type
class CreateWorkspacePayload:
    workspace: Workspace | None = None
    default_project: Project | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def create_workspace(info: Info[Context, None], input: CreateWorkspaceInput) -> CreateWorkspacePayload:
    async def run() -> CreateWorkspacePayload:
        viewer = viewer_with(info, Permission.MANAGE_WORKSPACES)
        partner_id = target_partner(viewer, input.partner_id) if input.partner_id or not viewer.is_platform else None
        row = await partners.create_workspace(
            viewer, name=input.name, owner_email=input.owner_email, partner_id=partner_id
        )
        project = await row.projects.all().first()
        return CreateWorkspacePayload(
            workspace=Workspace.of(row), default_project=Project.of(project) if project else None
        )

    return await payload(run, lambda errors: CreateWorkspacePayload(errors=errors))


async def list_workspaces(
    info: Info[Context, None],
    first: int | None = None,
    after: str | None = None,
    owner_email: str | None = None,
    partner_db_id: int | None = None,
) -> Connection[Workspace]:
    viewer = viewer_with(info)
    queryset = tenancy.workspaces(viewer)
    if partner_db_id is not None:
        queryset = queryset.filter(partner_id=partner_db_id)
    if owner_email is not None:
        queryset = queryset.filter(owner_email=check_text(owner_email, "ownerEmail", max_length=254).lower())
    return await paginate(queryset, first=first, after=after, to_node=Workspace.of)
