"""Builders for test data, going through the same services as the API."""

from __future__ import annotations

import secrets

from billing.core.tenancy import Viewer
from billing.tenants import partners
from models.enums import PARTNER_PERMISSIONS, PLATFORM_PERMISSIONS
from models.tenancy import Partner, Workspace

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
