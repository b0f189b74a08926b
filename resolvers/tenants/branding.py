"""Branding: partners style their portal; a login page finds it by domain without signing in."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from billing.tenants import branding
from models.tenancy import Partner as PartnerRow
from schema.auth import target_partner, viewer_with
from schema.context import Context
from schema.errors import UserError, payload
from schema.ids import to_global_id
from schema.tenants.types import Branding


@strawberry.type(description="What a white-label login page shows; public.")
class PublicBranding:
    partner_id: strawberry.ID
    branding: Branding


async def branding_by_domain(domain: str) -> PublicBranding | None:
    """Public on purpose: a login page must style itself before anyone signs in."""
    found = await branding.branding_for_domain(domain)
    if found is None:
        return None
    partner, row = found
    return PublicBranding(
        partner_id=strawberry.ID(to_global_id("Partner", partner.id)), branding=Branding.of(row, partner.domain)
    )


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


@strawberry.type
class UpdateBrandingPayload:
    branding: Branding | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def update_branding(info: Info[Context, None], input: UpdateBrandingInput) -> UpdateBrandingPayload:
    async def run() -> UpdateBrandingPayload:
        viewer = viewer_with(info)
        partner_id = target_partner(viewer, input.partner_id)
        change = branding.BrandingChange(
            display_name=input.display_name,
            logo_url=input.logo_url,
            logo_dark_url=input.logo_dark_url,
            favicon_url=input.favicon_url,
            primary_color=input.primary_color,
            secondary_color=input.secondary_color,
            support_email=input.support_email,
            custom_domain=input.custom_domain,
        )
        row = await branding.update_branding(viewer, partner_id=partner_id, change=change)
        partner = await PartnerRow.get(id=row.partner_id)
        return UpdateBrandingPayload(branding=Branding.of(row, partner.domain))

    return await payload(run, lambda errors: UpdateBrandingPayload(errors=errors))
