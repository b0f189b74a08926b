"""People and sessions: login, logout, password reset and change, team members and their permissions."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from billing.core import tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.tenants import identity
from models.enums import Permission as DomainPermission
from models.tenancy import PartnerUser as PartnerUserRow
from models.tenancy import WorkspaceUser as WorkspaceUserRow
from schema.auth import target_partner, viewer_with
from schema.context import Context
from schema.errors import UserError, payload
from schema.ids import expect_id
from schema.relay import Connection, paginate
from schema.tenants.types import PartnerUser, Permission, Viewer, WorkspaceUser


@strawberry.input
class LoginInput:
    email: str
    password: str
    brand: str | None = strawberry.field(
        default=None, description="The partner's domain, slug or id; omit to sign in as a platform operator."
    )


@strawberry.type
class LoginPayload:
    token: str | None = strawberry.field(default=None, description="Send as Authorization: Bearer <token>.")
    expires_at: datetime | None = None
    viewer: Viewer | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


def viewer_type(viewer: tenancy.Viewer, *, via: str, email: str | None = None) -> Viewer:
    return Viewer(
        kind=viewer.kind,
        permissions=[Permission(p.value) for p in sorted(viewer.permissions)],
        via=via,
        partner_db_id=viewer.partner_id,
        workspace_db_id=viewer.workspace_id,
        email=email,
    )


async def login(info: Info[Context, None], input: LoginInput) -> LoginPayload:
    async def run() -> LoginPayload:
        session = await identity.login(
            brand=input.brand, email=input.email, password=input.password, client_address=info.context.client_address
        )
        return LoginPayload(
            token=session.token,
            expires_at=datetime.fromisoformat(session.expires_at_iso),
            viewer=viewer_type(session.viewer, via="SESSION", email=input.email.strip().lower()),
        )

    return await payload(run, lambda errors: LoginPayload(errors=errors))


@strawberry.type
class DonePayload:
    ok: bool
    errors: list[UserError] = strawberry.field(default_factory=list)


async def logout(info: Info[Context, None]) -> DonePayload:
    async def run() -> DonePayload:
        token = info.context.token or ""
        if not token.startswith(f"{identity.SESSION_PREFIX}_"):
            raise BillingError(ErrorCode.UNAUTHENTICATED, "logout ends a session; this request has none")
        return DonePayload(ok=await identity.logout(token))

    return await payload(run, lambda errors: DonePayload(ok=False, errors=errors))


@strawberry.input
class RequestPasswordResetInput:
    email: str
    brand: str | None = None


async def request_password_reset(info: Info[Context, None], input: RequestPasswordResetInput) -> DonePayload:
    """Answers the same whether or not the e-mail belongs to anyone."""

    async def run() -> DonePayload:
        await identity.request_password_reset(
            brand=input.brand, email=input.email, client_address=info.context.client_address
        )
        return DonePayload(ok=True)

    return await payload(run, lambda errors: DonePayload(ok=False, errors=errors))


@strawberry.input
class ResetPasswordInput:
    token: str
    new_password: str


async def reset_password(info: Info[Context, None], input: ResetPasswordInput) -> DonePayload:
    async def run() -> DonePayload:
        await identity.reset_password(token=input.token, new_password=input.new_password)
        return DonePayload(ok=True)

    return await payload(run, lambda errors: DonePayload(ok=False, errors=errors))


@strawberry.input
class ChangePasswordInput:
    current_password: str
    new_password: str


async def change_password(info: Info[Context, None], input: ChangePasswordInput) -> DonePayload:
    """Ends every session of the user, this one included: sign in again with the new password."""

    async def run() -> DonePayload:
        viewer = viewer_with(info)
        await identity.change_password(viewer, current=input.current_password, new=input.new_password)
        return DonePayload(ok=True)

    return await payload(run, lambda errors: DonePayload(ok=False, errors=errors))


@strawberry.input
class InvitePartnerUserInput:
    email: str
    name: str = ""
    permissions: list[Permission] = strawberry.field(default_factory=list)
    partner_id: strawberry.ID | None = strawberry.field(default=None, description="Platform only.")


@strawberry.type
class InvitePartnerUserPayload:
    user: PartnerUser | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def invite_partner_user(info: Info[Context, None], input: InvitePartnerUserInput) -> InvitePartnerUserPayload:
    """The invitee receives an e-mail to set a password. A partner's first user is its admin."""

    async def run() -> InvitePartnerUserPayload:
        viewer = viewer_with(info)
        partner_id = target_partner(viewer, input.partner_id)
        new = await identity.invite_partner_user(
            viewer,
            partner_id=partner_id,
            email=input.email,
            name=input.name,
            permissions=frozenset(DomainPermission(p.value) for p in input.permissions),
        )
        assert isinstance(new.user, PartnerUserRow)
        return InvitePartnerUserPayload(user=PartnerUser.of(new.user))

    return await payload(run, lambda errors: InvitePartnerUserPayload(errors=errors))


@strawberry.input
class SetPartnerUserPermissionsInput:
    user_id: strawberry.ID
    permissions: list[Permission]


async def set_partner_user_permissions(
    info: Info[Context, None], input: SetPartnerUserPermissionsInput
) -> InvitePartnerUserPayload:
    async def run() -> InvitePartnerUserPayload:
        viewer = viewer_with(info, DomainPermission.MANAGE_USERS)
        user = await identity.set_permissions(
            viewer,
            user_id=expect_id(input.user_id, "PartnerUser", "userId"),
            permissions=frozenset(DomainPermission(p.value) for p in input.permissions),
        )
        return InvitePartnerUserPayload(user=PartnerUser.of(user))

    return await payload(run, lambda errors: InvitePartnerUserPayload(errors=errors))


@strawberry.input
class CreateWorkspaceUserInput:
    workspace_id: strawberry.ID
    email: str
    name: str = ""


@strawberry.type
class CreateWorkspaceUserPayload:
    user: WorkspaceUser | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def create_workspace_user(
    info: Info[Context, None], input: CreateWorkspaceUserInput
) -> CreateWorkspaceUserPayload:
    """The client receives an e-mail to set a password for the partner's portal."""

    async def run() -> CreateWorkspaceUserPayload:
        viewer = viewer_with(info, DomainPermission.MANAGE_WORKSPACES)
        new = await identity.create_workspace_user(
            viewer,
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            email=input.email,
            name=input.name,
        )
        assert isinstance(new.user, WorkspaceUserRow)
        return CreateWorkspaceUserPayload(user=WorkspaceUser.of(new.user))

    return await payload(run, lambda errors: CreateWorkspaceUserPayload(errors=errors))


async def partner_users(
    info: Info[Context, None], first: int | None = None, after: str | None = None
) -> Connection[PartnerUser]:
    """The team of the caller's partner (every partner's, for the platform)."""
    viewer = viewer_with(info, DomainPermission.MANAGE_USERS)
    return await paginate(tenancy.partner_users(viewer), first=first, after=after, to_node=PartnerUser.of)


async def workspace_users(
    info: Info[Context, None], workspace_id: strawberry.ID, first: int | None = None, after: str | None = None
) -> Connection[WorkspaceUser]:
    viewer = viewer_with(info)
    workspace = await tenancy.get_scoped(
        tenancy.workspaces(viewer), expect_id(workspace_id, "Workspace", "workspaceId"), "workspace"
    )
    return await paginate(
        tenancy.workspace_users(viewer).filter(workspace_id=workspace.id),
        first=first,
        after=after,
        to_node=WorkspaceUser.of,
    )
