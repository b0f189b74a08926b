"""Configuration from the environment; every variable is documented in the README.

This is the one module that reads the environment: the domain (billing) receives what it needs as a
``DomainConfig`` through ``configure_domain`` when a process starts.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from limits import parse as parse_rate_limit

from billing.core import config

log = logging.getLogger("whitebill.settings")
T = TypeVar("T")

SECRET_KEY_ENV = "WHITEBILL_SECRET_KEY"  # noqa: S105 (the variable's name, not a key)
NOTICE_DAYS_ENV = "WHITEBILL_EXPIRY_NOTICE_DAYS"
DEFAULT_NOTICE_DAYS = 7
TIMEOUT_ENV = "WHITEBILL_GATEWAY_TIMEOUT_SECONDS"
USAGE_AHEAD_ENV = "WHITEBILL_USAGE_MAX_AHEAD_SECONDS"
DEFAULT_USAGE_AHEAD_SECONDS = 300
USAGE_MONTHS_BACK_ENV = "WHITEBILL_USAGE_MONTHS_BACK"
DEFAULT_USAGE_MONTHS_BACK = 1
PARTNER_LEVELS_ENV = "WHITEBILL_MAX_PARTNER_LEVELS"
DEFAULT_PARTNER_LEVELS = 3
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own name for it
WORKER_HEALTH_PORT_ENV = "WHITEBILL_WORKER_HEALTH_PORT"
STALL_ENV = "WHITEBILL_WORKER_STALL_SECONDS"
DEFAULT_STALL_SECONDS = 120  # longer than the worker's longest pass (a batch of slow webhook receivers)
_API_BASE = re.compile(r"WHITEBILL_(.+)_API_BASE")
OUTBOUND_ALLOW_ENV = "WHITEBILL_OUTBOUND_ALLOW"
CORS_ORIGINS_ENV = "WHITEBILL_CORS_ORIGINS"
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default="sqlite://whitebill.sqlite3", repr=False)  # may hold a password
    env: str = "development"  # development, production, test
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    test_clock: bool = False  # lets tests move time, also across processes
    password_hash_cheap: bool = False  # tests only: fast argon2 parameters
    processes: int = 1  # server processes on the port (`whitebill serve`)
    secret_key: str = field(default="", repr=False)  # Fernet key(s), comma-separated, for gateway credentials
    public_url: str = "http://127.0.0.1:8000"  # the address providers reach, in webhook URLs
    gateway_api_bases: dict[str, str] = field(default_factory=dict)  # provider (upper-case) -> API base
    gateway_timeout_seconds: float | None = None  # provider calls; None: each adapter's own
    smtp_url: str | None = field(default=None, repr=False)  # None: e-mails are written to the log
    mail_from: str | None = None  # e-mail sender; None: no-reply@<smtp host>
    reset_url: str = "http://127.0.0.1:8000/reset-password"  # the page a reset or invitation link opens
    expiry_notice_days: int = DEFAULT_NOTICE_DAYS  # notice before a plan ends without renewing; 0: none
    rate_limit_storage: str = field(default="async+memory://", repr=False)  # where attempt counts live
    login_limit_per_email: str = "10/minute"  # login attempts allowed
    login_limit_per_address: str = "60/minute"
    reset_limit_per_email: str = "5/hour"  # password-reset requests allowed
    reset_limit_per_address: str = "30/hour"
    # A usage event's occurredAt: at most this many seconds ahead of now, and not before the start of
    # the UTC month this many months back (1: the previous month), so every charge lands in a report.
    usage_max_ahead_seconds: int = DEFAULT_USAGE_AHEAD_SECONDS
    usage_months_back: int = DEFAULT_USAGE_MONTHS_BACK
    # How many levels of partners may sit below the platform (1: no sub-partners; at most 3).
    max_partner_levels: int = DEFAULT_PARTNER_LEVELS
    cors_origins: tuple[str, ...] = ()  # the platform's own browser origins (partners list theirs in branding)
    # Development and tests only: networks a partner's webhook URL may reach besides public addresses.
    outbound_allowed_networks: tuple[str, ...] = LOOPBACK_NETWORKS
    max_body_bytes: int = 1024 * 1024  # a request body (GraphQL, webhooks) or websocket message, read up to this
    max_usage_body_bytes: int = 4 * 1024 * 1024  # a POST /usage batch (up to 1,000 events)
    max_query_bytes: int = 64 * 1024  # a GraphQL document's text, in UTF-8 bytes
    metrics_dir: str | None = None  # PROMETHEUS_MULTIPROC_DIR: metrics shared by `serve --processes N`
    # `whitebill worker`'s /healthz and /metrics (WHITEBILL_WORKER_HEALTH_PORT): None, not served; 0, any free
    # port (printed); and the age of its last completed pass past which /healthz answers 503.
    worker_health_port: int | None = None
    worker_stall_seconds: int = DEFAULT_STALL_SECONDS
    # "any": every valid operation runs (and APQ learns documents); "registered": only the operations
    # registered with `whitebill operations register` (whitebill.operations).
    operations: str = "any"
    # DATABASE_URL goes through pgbouncer in transaction mode (WHITEBILL_PGBOUNCER): no named prepared
    # statements (database_url then carries statement_cache_size=0), and LISTEN goes to listen_database_url.
    pgbouncer: bool = False
    # WHITEBILL_LISTEN_DATABASE_URL: a direct connection to PostgreSQL for live updates' LISTEN (it needs
    # a session of its own); None: DATABASE_URL's server.
    listen_database_url: str | None = field(default=None, repr=False)

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgres://", "postgresql://", "asyncpg://"))

    @property
    def development(self) -> bool:
        return self.env != "production"

    def domain_config(self) -> config.DomainConfig:
        """What the domain needs of these settings."""
        return config.DomainConfig(
            production=self.env == "production",
            cheap_password_hash=self.password_hash_cheap,
            secret_key=self.secret_key,
            login_limit_per_email=self.login_limit_per_email,
            login_limit_per_address=self.login_limit_per_address,
            reset_limit_per_email=self.reset_limit_per_email,
            reset_limit_per_address=self.reset_limit_per_address,
            rate_limit_storage=self.rate_limit_storage,
            expiry_notice_days=self.expiry_notice_days,
            public_url=self.public_url,
            gateway_api_bases=dict(self.gateway_api_bases),
            gateway_timeout_seconds=self.gateway_timeout_seconds,
            smtp_url=self.smtp_url,
            mail_from=self.mail_from,
            reset_url=self.reset_url,
            usage_max_ahead_seconds=self.usage_max_ahead_seconds,
            usage_months_back=self.usage_months_back,
            max_partner_levels=self.max_partner_levels,
            cors_origins=self.cors_origins,
            outbound_allowed_networks=() if self.env == "production" else self.outbound_allowed_networks,
        )


def configure_domain(settings: Settings) -> None:
    """Hand the domain its configuration: every process does this at start-up."""
    config.configure(settings.domain_config())


def _notice_days() -> int:
    raw = os.environ.get(NOTICE_DAYS_ENV, "").strip()
    if not raw:
        return DEFAULT_NOTICE_DAYS
    try:
        return max(0, min(int(raw), 366))
    except ValueError:
        log.warning("%s=%r is not a number of days: using %d", NOTICE_DAYS_ENV, raw, DEFAULT_NOTICE_DAYS)
        return DEFAULT_NOTICE_DAYS


def _whole_number(name: str, default: int, highest: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None
    if not 0 <= value <= highest:
        raise ValueError(f"{name}={raw!r} lies between 0 and {highest}")
    return value


def _api_bases() -> dict[str, str]:
    """WHITEBILL_<PROVIDER>_API_BASE for every provider, installed or not (gateways are plug-ins)."""
    return {match[1]: value for name, value in os.environ.items() if (match := _API_BASE.fullmatch(name))}


def _timeout() -> float | None:
    raw = os.environ.get(TIMEOUT_ENV)
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None


def _operations_mode() -> str:
    raw = os.environ.get("WHITEBILL_OPERATIONS", "any")
    if raw not in ("any", "registered"):
        raise ValueError(f"WHITEBILL_OPERATIONS={raw!r} is any (the default) or registered")
    return raw


def _rate_limit(name: str, default: str) -> str:
    raw = os.environ.get(name, default)
    try:
        parse_rate_limit(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a rate limit such as 10/minute") from None
    return raw


def _outbound_allowed(env: str) -> tuple[str, ...]:
    """WHITEBILL_OUTBOUND_ALLOW: comma-separated networks (``127.0.0.0/8,::1``; empty for none) that
    partner webhook URLs may reach besides public addresses. Loopback by default outside production;
    refused in production, which sends only to public addresses."""
    raw = os.environ.get(OUTBOUND_ALLOW_ENV)
    if env == "production":
        if raw:
            raise ValueError(
                f"{OUTBOUND_ALLOW_ENV} is for development and tests: production sends only to public addresses"
            )
        return ()
    if raw is None:
        return LOOPBACK_NETWORKS
    networks = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ValueError(f"{OUTBOUND_ALLOW_ENV}: {part!r} is not a network such as 127.0.0.0/8") from None
    return tuple(networks)


def _cors_origins(env: str) -> tuple[str, ...]:
    """WHITEBILL_CORS_ORIGINS: the platform's own browser origins, comma-separated (https in production)."""
    from billing.core.errors import BillingError
    from billing.tenants.origins import check_origin

    origins = []
    for part in filter(None, (p.strip() for p in os.environ.get(CORS_ORIGINS_ENV, "").split(","))):
        try:
            origins.append(check_origin(part, CORS_ORIGINS_ENV, production=env == "production"))
        except BillingError as error:
            raise ValueError(f"{CORS_ORIGINS_ENV}: {part!r}: {error.message}") from None
    return tuple(origins)


def _bytes(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1024:
        raise ValueError(f"{name}={raw!r} is not a number of bytes (1024 or more)")
    return int(raw)


ENVIRONMENTS = ("development", "test", "production")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """The environment's settings have problems: each is one line saying what to set."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _environment() -> str:
    raw = os.environ.get("WHITEBILL_ENV", "development")
    if raw not in ENVIRONMENTS:
        raise ValueError(f"WHITEBILL_ENV={raw!r} is one of {', '.join(ENVIRONMENTS)}")
    return raw


def _integer(name: str, default: int, lowest: int, highest: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or not lowest <= int(raw) <= highest:
        raise ValueError(f"{name}={raw!r} is a whole number from {lowest} to {highest}")
    return int(raw)


def _worker_health_port() -> int | None:
    """WHITEBILL_WORKER_HEALTH_PORT: unset or empty, the worker serves no health endpoint; 0, a free port."""
    if not os.environ.get(WORKER_HEALTH_PORT_ENV, "").strip():
        return None
    return _integer(WORKER_HEALTH_PORT_ENV, 0, 0, 65535)


def _log_level() -> str:
    raw = os.environ.get("LOG_LEVEL", "INFO")
    if raw.upper() not in LOG_LEVELS:
        raise ValueError(f"LOG_LEVEL={raw!r} is one of {', '.join(LOG_LEVELS)}")
    return raw.upper()


def load_settings() -> Settings:
    """The settings from the environment, every variable checked: SettingsError lists every problem."""
    problems: list[str] = []

    def checked(read: Callable[[], T], fallback: T) -> T:
        try:
            return read()
        except ValueError as problem:
            problems.append(str(problem))
            return fallback

    env = checked(_environment, "development")
    settings = checked(lambda: _read(env, checked), Settings())
    if env == "production":
        problems += _production_problems(settings)
    if problems:
        raise SettingsError(problems)
    return settings


ALLOW_SQLITE_ENV = "WHITEBILL_ALLOW_SQLITE_IN_PRODUCTION"


def _production_problems(settings: Settings) -> list[str]:
    """What production needs beyond well-formed values: a valid key for gateway credentials, PostgreSQL
    (unless SQLite is explicitly allowed), and a public address that providers and partners can reach."""
    from cryptography.fernet import Fernet

    problems = []
    keys = [k.strip() for k in settings.secret_key.split(",") if k.strip()]
    if not keys:
        problems.append(f"{SECRET_KEY_ENV} is required in production: make one with `whitebill secret-key`")
    for number, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except ValueError:
            problems.append(f"{SECRET_KEY_ENV}: key {number} is not a key `whitebill secret-key` makes")
    if not settings.is_postgres and not _flag(ALLOW_SQLITE_ENV):
        problems.append(f"DATABASE_URL is SQLite: production runs on PostgreSQL ({ALLOW_SQLITE_ENV}=1 to run anyway)")
    host = (urlsplit(settings.public_url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost") or _is_loopback(host):
        problems.append(
            f"WHITEBILL_PUBLIC_URL={settings.public_url!r} is a loopback address: set the address providers reach"
        )
    return problems


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


DATABASE_SCHEMES = ("sqlite://", "postgres://", "postgresql://", "asyncpg://")


def _database_url() -> str:
    """DATABASE_URL: ``sqlite://PATH`` (its folder must exist: SQLite would wait for it forever) or
    ``postgres://USER:PASSWORD@HOST:PORT/NAME``."""
    raw = os.environ.get("DATABASE_URL", "sqlite://whitebill.sqlite3")
    if not raw.startswith(DATABASE_SCHEMES):  # the rest is not shown: it may hold a password
        scheme = raw.split("://")[0][:20] if "://" in raw else "no scheme"
        raise ValueError(f"DATABASE_URL ({scheme!r}) is sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/NAME")
    if not raw.startswith("sqlite://"):
        try:
            urlsplit(raw).port  # noqa: B018 (read to check it: a password with a bare / ? # @ breaks the URL)
        except ValueError:
            raise ValueError(
                "DATABASE_URL cannot be read: percent-encode / ? # @ : in its user and password (%2F %3F %23 %40 %3A)"
            ) from None
    if raw.startswith("sqlite://"):
        path = raw[len("sqlite://") :].split("?")[0]
        if path != ":memory:" and not Path(path or ".").absolute().parent.is_dir():
            raise ValueError(f"DATABASE_URL: the folder of the SQLite file {path!r} does not exist: create it first")
    return raw


PGBOUNCER_ENV = "WHITEBILL_PGBOUNCER"
LISTEN_URL_ENV = "WHITEBILL_LISTEN_DATABASE_URL"
POSTGRES_SCHEMES = DATABASE_SCHEMES[1:]


def _pooled_database_url() -> str:
    """DATABASE_URL, and with WHITEBILL_PGBOUNCER=1 (it goes through pgbouncer in transaction mode, where
    each transaction may get another server connection) asyncpg's statement cache off: its named prepared
    statements would be looked for on a server connection that does not have them."""
    url = _database_url()
    if not _flag(PGBOUNCER_ENV):
        return url
    if not url.startswith(POSTGRES_SCHEMES):
        raise ValueError(f"{PGBOUNCER_ENV}=1 is for a PostgreSQL DATABASE_URL that goes through pgbouncer")
    cache = re.search(r"[?&]statement_cache_size=([^&]*)", url)
    if cache is None:
        return url + ("&" if "?" in url else "?") + "statement_cache_size=0"
    if cache[1] != "0":
        raise ValueError(f"DATABASE_URL: statement_cache_size={cache[1]!r} is 0 through pgbouncer ({PGBOUNCER_ENV}=1)")
    return url


def _listen_database_url() -> str | None:
    """WHITEBILL_LISTEN_DATABASE_URL: where live updates LISTEN, straight to PostgreSQL; required with
    WHITEBILL_PGBOUNCER=1, since a LISTEN through pgbouncer's transaction mode hears nothing."""
    raw = os.environ.get(LISTEN_URL_ENV, "").strip()
    if not raw:
        if _flag(PGBOUNCER_ENV):
            raise ValueError(f"{PGBOUNCER_ENV}=1: set {LISTEN_URL_ENV} to PostgreSQL itself, not pgbouncer (LISTEN)")
        return None
    if not raw.startswith(POSTGRES_SCHEMES):  # the rest is not shown: it may hold a password
        raise ValueError(f"{LISTEN_URL_ENV} is postgres://USER:PASSWORD@HOST:PORT/NAME, straight to PostgreSQL")
    return raw


def _read(env: str, checked: Callable[[Callable[[], Any], Any], Any]) -> Settings:
    return Settings(
        database_url=checked(_pooled_database_url, "sqlite://whitebill.sqlite3"),
        env=env,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=checked(lambda: _integer("PORT", 8000, 0, 65535), 8000),  # 0: any free port
        log_level=checked(_log_level, "INFO"),
        test_clock=_flag("WHITEBILL_TEST_CLOCK"),
        password_hash_cheap=_flag("WHITEBILL_CHEAP_PASSWORD_HASH"),
        processes=checked(lambda: _integer("WHITEBILL_PROCESSES", 1, 1, 64), 1),
        secret_key=os.environ.get(SECRET_KEY_ENV, ""),
        public_url=os.environ.get("WHITEBILL_PUBLIC_URL", "http://127.0.0.1:8000"),
        gateway_api_bases=_api_bases(),
        gateway_timeout_seconds=checked(_timeout, None),
        smtp_url=os.environ.get("WHITEBILL_SMTP_URL") or None,
        mail_from=os.environ.get("WHITEBILL_MAIL_FROM"),
        reset_url=os.environ.get("WHITEBILL_RESET_URL", "http://127.0.0.1:8000/reset-password"),
        expiry_notice_days=_notice_days(),
        usage_max_ahead_seconds=checked(
            lambda: _whole_number(USAGE_AHEAD_ENV, DEFAULT_USAGE_AHEAD_SECONDS, 86_400), DEFAULT_USAGE_AHEAD_SECONDS
        ),
        usage_months_back=checked(
            lambda: _whole_number(USAGE_MONTHS_BACK_ENV, DEFAULT_USAGE_MONTHS_BACK, 24), DEFAULT_USAGE_MONTHS_BACK
        ),
        max_partner_levels=max(
            1,
            checked(
                lambda: _whole_number(PARTNER_LEVELS_ENV, DEFAULT_PARTNER_LEVELS, DEFAULT_PARTNER_LEVELS),
                DEFAULT_PARTNER_LEVELS,
            ),
        ),
        cors_origins=checked(lambda: _cors_origins(env), ()),
        rate_limit_storage=os.environ.get("WHITEBILL_RATE_LIMIT_STORAGE", "async+memory://"),
        login_limit_per_email=checked(lambda: _rate_limit("WHITEBILL_LOGIN_LIMIT_PER_EMAIL", "10/minute"), ""),
        login_limit_per_address=checked(lambda: _rate_limit("WHITEBILL_LOGIN_LIMIT_PER_ADDRESS", "60/minute"), ""),
        reset_limit_per_email=checked(lambda: _rate_limit("WHITEBILL_RESET_LIMIT_PER_EMAIL", "5/hour"), ""),
        reset_limit_per_address=checked(lambda: _rate_limit("WHITEBILL_RESET_LIMIT_PER_ADDRESS", "30/hour"), ""),
        outbound_allowed_networks=checked(lambda: _outbound_allowed(env), ()),
        max_body_bytes=checked(lambda: _bytes("WHITEBILL_MAX_BODY_BYTES", Settings.max_body_bytes), 0),
        max_usage_body_bytes=checked(
            lambda: _bytes("WHITEBILL_MAX_USAGE_BODY_BYTES", Settings.max_usage_body_bytes), 0
        ),
        max_query_bytes=checked(lambda: _bytes("WHITEBILL_MAX_QUERY_BYTES", Settings.max_query_bytes), 0),
        metrics_dir=os.environ.get(METRICS_DIR_ENV) or None,
        worker_health_port=checked(_worker_health_port, None),
        worker_stall_seconds=checked(
            lambda: _integer(STALL_ENV, DEFAULT_STALL_SECONDS, 1, 86_400), DEFAULT_STALL_SECONDS
        ),
        operations=checked(_operations_mode, "any"),
        pgbouncer=_flag(PGBOUNCER_ENV),
        listen_database_url=checked(_listen_database_url, None),
    )


DEV_KEY_FILE = Path(".whitebill") / "secret-key"


def development_secret_key(settings: Settings) -> Settings:
    """Outside production, a missing WHITEBILL_SECRET_KEY is made once and kept in .whitebill/ (not
    committed), so `make run` can store gateway credentials; production must set it. Returns the
    settings with the key; it is also put in the environment for the processes this one starts."""
    if settings.secret_key or not settings.development:
        return settings
    from billing.core.credentials import new_key

    if not DEV_KEY_FILE.exists():
        DEV_KEY_FILE.parent.mkdir(exist_ok=True)
        DEV_KEY_FILE.write_text(new_key())
        DEV_KEY_FILE.chmod(0o600)
    key = DEV_KEY_FILE.read_text().strip()
    os.environ[SECRET_KEY_ENV] = key
    return replace(settings, secret_key=key)


def operator_password() -> str | None:
    """The password for ``whitebill operator create`` when it runs without a terminal (kept out of
    ``Settings``, which is logged and passed around)."""
    return os.environ.get("WHITEBILL_OPERATOR_PASSWORD") or None


@contextlib.contextmanager
def shared_metrics_dir(settings: Settings) -> Iterator[None]:
    """The server processes about to start write their metrics to one directory, so that any of them
    answers /metrics for all: a fresh temporary one, removed when they have ended, unless the
    operator named one (PROMETHEUS_MULTIPROC_DIR, read by the processes' settings)."""
    if settings.metrics_dir is not None:
        yield
        return
    directory = tempfile.mkdtemp(prefix="whitebill-metrics-")
    os.environ[METRICS_DIR_ENV] = directory  # inherited by the processes uvicorn starts
    try:
        yield
    finally:
        os.environ.pop(METRICS_DIR_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)
