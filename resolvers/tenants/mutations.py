"""Changing tenants: onboarding partners and workspaces, API keys, sign-in and passwords, team members
and clients' logins, branding."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from billing.tenants import api_keys, identity, partners
from billing.tenants import branding as brandings
from models.enums import CredentialKind
from models.enums import Permission as DomainPermission
from models.tenancy import Partner as PartnerRow
from models.tenancy import PartnerUser as PartnerUserRow
from models.tenancy import WorkspaceUser as WorkspaceUserRow
from schema.auth import target_partner, viewer_with
from schema.context import Context
from schema.errors import UserError
from schema.ids import expect_id, to_global_id
from schema.mutations import mutation
from schema.tenants.types import (
    ApiKey,
    Branding,
    Partner,
    PartnerUser,
    Permission,
    Project,
    Viewer,
    Workspace,
    WorkspaceUser,
)

# --- partners and workspaces --------------------------------------------------------------------------


@strawberry.input
class CreatePartnerInput:
    name: str
    slug: str
    default_currency: str = "USD"


@strawberry.type
class CreatePartnerPayload:
    partner: Partner | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="A partner reselling through yours (at most WHITEBILL_MAX_PARTNER_LEVELS down).")
class CreateSubPartnerInput:
    name: str
    slug: str
    default_currency: str | None = strawberry.field(
        default=None, description="Yours, the only one a partner below you sells in (prices run down in it)."
    )


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


# --- API keys -----------------------------------------------------------------------------------------


@strawberry.input
class CreateApiKeyInput:
    name: str = ""
    partner_id: strawberry.ID | None = strawberry.field(
        default=None, description="Platform only: make the key for this partner instead of the platform."
    )
    permissions: list[Permission] | None = strawberry.field(
        default=None, description="Defaults to every permission the owner can hold."
    )


@strawberry.type
class CreateApiKeyPayload:
    key_id: strawberry.ID | None = None
    secret: str | None = strawberry.field(default=None, description="Shown once; store it now.")
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RevokeApiKeyInput:
    key_id: strawberry.ID


@strawberry.type
class RevokeApiKeyPayload:
    key: ApiKey | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


# --- sign-in and passwords ----------------------------------------------------------------------------


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


@strawberry.type
class DonePayload:
    ok: bool = False
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RequestPasswordResetInput:
    email: str
    brand: str | None = None


@strawberry.input
class ResetPasswordInput:
    token: str
    new_password: str


@strawberry.input
class ChangePasswordInput:
    current_password: str
    new_password: str


# --- team members and clients' logins -----------------------------------------------------------------


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


@strawberry.input
class SetPartnerUserPermissionsInput:
    user_id: strawberry.ID
    permissions: list[Permission]


@strawberry.input
class CreateWorkspaceUserInput:
    workspace_id: strawberry.ID
    email: str
    name: str = ""


@strawberry.type
class CreateWorkspaceUserPayload:
    user: WorkspaceUser | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


# --- branding -----------------------------------------------------------------------------------------


@strawberry.input(description="Fields left out stay as they are; an empty string clears an optional one.")
class UpdateBrandingInput:
    partner_id: strawberry.ID | None = strawberry.field(default=None, description="Platform only.")
    display_name: str | None = None
    logo_url: str | None = None
    logo_dark_url: str | None = None
    favicon_url: str | None = None
    primary_color: str | None = None
    secondary_color: str | None = None
    support_email: str | None = None
    custom_domain: str | None = None
    allowed_origins: list[str] | None = strawberry.field(
        default=None,
        description="Replaces the list (at most 20; https outside development): pages there may call the API.",
    )


@strawberry.type
class UpdateBrandingPayload:
    branding: Branding | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


def _partner_id(global_id: strawberry.ID | None) -> int | None:
    return expect_id(global_id, "Partner", "partnerId") if global_id else None


@strawberry.type
class Mutation:
    @mutation(permission=DomainPermission.MANAGE_PARTNERS)
    async def create_partner(self, info: Info[Context, None], input: CreatePartnerInput) -> CreatePartnerPayload:
        row = await partners.create_partner(
            viewer_with(info), name=input.name, slug=input.slug, currency=input.default_currency
        )
        return CreatePartnerPayload(partner=Partner.of(row))

    @mutation(
        permission=DomainPermission.MANAGE_SUB_PARTNERS,
        description="A sub-partner: a full partner of its own that pays your prices (your price plus its margin).",
        fields={"currency": "defaultCurrency"},
    )
    async def create_sub_partner(self, info: Info[Context, None], input: CreateSubPartnerInput) -> CreatePartnerPayload:
        row = await partners.create_sub_partner(
            viewer_with(info), name=input.name, slug=input.slug, currency=input.default_currency
        )
        return CreatePartnerPayload(partner=Partner.of(row))

    @mutation(permission=DomainPermission.MANAGE_WORKSPACES)
    async def create_workspace(self, info: Info[Context, None], input: CreateWorkspaceInput) -> CreateWorkspacePayload:
        row = await partners.create_workspace(
            viewer_with(info), name=input.name, owner_email=input.owner_email, partner_id=_partner_id(input.partner_id)
        )
        project = await row.projects.all().first()
        return CreateWorkspacePayload(
            workspace=Workspace.of(row), default_project=Project.of(project) if project else None
        )

    @mutation()  # the platform needs MANAGE_PARTNERS, a partner MANAGE_USERS: the service decides
    async def create_api_key(self, info: Info[Context, None], input: CreateApiKeyInput) -> CreateApiKeyPayload:
        new = await api_keys.create_key_as(
            viewer_with(info),
            partner_id=_partner_id(input.partner_id),
            name=input.name,
            permissions=None if input.permissions is None else frozenset(input.permissions),
        )
        return CreateApiKeyPayload(key_id=strawberry.ID(to_global_id("ApiKey", new.key.id)), secret=new.secret)

    @mutation()  # a platform key needs MANAGE_PARTNERS, a partner's MANAGE_USERS: the service decides
    async def revoke_api_key(self, info: Info[Context, None], input: RevokeApiKeyInput) -> RevokeApiKeyPayload:
        key = await api_keys.revoke_key(viewer_with(info), expect_id(input.key_id, "ApiKey", "keyId"))
        return RevokeApiKeyPayload(key=ApiKey.of(key))

    @mutation(description="Exchange an e-mail and password for a session token.")
    async def login(self, info: Info[Context, None], input: LoginInput) -> LoginPayload:
        session = await identity.login(
            brand=input.brand,
            email=input.email,
            password=input.password,
            client_address=info.context.client_address,
            origin=info.context.origin,
        )
        return LoginPayload(
            token=session.token,
            expires_at=datetime.fromisoformat(session.expires_at_iso),
            viewer=Viewer.of(session.viewer, via=CredentialKind.SESSION, email=session.email),
        )

    @mutation(description="End the session this request is signed in with.")
    async def logout(self, info: Info[Context, None]) -> DonePayload:
        return DonePayload(ok=await identity.logout(info.context.token))

    @mutation(description="E-mail a reset link; answers the same whether or not the e-mail belongs to anyone.")
    async def request_password_reset(self, info: Info[Context, None], input: RequestPasswordResetInput) -> DonePayload:
        await identity.request_password_reset(
            brand=input.brand, email=input.email, client_address=info.context.client_address, origin=info.context.origin
        )
        return DonePayload(ok=True)

    @mutation(description="Set a new password with an e-mailed reset or invitation token (once).")
    async def reset_password(self, info: Info[Context, None], input: ResetPasswordInput) -> DonePayload:
        await identity.reset_password(token=input.token, new_password=input.new_password)
        return DonePayload(ok=True)

    @mutation(description="Ends every session of the user, this one included: sign in again with the new password.")
    async def change_password(self, info: Info[Context, None], input: ChangePasswordInput) -> DonePayload:
        await identity.change_password(viewer_with(info), current=input.current_password, new=input.new_password)
        return DonePayload(ok=True)

    # The first user of a partner needs every permission of its admin, the others MANAGE_USERS: the
    # service decides.
    @mutation(description="The invitee receives an e-mail to set a password. A partner's first user is its admin.")
    async def invite_partner_user(
        self, info: Info[Context, None], input: InvitePartnerUserInput
    ) -> InvitePartnerUserPayload:
        viewer = viewer_with(info)
        new = await identity.invite_partner_user(
            viewer,
            partner_id=target_partner(viewer, input.partner_id),
            email=input.email,
            name=input.name,
            permissions=frozenset(input.permissions),
        )
        assert isinstance(new.user, PartnerUserRow)
        return InvitePartnerUserPayload(user=PartnerUser.of(new.user))

    @mutation(permission=DomainPermission.MANAGE_USERS)
    async def set_partner_user_permissions(
        self, info: Info[Context, None], input: SetPartnerUserPermissionsInput
    ) -> InvitePartnerUserPayload:
        user = await identity.set_permissions(
            viewer_with(info),
            user_id=expect_id(input.user_id, "PartnerUser", "userId"),
            permissions=frozenset(input.permissions),
        )
        return InvitePartnerUserPayload(user=PartnerUser.of(user))

    @mutation(
        permission=DomainPermission.MANAGE_WORKSPACES,
        description="The client receives an e-mail to set a password for the partner's portal.",
    )
    async def create_workspace_user(
        self, info: Info[Context, None], input: CreateWorkspaceUserInput
    ) -> CreateWorkspaceUserPayload:
        new = await identity.create_workspace_user(
            viewer_with(info),
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            email=input.email,
            name=input.name,
        )
        assert isinstance(new.user, WorkspaceUserRow)
        return CreateWorkspaceUserPayload(user=WorkspaceUser.of(new.user))

    @mutation()  # the platform needs MANAGE_PARTNERS, a partner MANAGE_USERS: the service decides
    async def update_branding(self, info: Info[Context, None], input: UpdateBrandingInput) -> UpdateBrandingPayload:
        viewer = viewer_with(info)
        change = brandings.BrandingChange(
            display_name=input.display_name,
            logo_url=input.logo_url,
            logo_dark_url=input.logo_dark_url,
            favicon_url=input.favicon_url,
            primary_color=input.primary_color,
            secondary_color=input.secondary_color,
            support_email=input.support_email,
            custom_domain=input.custom_domain,
            allowed_origins=input.allowed_origins,
        )
        row = await brandings.update_branding(
            viewer, partner_id=target_partner(viewer, input.partner_id), change=change
        )
        partner = await PartnerRow.get(id=row.partner_id)  # read again: the change may have moved its domain
        return UpdateBrandingPayload(branding=Branding.of(row, partner.domain))
