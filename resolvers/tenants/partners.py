"""Partners: the platform operator onboards them."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from billing.core import tenancy
from billing.tenants import partners
from models.enums import Permission
from schema.auth import viewer_with
from schema.context import Context
from schema.errors import UserError, payload
from schema.relay import Connection, paginate
from schema.tenants.types import Partner


@strawberry.input
class CreatePartnerInput:
    name: str
    slug: str
    default_currency: str = "USD"


@strawberry.type
class CreatePartnerPayload:
    partner: Partner | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def create_partner(info: Info[Context, None], input: CreatePartnerInput) -> CreatePartnerPayload:
    async def run() -> CreatePartnerPayload:
        viewer = viewer_with(info, Permission.MANAGE_PARTNERS)
        row = await partners.create_partner(viewer, name=input.name, slug=input.slug, currency=input.default_currency)
        return CreatePartnerPayload(partner=Partner.of(row))

    return await payload(run, lambda errors: CreatePartnerPayload(errors=errors))


async def list_partners(
    info: Info[Context, None], first: int | None = None, after: str | None = None
) -> Connection[Partner]:
    viewer = viewer_with(info)
    return await paginate(tenancy.partners(viewer), first=first, after=after, to_node=Partner.of)
