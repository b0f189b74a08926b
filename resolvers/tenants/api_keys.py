"""API keys: the platform makes them for itself and for partners; partners for themselves."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from billing.core import tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.tenants import api_keys
from models.enums import Permission as DomainPermission
from schema.auth import viewer_with
from schema.context import Context
from schema.errors import UserError, payload
from schema.ids import expect_id, to_global_id
from schema.relay import Connection, paginate
from schema.tenants.types import ApiKey, Permission


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


async def create_api_key(info: Info[Context, None], input: CreateApiKeyInput) -> CreateApiKeyPayload:
    async def run() -> CreateApiKeyPayload:
        viewer = viewer_with(info)
        if viewer.is_platform:
            viewer.require(DomainPermission.MANAGE_PARTNERS)
            partner_id = expect_id(input.partner_id, "Partner", "partnerId") if input.partner_id else None
        else:
            viewer.require(DomainPermission.MANAGE_USERS)
            if input.partner_id and expect_id(input.partner_id, "Partner", "partnerId") != viewer.partner_id:
                raise BillingError(ErrorCode.NOT_FOUND, "Partner not found", field="partnerId")
            partner_id = viewer.partner_id
        new = await api_keys.create_key(
            partner_id=partner_id,
            name=input.name,
            permissions=None
            if input.permissions is None
            else frozenset(DomainPermission(p.value) for p in input.permissions),
            creator=viewer,
        )
        return CreateApiKeyPayload(key_id=strawberry.ID(to_global_id("ApiKey", new.key.id)), secret=new.secret)

    return await payload(run, lambda errors: CreateApiKeyPayload(errors=errors))


async def list_api_keys(
    info: Info[Context, None], first: int | None = None, after: str | None = None
) -> Connection[ApiKey]:
    viewer = viewer_with(info)
    viewer.require(DomainPermission.MANAGE_PARTNERS if viewer.is_platform else DomainPermission.MANAGE_USERS)
    return await paginate(tenancy.api_keys(viewer), first=first, after=after, to_node=ApiKey.of)


@strawberry.input
class RevokeApiKeyInput:
    key_id: strawberry.ID


@strawberry.type
class RevokeApiKeyPayload:
    key: ApiKey | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def revoke_api_key(info: Info[Context, None], input: RevokeApiKeyInput) -> RevokeApiKeyPayload:
    async def run() -> RevokeApiKeyPayload:
        viewer = viewer_with(info)
        key = await api_keys.revoke_key(viewer, expect_id(input.key_id, "ApiKey", "keyId"))
        return RevokeApiKeyPayload(key=ApiKey.of(key))

    return await payload(run, lambda errors: RevokeApiKeyPayload(errors=errors))
