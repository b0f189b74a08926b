"""Partners, workspaces, people and sign-in, API keys, branding, the audit log, node(id:)."""

from __future__ import annotations

import strawberry

from resolvers.tenants import api_keys, audit, branding, identity, node, partners, viewer, workspaces
from resolvers.tenants.branding import PublicBranding
from schema.relay import Connection, Node
from schema.tenants.types import ApiKey, AuditEntry, Partner, PartnerUser, Viewer, Workspace, WorkspaceUser


@strawberry.type
class Query:
    node: Node | None = strawberry.field(
        resolver=node.node, description="Any object by its global id; null if unknown or not yours."
    )
    viewer: Viewer = strawberry.field(resolver=viewer.viewer)
    partners: Connection[Partner] = strawberry.field(resolver=partners.list_partners)
    workspaces: Connection[Workspace] = strawberry.field(
        resolver=workspaces.list_workspaces,
        description="Workspaces you can see, oldest first; filter by owner e-mail.",
    )
    partner_users: Connection[PartnerUser] = strawberry.field(resolver=identity.partner_users)
    workspace_users: Connection[WorkspaceUser] = strawberry.field(resolver=identity.workspace_users)
    api_keys: Connection[ApiKey] = strawberry.field(resolver=api_keys.list_api_keys)
    audit_log: Connection[AuditEntry] = strawberry.field(resolver=audit.audit_log)
    branding: PublicBranding | None = strawberry.field(
        resolver=branding.branding_by_domain, description="Public: a partner's branding by its domain."
    )


@strawberry.type
class Mutation:
    create_partner: partners.CreatePartnerPayload = strawberry.mutation(resolver=partners.create_partner)
    create_workspace: workspaces.CreateWorkspacePayload = strawberry.mutation(resolver=workspaces.create_workspace)
    create_api_key: api_keys.CreateApiKeyPayload = strawberry.mutation(resolver=api_keys.create_api_key)
    revoke_api_key: api_keys.RevokeApiKeyPayload = strawberry.mutation(resolver=api_keys.revoke_api_key)
    login: identity.LoginPayload = strawberry.mutation(resolver=identity.login)
    logout: identity.DonePayload = strawberry.mutation(resolver=identity.logout)
    request_password_reset: identity.DonePayload = strawberry.mutation(resolver=identity.request_password_reset)
    reset_password: identity.DonePayload = strawberry.mutation(resolver=identity.reset_password)
    change_password: identity.DonePayload = strawberry.mutation(resolver=identity.change_password)
    invite_partner_user: identity.InvitePartnerUserPayload = strawberry.mutation(resolver=identity.invite_partner_user)
    set_partner_user_permissions: identity.InvitePartnerUserPayload = strawberry.mutation(
        resolver=identity.set_partner_user_permissions
    )
    create_workspace_user: identity.CreateWorkspaceUserPayload = strawberry.mutation(
        resolver=identity.create_workspace_user
    )
    update_branding: branding.UpdateBrandingPayload = strawberry.mutation(resolver=branding.update_branding)
