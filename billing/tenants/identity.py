"""People: platform operators, partner users and workspace users; login sessions; password resets.

White label: one person may be a client of two brands, so an e-mail is unique within its partner and
`login` names the brand. Session and reset tokens are random secrets stored as SHA-256 hashes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from billing.core import audit, clock, realtime, sql, tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.core.tenancy import Viewer
from billing.tenants import origins, ratelimit
from billing.tenants.partners import canonical_email, check_email, check_name
from billing.tenants.passwords import check_new_password, hash_password, verify_password
from models.enums import PARTNER_PERMISSIONS, PLATFORM_PERMISSIONS, CredentialKind, Permission, ViewerKind
from models.tenancy import Partner, PartnerUser, PlatformUser, UserSession, WorkspaceUser

SESSION_PREFIX = "wbs"
SESSION_LIFETIME = timedelta(hours=12)
RESET_LIFETIME = timedelta(hours=2)
INVITE_LIFETIME = timedelta(days=7)

UserKind = Literal["PLATFORM", "PARTNER", "WORKSPACE"]
AnyUser = PlatformUser | PartnerUser | WorkspaceUser
_MODELS: dict[str, type[PlatformUser] | type[PartnerUser] | type[WorkspaceUser]] = {
    "PLATFORM": PlatformUser,
    "PARTNER": PartnerUser,
    "WORKSPACE": WorkspaceUser,
}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def viewer_for(kind: str, user: AnyUser) -> Viewer:
    actor = f"user:{kind}:{user.id}"
    if isinstance(user, PlatformUser):
        return Viewer(kind=ViewerKind.PLATFORM, actor=actor, permissions=PLATFORM_PERMISSIONS)
    if isinstance(user, PartnerUser):
        granted = PARTNER_PERMISSIONS if user.is_admin else frozenset(Permission(p) for p in user.permissions)
        return Viewer(
            kind=ViewerKind.PARTNER,
            actor=actor,
            partner_id=user.partner_id,
            permissions=granted & PARTNER_PERMISSIONS,
        )
    return Viewer(kind=ViewerKind.WORKSPACE, actor=actor, partner_id=user.partner_id, workspace_id=user.workspace_id)


# ---------------------------------------------------------------------------- brands and users


def _brand_text(brand: str) -> str:
    return brand.strip().lower()


async def find_brand(brand: str) -> Partner | None:
    """A partner by its custom domain, its slug or its database id."""
    text = _brand_text(brand)
    if not text or len(text) > 253 or "\x00" in text:
        return None
    partner = await Partner.filter(domain=text).first()
    if partner is None and len(text) <= 80:
        partner = await Partner.filter(slug=text).first()
    if partner is None and text.isascii() and text.isdigit() and len(text) < 19 and str(int(text)) == text:
        partner = await Partner.get_or_none(id=int(text))
    return partner


@dataclass(frozen=True, slots=True)
class Brand:
    """Where a sign-in or reset looks for its user: the platform (no brand named) or one partner."""

    platform: bool
    partner: Partner | None

    @property
    def key(self) -> str:
        """What the rate limits count under: the brand as resolved, so that every spelling of it (its
        domain, slug or id, in any case, with spaces around) shares one allowance."""
        if self.platform:
            return "platform"
        return f"partner:{self.partner.id}" if self.partner else "no-such-brand"


async def _same_brand_as_page(where: Brand, origin: str | None) -> None:
    if origin is None:
        return
    if where.platform:
        await origins.require_brand_of_origin(origin, None)
    else:  # a brand nobody has counts as another brand than the page's
        await origins.require_brand_of_origin(origin, where.partner.id if where.partner else -1)


async def resolve_brand(brand: str | None) -> Brand:
    if brand is None:
        return Brand(platform=True, partner=None)
    return Brand(platform=False, partner=await find_brand(brand))


async def _find_user(brand: Brand, email: str) -> tuple[str, AnyUser] | None:
    if brand.platform:
        user = await PlatformUser.get_or_none(email=email, is_active=True)
        return ("PLATFORM", user) if user else None
    if brand.partner is None:
        return None
    partner_user = await PartnerUser.get_or_none(partner_id=brand.partner.id, email=email, is_active=True)
    if partner_user is not None:
        return "PARTNER", partner_user
    workspace_user = await WorkspaceUser.get_or_none(partner_id=brand.partner.id, email=email, is_active=True)
    return ("WORKSPACE", workspace_user) if workspace_user else None


@dataclass(frozen=True, slots=True)
class NewUser:
    kind: str
    user: AnyUser
    invite_sent: bool


async def create_platform_user(*, email: str, password: str, name: str = "") -> PlatformUser:
    """For the command line: the first operator of a fresh install."""
    email = check_email(email)
    try:
        return await PlatformUser.create(
            email=email, password_hash=hash_password(check_new_password(password)), name=name
        )
    except IntegrityError:
        raise BillingError(ErrorCode.ALREADY_EXISTS, "an operator with this e-mail exists", field="email") from None


async def invite_partner_user(
    viewer: Viewer, *, partner_id: int, email: str, name: str = "", permissions: frozenset[Permission] = frozenset()
) -> NewUser:
    """Add a person to a partner's team. The partner's first user is its admin; the invitee sets a
    password through the e-mailed link. A parent invites the team of a partner reselling below it
    (MANAGE_SUB_PARTNERS, besides what inviting needs)."""
    if viewer.is_platform or partner_id == viewer.partner_id:
        partner = await tenancy.get_scoped(tenancy.partners(viewer), partner_id, "partner")
    else:
        partner = await tenancy.sub_partner(viewer, partner_id, child=True)
    email = check_email(email)
    name = check_name(name, field="name") if name.strip() else ""
    async with in_transaction("default"):
        first = not await PartnerUser.exists(partner_id=partner.id)
        if first:
            # The first user becomes the admin with every permission: only the platform managing
            # partners, or someone who already holds them all, may create it.
            if viewer.is_platform:
                viewer.require(Permission.MANAGE_PARTNERS)
            elif not PARTNER_PERMISSIONS <= viewer.permissions:
                raise BillingError(
                    ErrorCode.FORBIDDEN, "the partner's first user is its admin: it needs every permission to invite"
                )
        else:
            viewer.require(Permission.MANAGE_USERS)
        if not permissions <= PARTNER_PERMISSIONS:
            raise BillingError(ErrorCode.INVALID_INPUT, "not a partner permission", field="permissions")
        if not first and not viewer.is_platform and not permissions <= viewer.permissions:
            raise BillingError(ErrorCode.FORBIDDEN, "you cannot grant permissions you do not hold", field="permissions")
        if await PartnerUser.exists(partner_id=partner.id, email=email):
            raise BillingError(
                ErrorCode.ALREADY_EXISTS, "this partner already has a user with that e-mail", field="email"
            )
        user = await PartnerUser.create(
            partner_id=partner.id,
            email=email,
            name=name,
            is_admin=first,
            permissions=sorted(p.value for p in (PARTNER_PERMISSIONS if first else permissions)),
        )
        await audit.record(
            actor=viewer.actor,
            action="partner_user.invite",
            target_type="PartnerUser",
            target_id=user.id,
            partner_id=partner.id,
            after={"email": email, "is_admin": first, "permissions": user.permissions},
        )
        await _queue_invitation(kind="PARTNER", user=user)
    return NewUser("PARTNER", user, True)


async def create_workspace_user(viewer: Viewer, *, workspace_id: int, email: str, name: str = "") -> NewUser:
    """A client's login for the partner's branded portal; the client sets a password by e-mail."""
    viewer.require(Permission.MANAGE_WORKSPACES)
    workspace = await tenancy.get_scoped(tenancy.workspaces(viewer), workspace_id, "workspace")
    email = check_email(email)
    name = check_name(name, field="name") if name.strip() else ""
    async with in_transaction("default"):
        if await WorkspaceUser.exists(partner_id=workspace.partner_id, email=email):
            raise BillingError(
                ErrorCode.ALREADY_EXISTS, "this brand already has a user with that e-mail", field="email"
            )
        user = await WorkspaceUser.create(
            partner_id=workspace.partner_id, workspace_id=workspace.id, email=email, name=name
        )
        await audit.record(
            actor=viewer.actor,
            action="workspace_user.create",
            target_type="WorkspaceUser",
            target_id=user.id,
            partner_id=workspace.partner_id,
            after={"email": email, "workspace_id": audit.global_id("Workspace", workspace.id)},
        )
        await _queue_invitation(kind="WORKSPACE", user=user)
    return NewUser("WORKSPACE", user, True)


async def set_permissions(viewer: Viewer, *, user_id: int, permissions: frozenset[Permission]) -> PartnerUser:
    """The partner admin grants or revokes permissions of a team member."""
    viewer.require(Permission.MANAGE_USERS)
    scoped = PartnerUser.all() if viewer.is_platform else PartnerUser.filter(partner_id=viewer.partner_id)
    user = await tenancy.get_scoped(scoped, user_id, "user")
    if not permissions <= PARTNER_PERMISSIONS:
        raise BillingError(ErrorCode.INVALID_INPUT, "not a partner permission", field="permissions")
    if not viewer.is_platform and not permissions <= viewer.permissions:
        raise BillingError(ErrorCode.FORBIDDEN, "you cannot grant permissions you do not hold", field="permissions")
    if user.is_admin:
        raise BillingError(ErrorCode.LAST_ADMIN, "the partner admin holds every permission", field="userId")
    before = list(user.permissions)
    user.permissions = sorted(p.value for p in permissions)
    async with in_transaction("default"):  # the change and its audit row together
        await user.save(update_fields=["permissions"])
        await audit.record(
            actor=viewer.actor,
            action="partner_user.permissions",
            target_type="PartnerUser",
            target_id=user.id,
            partner_id=user.partner_id,
            before={"permissions": before},
            after={"permissions": user.permissions},
        )
        await realtime.publish(realtime.credentials_changed())
    return user


# ---------------------------------------------------------------------------- sessions


@dataclass(frozen=True, slots=True)
class Session:
    token: str  # shown once
    expires_at_iso: str
    viewer: Viewer
    email: str


async def login(
    *, brand: str | None, email: str, password: str, client_address: str | None, origin: str | None = None
) -> Session:
    """Exchange an e-mail and password for a session token. Every failure looks the same, but for a
    sign-in from a page of another brand (``origin``, the browser's Origin header): FORBIDDEN."""
    email_key = canonical_email(email)
    where = await resolve_brand(brand)
    await _same_brand_as_page(where, origin)
    await ratelimit.hit("login", account=f"{where.key}|{email_key}", address=client_address)
    found = await _find_user(where, email_key) if email_key else None
    user = found[1] if found else None
    if not verify_password(user.password_hash if user else None, password) or found is None:
        raise BillingError(ErrorCode.INVALID_CREDENTIALS, "e-mail or password is wrong")
    kind, user = found
    token = f"{SESSION_PREFIX}_{secrets.token_urlsafe(32)}"
    expires = clock.now() + SESSION_LIFETIME
    await UserSession.create(
        token_hash=_digest(token),
        user_kind=kind,
        user_id=user.id,
        partner_id=getattr(user, "partner_id", None),
        expires_at=expires,
    )
    return Session(token, expires.isoformat(), viewer_for(kind, user), user.email)


def credential_kind(token: str | None) -> CredentialKind:
    """What a bearer token is: a person's session, or else an API key."""
    return CredentialKind.SESSION if (token or "").startswith(f"{SESSION_PREFIX}_") else CredentialKind.API_KEY


async def authenticate_session(token: str) -> Viewer | None:
    if credential_kind(token) is not CredentialKind.SESSION:
        return None
    session = await UserSession.get_or_none(token_hash=_digest(token))
    now = clock.now()
    if session is None or session.revoked_at is not None or session.expires_at <= now:
        return None
    if not hmac.compare_digest(session.token_hash, _digest(token)):
        return None
    user = await _MODELS[session.user_kind].get_or_none(id=session.user_id, is_active=True)
    if user is None:
        return None
    return dataclasses.replace(viewer_for(session.user_kind, user), expires_at=session.expires_at)


async def logout(token: str | None) -> bool:
    """End the session ``token`` stands for: False if it had already ended."""
    if token is None or credential_kind(token) is not CredentialKind.SESSION:
        raise BillingError(ErrorCode.UNAUTHENTICATED, "logout ends a session; this request has none")
    changed = await sql.execute(
        "UPDATE user_session SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
        clock.now(),
        _digest(token),
    )
    await realtime.publish(realtime.credentials_changed())
    return changed == 1


async def _end_sessions_and_tokens(kind: str, user_id: int) -> None:
    now = clock.now()
    await sql.execute(
        "UPDATE user_session SET revoked_at = $1 WHERE user_kind = $2 AND user_id = $3 AND revoked_at IS NULL",
        now,
        kind,
        user_id,
    )
    await realtime.publish(realtime.credentials_changed())
    await sql.execute(
        "UPDATE password_reset_token SET used_at = $1 WHERE user_kind = $2 AND user_id = $3 AND used_at IS NULL",
        now,
        kind,
        user_id,
    )


def _user_ref(viewer: Viewer) -> tuple[str, int]:
    kind, _, user_id = viewer.actor.removeprefix("user:").partition(":")
    if not viewer.actor.startswith("user:") or not user_id.isdigit():
        raise BillingError(ErrorCode.FORBIDDEN, "only a signed-in person can do this")
    return kind, int(user_id)


async def change_password(viewer: Viewer, *, current: str, new: str) -> None:
    """Ends every session and pending reset link of the user, the current session included."""
    kind, user_id = _user_ref(viewer)
    user = await _MODELS[kind].get(id=user_id)
    if not verify_password(user.password_hash, current):
        raise BillingError(ErrorCode.INVALID_CREDENTIALS, "the current password is wrong", field="currentPassword")
    async with in_transaction("default"):
        user.password_hash = hash_password(check_new_password(new, field="newPassword"))
        await user.save(update_fields=["password_hash"])
        await _end_sessions_and_tokens(kind, user_id)


# ---------------------------------------------------------------------------- password reset


LINK_EVENT = "email.password_reset"


def _link_payload(*, purpose: str, to: str, platform: bool, user: tuple[str, int] | None = None) -> dict[str, object]:
    """What the outbox keeps of a password e-mail: whom to look up at send time, never a token. The
    same keys whether or not the user is known (a reset request names only a brand and an e-mail)."""
    kind, user_id = user if user else (None, None)
    return {"purpose": purpose, "to": to, "platform": platform, "user_kind": kind, "user_id": user_id}


async def _queue_invitation(*, kind: str, user: AnyUser) -> None:
    await audit.emit(
        LINK_EVENT,
        getattr(user, "partner_id", None),
        _link_payload(purpose="invite", to=user.email, platform=kind == "PLATFORM", user=(kind, user.id)),
    )


async def request_password_reset(
    *, brand: str | None, email: str, client_address: str | None, origin: str | None = None
) -> None:
    """Always answers the same, whether or not the e-mail belongs to anyone, and does the same work:
    it queues one e-mail row either way; who the user is, and the token, are settled when the e-mail
    is sent (``mint_link``). From a page of another brand (``origin``): FORBIDDEN, as ``login``."""
    email_key = canonical_email(email)
    where = await resolve_brand(brand)
    await _same_brand_as_page(where, origin)
    await ratelimit.hit("reset", account=f"{where.key}|{email_key}", address=client_address)
    await audit.emit(
        LINK_EVENT,
        where.partner.id if where.partner else None,
        _link_payload(purpose="reset", to=email_key, platform=where.platform),
    )


@dataclass(frozen=True, slots=True)
class Link:
    """A password e-mail's link, in memory only: the database keeps the token's hash."""

    to: str
    purpose: str
    token: str
    lifetime: timedelta


# One token per e-mail row: a send that is retried replaces the token its failed attempt made, unless
# that one has been used already (the e-mail did go out), in which case nothing is sent again.
_MINT = (
    "INSERT INTO password_reset_token (created_at, token_hash, user_kind, user_id, partner_id, expires_at,"
    " outbox_event_id) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    " ON CONFLICT (outbox_event_id) DO UPDATE SET token_hash = excluded.token_hash,"
    " expires_at = excluded.expires_at, created_at = excluded.created_at"
    " WHERE password_reset_token.used_at IS NULL"
)


async def mint_link(event: dict[str, Any]) -> Link | None:
    """At send time: the user a password e-mail row is for, and a fresh token stored as its hash.
    None when there is nobody to write to (an unknown e-mail, a user since removed)."""
    payload = event.get("payload") or {}
    purpose = "invite" if payload.get("purpose") == "invite" else "reset"
    found: tuple[str, AnyUser] | None = None
    kind, user_id = payload.get("user_kind"), payload.get("user_id")
    if kind in _MODELS and isinstance(user_id, int):
        user = await _MODELS[kind].get_or_none(id=user_id, is_active=True)
        found = (kind, user) if user else None
    elif purpose == "reset":
        partner_id = event.get("partner_id")
        partner = await Partner.get_or_none(id=partner_id) if partner_id is not None else None
        found = await _find_user(Brand(platform=bool(payload.get("platform")), partner=partner), str(payload.get("to")))
    if found is None:
        return None
    kind, user = found
    lifetime = INVITE_LIFETIME if purpose == "invite" else RESET_LIFETIME
    token = secrets.token_urlsafe(32)
    now = clock.now()
    minted = await sql.execute(
        _MINT, now, _digest(token), kind, user.id, getattr(user, "partner_id", None), now + lifetime, event["id"]
    )
    if minted != 1:
        return None
    return Link(to=user.email, purpose=purpose, token=token, lifetime=lifetime)


async def reset_password(*, token: str, new_password: str) -> None:
    """Use a reset (or invite) token once; it also ends the user's sessions and other tokens."""
    check_new_password(new_password, field="newPassword")
    now = clock.now()
    async with in_transaction("default"):
        # Claiming the token is the conditional update: two uses race, one wins.
        rows = await sql.fetch(
            "UPDATE password_reset_token SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1"
            " RETURNING user_kind, user_id",
            now,
            _digest(token or ""),
        )
        if not rows:
            raise BillingError(ErrorCode.INVALID_TOKEN, "this link is invalid, used or expired", field="token")
        kind, user_id = rows[0]["user_kind"], rows[0]["user_id"]
        user = await _MODELS[kind].get(id=user_id)
        user.password_hash = hash_password(new_password)
        await user.save(update_fields=["password_hash"])
        await _end_sessions_and_tokens(kind, user_id)


async def email_of(viewer: Viewer) -> str | None:
    """The signed-in person's e-mail (None for API keys)."""
    if not viewer.actor.startswith("user:"):
        return None
    kind, user_id = _user_ref(viewer)
    user = await _MODELS[kind].get_or_none(id=user_id)
    return user.email if user else None
