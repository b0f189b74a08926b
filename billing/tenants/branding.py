"""A partner's brand: what its white-label portal shows, and the public look-up by domain."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from billing.core import audit, tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.core.tenancy import Viewer
from billing.core.text import check_text
from billing.tenants import origins
from billing.tenants.partners import check_email
from models.enums import Permission
from models.tenancy import Branding, Partner

_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
_DOMAIN = re.compile(r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


def _url(value: str, field: str) -> str:
    text = check_text(value, field, max_length=500)
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.netloc or parts.username or parts.password:
        raise BillingError(ErrorCode.INVALID_INPUT, "logo URLs must be https URLs", field=field)
    return text


def _colour(value: str, field: str) -> str:
    if not _COLOUR.fullmatch(value.strip()):
        raise BillingError(ErrorCode.INVALID_INPUT, "colours are #rrggbb hex", field=field)
    return value.strip().lower()


def check_domain(value: str, field: str = "customDomain") -> str:
    text = check_text(value, field, max_length=253).lower().rstrip(".")
    if not _DOMAIN.fullmatch(text):
        raise BillingError(ErrorCode.INVALID_INPUT, "not a valid domain name", field=field)
    return text


@dataclass
class BrandingChange:
    """Fields to change; None leaves a field as it is, "" clears an optional one."""

    display_name: str | None = None
    logo_url: str | None = None
    logo_dark_url: str | None = None
    favicon_url: str | None = None
    primary_color: str | None = None
    secondary_color: str | None = None
    support_email: str | None = None
    custom_domain: str | None = None  # kept on the partner: it is also how login finds the brand
    allowed_origins: list[str] | None = None  # replaces the list; [] empties it


async def update_branding(viewer: Viewer, *, partner_id: int, change: BrandingChange) -> Branding:
    viewer.require(Permission.MANAGE_USERS if not viewer.is_platform else Permission.MANAGE_PARTNERS)
    partner = await tenancy.get_scoped(tenancy.partners(viewer), partner_id, "partner")
    branding = await Branding.get_or_none(partner_id=partner.id) or Branding(
        partner_id=partner.id, display_name=partner.name
    )
    before = _snapshot(branding)
    checks: dict[str, Callable[[str, str], str]] = {
        "display_name": lambda v, f: check_text(v, f, max_length=200),
        "logo_url": _url,
        "logo_dark_url": _url,
        "favicon_url": _url,
        "primary_color": _colour,
        "secondary_color": _colour,
        "support_email": lambda v, f: check_email(v, f),
        "custom_domain": check_domain,
    }
    camel = {
        "display_name": "displayName",
        "logo_url": "logoUrl",
        "logo_dark_url": "logoDarkUrl",
        "favicon_url": "faviconUrl",
        "primary_color": "primaryColor",
        "secondary_color": "secondaryColor",
        "support_email": "supportEmail",
        "custom_domain": "customDomain",
    }
    before["custom_domain"] = partner.domain
    for name, check in checks.items():
        value = getattr(change, name)
        if value is None:
            continue
        target = partner if name == "custom_domain" else branding
        attribute = "domain" if name == "custom_domain" else name
        if value == "" and name != "display_name":
            setattr(target, attribute, None)
        else:
            setattr(target, attribute, check(value, camel[name]))
    if change.allowed_origins is not None:
        branding.allowed_origins = origins.check_allowed_origins(change.allowed_origins)
    after = _snapshot(branding)
    after["custom_domain"] = partner.domain
    try:
        async with in_transaction("default"):  # the change and its audit row together
            await origins.lock_claims()
            if change.allowed_origins is not None:
                await origins.check_unclaimed(branding.allowed_origins, partner.id)
            if partner.domain and partner.domain != before["custom_domain"]:
                await origins.check_domain_unclaimed(partner.domain, partner.id)
            await partner.save(update_fields=["domain"])
            await branding.save()
            await audit.record(
                actor=viewer.actor,
                action="branding.update",
                target_type="Branding",
                target_id=branding.id,
                partner_id=partner.id,
                before=before,
                after=after,
            )
    except IntegrityError:
        raise BillingError(
            ErrorCode.ALREADY_EXISTS, "that domain belongs to another partner", field="customDomain"
        ) from None
    origins.forget()
    return branding


def _snapshot(branding: Branding) -> dict[str, str | list[str] | None]:
    fields = (
        "display_name",
        "logo_url",
        "logo_dark_url",
        "favicon_url",
        "primary_color",
        "secondary_color",
        "support_email",
        "allowed_origins",
    )
    return {f: getattr(branding, f) for f in fields}


async def branding_for_domain(domain: str) -> tuple[Partner, Branding] | None:
    """Public: what a white-label login page at ``domain`` should look like."""
    try:
        text = check_domain(domain, field="domain")
    except BillingError:
        return None
    partner = await Partner.filter(domain=text).first()
    if partner is None:
        return None
    branding = await Branding.get_or_none(partner_id=partner.id)
    return (partner, branding) if branding else None
