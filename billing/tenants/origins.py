"""Which web pages may call the API from a browser, and for which brand.

A browser origin (``scheme://host[:port]``) belongs to a partner when its host is the partner's custom
domain (https on the default port; outside production any scheme and port, so a page on
``http://brand.localhost:8000`` works in development) or when the partner listed it in its branding's
``allowedOrigins``. The platform's own origins come from ``WHITEBILL_CORS_ORIGINS``. The HTTP shell
(``whitebill.cors``) answers CORS from this; ``login`` refuses a brand other than the origin's.

Origins are looked up in a directory of every partner's, read again when it is older than
``DIRECTORY_SECONDS`` (a change made by another process is seen within that) or at once after a change
made here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from billing.core import config, sql
from billing.core.errors import BillingError, ErrorCode
from billing.core.text import check_text
from models.tenancy import Branding, Partner

MAX_ALLOWED_ORIGINS = 20
DIRECTORY_SECONDS = 5.0
_HOST_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")


@dataclass(frozen=True, slots=True)
class Owner:
    """Whom an origin belongs to: a partner, or (``partner_id`` None) the platform's own list."""

    partner_id: int | None

    @property
    def is_platform(self) -> bool:
        return self.partner_id is None


PLATFORM = Owner(None)


def _parts(origin: str) -> tuple[str, str, int | None] | None:
    """scheme, host and port of a browser origin, or None when it is not one (a path, a user, "null")."""
    if not origin.isascii() or origin != origin.strip() or "\\" in origin:
        return None
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if (
        parts.scheme not in ("http", "https")
        or not host
        or parts.username is not None
        or parts.password is not None
        or parts.path
        or parts.query
        or parts.fragment
        or origin.endswith(":")
        or not set(host) <= _HOST_LABEL_CHARS
    ):
        return None
    return parts.scheme, host, port


def check_origin(value: str, field: str, *, production: bool) -> str:
    """An origin as a browser sends it, lower-cased: ``https://app.agency.com`` or, outside production,
    ``http://localhost:5173``. Refused: paths, users, other schemes, http in production."""
    text = check_text(value, field, max_length=300).lower()
    if text.endswith("/") and text.count("/") == 3:  # "https://app.example.com/", as copied from a browser
        text = text[:-1]
    parsed = _parts(text)
    if parsed is None:
        raise BillingError(
            ErrorCode.INVALID_INPUT, "an origin is scheme://host[:port], e.g. https://app.example.com", field=field
        )
    scheme, host, port = parsed
    if production and scheme != "https":
        raise BillingError(ErrorCode.INVALID_INPUT, "origins must be https in production", field=field)
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" if port in (None, default) else f"{scheme}://{host}:{port}"


def check_allowed_origins(values: list[str], field: str = "allowedOrigins") -> list[str]:
    if len(values) > MAX_ALLOWED_ORIGINS:
        raise BillingError(ErrorCode.INVALID_INPUT, f"at most {MAX_ALLOWED_ORIGINS} origins", field=field)
    production = config.current().production
    checked = [check_origin(value, field, production=production) for value in values]
    return sorted(set(checked))


class _Directory:
    def __init__(self) -> None:
        self.read_at = float("-inf")
        self.by_domain: dict[str, int] = {}
        self.by_origin: dict[str, int] = {}

    async def load(self) -> None:
        by_domain = {domain: pid for pid, domain in await Partner.exclude(domain=None).values_list("id", "domain")}
        by_origin: dict[str, int] = {}
        # Oldest listing first: were two partners ever to list one origin, every process picks the same.
        rows = await Branding.all().order_by("id").values_list("partner_id", "allowed_origins")
        for partner_id, listed in rows:
            for origin in listed or ():
                by_origin.setdefault(origin, partner_id)
        self.by_domain, self.by_origin, self.read_at = by_domain, by_origin, time.monotonic()


_directory = _Directory()


def forget() -> None:
    """Read the directory again at the next look-up (after a change to a domain or a list)."""
    _directory.read_at = float("-inf")


async def owner_of(origin: str | None) -> Owner | None:
    """Whom the browser origin ``origin`` belongs to, or None when nobody listed it."""
    if not origin:
        return None
    text = origin.lower()
    parsed = _parts(text)
    if parsed is None:
        return None
    scheme, host, port = parsed
    settings = config.current()
    if text in settings.cors_origins:
        return PLATFORM
    if time.monotonic() - _directory.read_at > DIRECTORY_SECONDS:
        await _directory.load()
    # A custom domain belongs to its partner whatever another partner listed (``check_unclaimed``
    # refuses such a listing, but a domain can be taken after the listing was made).
    partner_id = _directory.by_domain.get(host)
    if partner_id is not None and ((scheme == "https" and port in (None, 443)) or not settings.production):
        return Owner(partner_id)
    listed = _directory.by_origin.get(text)
    if listed is None or (partner_id is not None and listed != partner_id):
        return None
    return Owner(listed)


async def lock_claims() -> None:
    """Inside a transaction: claims of origins and domains are checked and saved one at a time
    (PostgreSQL; SQLite writes one transaction at a time anyway)."""
    if sql.is_postgres():
        await sql.fetch("SELECT pg_advisory_xact_lock(hashtext('whitebill.origins'))")


async def check_unclaimed(listed: list[str], partner_id: int, field: str = "allowedOrigins") -> None:
    """ALREADY_EXISTS when one of ``listed`` is another partner's (on its custom domain, or in its list)
    or this server's own. One partner could otherwise answer for another's pages, or hold their sign-ins
    to the wrong brand. Call it under ``lock_claims``."""
    await _directory.load()
    own = _api_origin()
    for origin in listed:
        host = (_parts(origin) or ("", "", None))[1]
        owner = _directory.by_domain.get(host, _directory.by_origin.get(origin, partner_id))
        if owner != partner_id or origin == own:
            raise BillingError(ErrorCode.ALREADY_EXISTS, f"{origin} belongs to another partner", field=field)


async def check_domain_unclaimed(domain: str, partner_id: int, field: str = "customDomain") -> None:
    """ALREADY_EXISTS when another partner lists an origin on ``domain``: taking the domain would take
    that partner's pages. Call it under ``lock_claims``."""
    await _directory.load()
    for origin, owner in _directory.by_origin.items():
        if owner != partner_id and (_parts(origin) or ("", "", None))[1] == domain:
            raise BillingError(ErrorCode.ALREADY_EXISTS, "another partner's pages are on that domain", field=field)


def _api_origin() -> str | None:
    """This server's own origin (the public URL's): its pages are the platform's, never a partner's."""
    try:
        return check_origin(config.current().public_url, "publicUrl", production=False)
    except BillingError:
        return None


async def require_brand_of_origin(origin: str | None, partner_id: int | None) -> None:
    """A sign-in (or reset) for the brand ``partner_id`` (None: the platform) from a page on ``origin``:
    FORBIDDEN when the page belongs to another partner's brand. Pages nobody listed, the platform's
    own and callers that are not browsers (no origin) are not held to a brand."""
    owner = await owner_of(origin)
    if owner is None or owner.is_platform or owner.partner_id == partner_id:
        return
    raise BillingError(ErrorCode.FORBIDDEN, "this page belongs to another brand: sign in on your own brand's page")
