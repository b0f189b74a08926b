"""API keys for machine clients: shown once, stored as a SHA-256 hash (they are long random secrets,
so a slow password hash would add nothing but latency to every request)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

import orjson
from tortoise.transactions import in_transaction

from billing.core import audit, clock, realtime, sql, tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.core.tenancy import Viewer
from billing.core.text import check_text
from models.enums import PARTNER_PERMISSIONS, PLATFORM_PERMISSIONS, Permission, ViewerKind
from models.tenancy import ApiKey, Partner

PREFIX = "wb"
_TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class NewKey:
    key: ApiKey
    secret: str  # shown once


def permissions_for(partner_id: int | None) -> frozenset[Permission]:
    """What a key of this owner can hold at most."""
    return PLATFORM_PERMISSIONS if partner_id is None else PARTNER_PERMISSIONS


def operator(actor: str = "cli") -> Viewer:
    """The platform operator acting outside the API (the command line, the demo seed): the platform
    holding everything the platform may hold."""
    return Viewer(kind=ViewerKind.PLATFORM, actor=actor, permissions=PLATFORM_PERMISSIONS)


def key_permissions(
    creator: Viewer, partner_id: int | None, requested: frozenset[Permission] | None
) -> frozenset[Permission]:
    """What a key made by ``creator`` for this owner holds. None requested: what its creator holds, as
    far as its owner can hold it. Never a permission its creator lacks (no escalation), nor one its
    owner cannot hold."""
    allowed = permissions_for(partner_id)
    chosen = creator.permissions & allowed if requested is None else requested
    if not chosen:
        raise BillingError(ErrorCode.INVALID_INPUT, "a key needs at least one permission", field="permissions")
    if not chosen <= creator.permissions:
        raise BillingError(ErrorCode.FORBIDDEN, "a key cannot hold permissions its creator lacks", field="permissions")
    if not chosen <= allowed:
        extra = ", ".join(sorted(p.value for p in chosen - allowed))
        raise BillingError(
            ErrorCode.FORBIDDEN, f"permissions not available to this owner: {extra}", field="permissions"
        )
    return chosen


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_key(
    *,
    partner_id: int | None,
    name: str = "",
    permissions: frozenset[Permission] | None = None,
    creator: Viewer | None = None,
) -> NewKey:
    """A key for the platform (partner_id None) or for one partner, made by ``creator`` (by default
    :func:`operator`, as the command line acts), holding :func:`key_permissions`. Who may make keys for
    which owner is the caller's to check first (:func:`create_key_as` does, for the API)."""
    creator = creator or operator()
    chosen = key_permissions(creator, partner_id, permissions)
    if partner_id is not None and not await Partner.exists(id=partner_id):
        raise BillingError(ErrorCode.NOT_FOUND, "partner not found", field="partnerId")
    prefix = secrets.token_hex(6)
    secret = f"{PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    async with in_transaction("default"):  # the change and its audit row together
        key = await ApiKey.create(
            partner_id=partner_id,
            is_platform=partner_id is None,
            name=check_text(name, "name", max_length=200, allow_empty=True),
            prefix=prefix,
            key_hash=_hash(secret),
            permissions=sorted(p.value for p in chosen),
        )
        await audit.record(
            actor=creator.actor,
            action="api_key.create",
            target_type="ApiKey",
            target_id=key.id,
            partner_id=partner_id,
            after={"name": key.name, "permissions": key.permissions},
        )
    return NewKey(key, secret)


async def create_key_as(
    viewer: Viewer, *, partner_id: int | None, name: str = "", permissions: frozenset[Permission] | None = None
) -> NewKey:
    """A key made through the API: the platform makes keys for itself (no partner named) or for any
    partner (MANAGE_PARTNERS); a partner for itself (MANAGE_USERS) or for a partner reselling below it
    (MANAGE_SUB_PARTNERS), never holding more than the caller; another partner's id is not found."""
    if viewer.is_platform:
        viewer.require(Permission.MANAGE_PARTNERS)
        owner = partner_id
    elif partner_id is not None and partner_id != viewer.partner_id:
        owner = (await tenancy.sub_partner(viewer, partner_id, child=True)).id
    else:
        viewer.require(Permission.MANAGE_USERS)
        if partner_id is not None and partner_id != viewer.partner_id:
            raise BillingError(ErrorCode.NOT_FOUND, "Partner not found", field="partnerId")
        owner = viewer.partner_id
    return await create_key(partner_id=owner, name=name, permissions=permissions, creator=viewer)


async def authenticate(token: str) -> Viewer | None:
    """The viewer a key stands for, or None for anything that is not a live key."""
    parts = token.split("_", 2)  # the secret part may itself contain "_"
    if len(token) > 200 or len(parts) != 3 or parts[0] != PREFIX or len(parts[1]) != 12:
        return None
    # Every request with a key runs this: a plain statement, not the ORM's query building.
    rows = await sql.fetch(
        "SELECT id, key_hash, is_platform, partner_id, permissions, last_used_at FROM api_key"
        " WHERE prefix = $1 AND revoked_at IS NULL",
        parts[1],
    )
    if not rows or not hmac.compare_digest(rows[0]["key_hash"], _hash(token)):
        return None
    key = rows[0]
    now = clock.now()
    last_used = sql.as_datetime(key["last_used_at"])
    if last_used is None or last_used < now - _TOUCH_EVERY:
        await sql.execute("UPDATE api_key SET last_used_at = $1 WHERE id = $2", now, key["id"])
    permissions = key["permissions"]
    return Viewer(
        kind=ViewerKind.PLATFORM if key["is_platform"] else ViewerKind.PARTNER,
        actor=f"api_key:{key['id']}",
        partner_id=key["partner_id"],
        permissions=frozenset(
            Permission(p) for p in (orjson.loads(permissions) if isinstance(permissions, (str, bytes)) else permissions)
        ),
    )


async def revoke_key(viewer: Viewer, key_id: int) -> ApiKey:
    key = await tenancy.get_scoped(tenancy.api_keys(viewer), key_id, "API key", field="keyId")
    viewer.require(Permission.MANAGE_PARTNERS if key.is_platform or viewer.is_platform else Permission.MANAGE_USERS)
    if key.revoked_at is None:
        key.revoked_at = clock.now()
        async with in_transaction("default"):  # the change and its audit row together
            await key.save(update_fields=["revoked_at"])
            await audit.record(
                actor=viewer.actor,
                action="api_key.revoke",
                target_type="ApiKey",
                target_id=key.id,
                partner_id=key.partner_id,
                after={"revoked": True},
            )
            await realtime.publish(realtime.credentials_changed())
    return key
