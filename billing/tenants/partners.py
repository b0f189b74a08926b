"""Onboarding: partners, their workspaces (each with a default project) and projects."""

from __future__ import annotations

import re

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from billing.core import audit, config, tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import check_currency
from billing.core.tenancy import Viewer
from billing.core.text import check_text
from models.enums import Permission, StatusReasonKind, ViewerKind, WorkspaceStatus
from models.tenancy import Branding, Partner, Project, Workspace

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,253}\.[^@\s]+$")


def canonical_email(email: str | None) -> str:
    """The one form of an e-mail: how it is stored, looked up at sign-in and counted by the rate limits
    (trimmed, lower-case). Two spellings of one address must never be two people or two allowances."""
    return (email or "").replace("\x00", "").strip().lower()[:254]


def check_email(email: str, field: str = "email") -> str:
    value = canonical_email(check_text(email, field, max_length=254))
    if not _EMAIL.match(value):
        raise BillingError(ErrorCode.INVALID_INPUT, "not a valid e-mail address", field=field)
    return value


def check_name(name: str, field: str = "name") -> str:
    return check_text(name, field, max_length=200)


async def create_partner(viewer: Viewer, *, name: str, slug: str, currency: str = "USD") -> Partner:
    viewer.require(Permission.MANAGE_PARTNERS)
    return await _create(viewer, name=name, slug=slug, currency=currency, parent=None)


async def create_sub_partner(viewer: Viewer, *, name: str, slug: str, currency: str | None = None) -> Partner:
    """A partner reselling through the caller's partner: a full partner of its own (users, brand, gateway,
    workspaces, plans), one level further from the platform, never beyond WHITEBILL_MAX_PARTNER_LEVELS. It
    pays the caller's prices, in the caller's currency (naming another is refused)."""
    viewer.require(Permission.MANAGE_SUB_PARTNERS)
    if viewer.kind is not ViewerKind.PARTNER or viewer.partner_id is None:
        raise BillingError(ErrorCode.FORBIDDEN, "sub-partners are made by a partner (the platform makes partners)")
    parent = await Partner.get(id=viewer.partner_id)
    deepest = config.current().max_partner_levels
    if parent.level >= deepest:
        raise BillingError(
            ErrorCode.FORBIDDEN, f"partners sit at most {deepest} levels below the platform: this one cannot resell"
        )
    if currency is not None and check_currency(currency, field="currency") != parent.default_currency:
        # Prices and balances run down the chain in one currency: the parent's margins and its balance with
        # its own parent are in its currency.
        raise BillingError(
            ErrorCode.INVALID_INPUT,
            f"a sub-partner sells in its parent's currency, {parent.default_currency}",
            field="currency",
        )
    return await _create(viewer, name=name, slug=slug, currency=parent.default_currency, parent=parent)


async def _create(viewer: Viewer, *, name: str, slug: str, currency: str, parent: Partner | None) -> Partner:
    name = check_name(name)
    slug = check_text(slug, "slug", max_length=80).lower()
    if not _SLUG.match(slug):
        raise BillingError(ErrorCode.INVALID_INPUT, "slug must be lowercase letters, digits and dashes", field="slug")
    currency = check_currency(currency, field="currency")
    try:
        async with in_transaction("default"):
            partner = await Partner.create(
                name=name,
                slug=slug,
                default_currency=currency,
                parent_id=parent.id if parent else None,
                level=parent.level + 1 if parent else 1,
            )
            await Branding.create(partner=partner, display_name=name)
            after: dict[str, str | None] = {"name": name, "slug": slug, "currency": currency}
            if parent is not None:
                after["parent"] = audit.global_id("Partner", parent.id)
            await audit.record(
                actor=viewer.actor,
                action="partner.create",
                target_type="Partner",
                target_id=partner.id,
                # A sub-partner is made by its parent: the entry is in the parent's log, not the child's (which
                # never reads its parent's id).
                partner_id=parent.id if parent else partner.id,
                after=after,
            )
    except IntegrityError:
        raise BillingError(ErrorCode.ALREADY_EXISTS, f"a partner with slug {slug!r} exists", field="slug") from None
    return partner


async def create_workspace(viewer: Viewer, *, name: str, owner_email: str, partner_id: int | None = None) -> Workspace:
    """Create a client workspace and its default project (AiSensy)."""
    viewer.require(Permission.MANAGE_WORKSPACES)
    partner_id = partner_id if partner_id is not None else viewer.partner_id
    if partner_id is None:
        raise BillingError(ErrorCode.INVALID_INPUT, "the platform must name the partner", field="partnerId")
    partner = await tenancy.get_scoped(tenancy.partners(viewer), partner_id, "partner")
    name = check_name(name)
    owner_email = check_email(owner_email, field="ownerEmail")
    async with in_transaction("default"):
        # No plan yet: a new client starts RESTRICTED (LiveChat360) until one is assigned.
        workspace = await Workspace.create(
            partner_id=partner.id,
            name=name,
            owner_email=owner_email,
            status=WorkspaceStatus.RESTRICTED,
            status_reasons=[{"kind": StatusReasonKind.NO_PLAN}],
        )
        await Project.create(partner_id=partner.id, workspace=workspace, name=name, is_default=True)
        await audit.record(
            actor=viewer.actor,
            action="workspace.create",
            target_type="Workspace",
            target_id=workspace.id,
            partner_id=partner.id,
            after={"name": name, "owner_email": owner_email},
        )
        await audit.emit(
            "workspace.created",
            partner.id,
            {"workspace_id": workspace.id, "name": name, "owner_email": owner_email},
        )
    return workspace
