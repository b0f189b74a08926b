"""What the domain is told at start-up: plain values, handed over by the application shell.

The domain never reads the environment. ``whitebill.settings`` reads it once, builds a
``DomainConfig`` and passes it to ``configure`` when a process starts (the app factory, the worker
and CLI commands, the test suite); the domain asks ``current()`` when it needs a value. Without a
call to ``configure`` the defaults below apply, which are those documented for each variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class DomainConfig:
    production: bool = False  # partner webhook URLs must then be https to public addresses
    # Outside production: networks a tenant's URL may reach besides the public internet (a receiver on
    # this machine); production never lets one through.
    outbound_allowed_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    cheap_password_hash: bool = False  # tests only: fast argon2 parameters
    secret_key: str = field(default="", repr=False)  # Fernet key(s), comma-separated: the first encrypts
    login_limit_per_email: str = "10/minute"  # `limits` rate strings
    login_limit_per_address: str = "60/minute"
    reset_limit_per_email: str = "5/hour"
    reset_limit_per_address: str = "30/hour"
    rate_limit_storage: str = field(default="async+memory://", repr=False)  # a `limits` storage URL
    expiry_notice_days: int = 7  # 0: no notice before a plan ends without renewing
    public_url: str = "http://127.0.0.1:8000"  # the address providers reach (webhook URLs)
    gateway_api_bases: Mapping[str, str] = field(default_factory=dict)  # provider, upper-case -> its API base
    gateway_timeout_seconds: float | None = None  # None: each adapter's own
    smtp_url: str | None = field(default=None, repr=False)  # None: e-mails are written to the log
    mail_from: str | None = None  # None: no-reply@<smtp host>
    reset_url: str = "http://127.0.0.1:8000/reset-password"  # the page a reset link opens (?token=)
    # A usage event's occurredAt: at most this far ahead of now (the product's clock may run a little
    # fast), and not before the start of the UTC month this many months back (0: the current month).
    usage_max_ahead_seconds: int = 300
    usage_months_back: int = 1
    # Levels of partners below the platform (WHITEBILL_MAX_PARTNER_LEVELS): 1 is the platform's direct
    # partners only; at most 3 (a master reseller, its agencies, their freelancers).
    max_partner_levels: int = 3
    # Browser origins of the platform's own pages (WHITEBILL_CORS_ORIGINS), allowed whatever the caller;
    # partners' origins come from their branding (billing.tenants.origins).
    cors_origins: tuple[str, ...] = ()


_current = DomainConfig()


def configure(config: DomainConfig) -> None:
    """Install the configuration this process runs with (again at will: tests reconfigure)."""
    global _current
    _current = config


def current() -> DomainConfig:
    return _current
