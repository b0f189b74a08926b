"""Builders for test data, going through the same services as the API."""

from __future__ import annotations

import secrets

from billing.core.tenancy import Viewer
from billing.tenants import identity, partners
from billing.tenants.passwords import hash_password
from models.enums import PARTNER_PERMISSIONS, PLATFORM_PERMISSIONS
from models.tenancy import Partner, PartnerUser, Workspace, WorkspaceUser

PLATFORM = Viewer(kind="PLATFORM", actor="test:platform", permissions=PLATFORM_PERMISSIONS)


def partner_viewer(partner: Partner) -> Viewer:
    return Viewer(
        kind="PARTNER",
        actor=f"test:partner:{partner.id}",
        partner_id=partner.id,
        permissions=PARTNER_PERMISSIONS,
    )


async def a_partner(name: str = "Agency") -> Partner:
    return await partners.create_partner(PLATFORM, name=name, slug=f"p-{secrets.token_hex(4)}", currency="BRL")


async def a_workspace(partner: Partner, name: str = "Client", email: str | None = None) -> Workspace:
    return await partners.create_workspace(
        partner_viewer(partner), name=name, owner_email=email or f"{secrets.token_hex(4)}@client.example"
    )


async def a_client_login(partner: Partner, workspace: Workspace, email: str, password: str) -> WorkspaceUser:
    """A person who signs in to ``workspace`` with ``password`` (set as the reset e-mail's link would)."""
    new = await identity.create_workspace_user(partner_viewer(partner), workspace_id=workspace.id, email=email)
    await WorkspaceUser.filter(id=new.user.id).update(password_hash=hash_password(password))
    return await WorkspaceUser.get(id=new.user.id)


async def a_staff_login(partner: Partner, email: str, password: str) -> PartnerUser:
    """A member of the partner's team who signs in with ``password``, holding every partner permission."""
    new = await identity.invite_partner_user(PLATFORM, partner_id=partner.id, email=email)
    await PartnerUser.filter(id=new.user.id).update(password_hash=hash_password(password))
    return await PartnerUser.get(id=new.user.id)
