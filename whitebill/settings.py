"""Configuration from the environment; every variable is documented in docs/operations/configuration.md.

This is the one module that reads the environment: pydantic-settings reads and checks each variable
(``Variables``), ``load_settings`` checks what depends on several and gives the process its ``Settings``,
and the domain (billing) receives what it needs as a ``DomainConfig`` through ``configure_domain``.
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
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from limits import parse as parse_rate_limit
from pydantic import SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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


ENVIRONMENTS = ("development", "test", "production")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ALLOW_SQLITE_ENV = "WHITEBILL_ALLOW_SQLITE_IN_PRODUCTION"
DATABASE_SCHEMES = ("sqlite://", "postgres://", "postgresql://", "asyncpg://")
PGBOUNCER_ENV = "WHITEBILL_PGBOUNCER"
LISTEN_URL_ENV = "WHITEBILL_LISTEN_DATABASE_URL"
POSTGRES_SCHEMES = DATABASE_SCHEMES[1:]
FLAGS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


class SettingsError(ValueError):
    """The environment's settings have problems: each is one line saying what to set."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _whole(name: str, raw: Any, lowest: int, highest: int) -> int:
    if isinstance(raw, int):
        return raw
    text = str(raw).strip()
    if not (text.isascii() and text.isdigit()) or not lowest <= int(text) <= highest:
        raise ValueError(f"{name}={raw!r} is a whole number from {lowest} to {highest}")
    return int(text)


def _checked_by(check: Callable[[str, Any], Any], *names: str) -> Any:
    """A before-validator for ``names`` (fields named as their variables): ``check(name, raw)`` turns the
    variable's text into its value or raises ValueError with the line the operator reads."""

    def validate(cls: type, raw: Any, info: ValidationInfo) -> Any:
        return None if raw is None else check(str(info.field_name), raw)

    return field_validator(*names, mode="before")(classmethod(validate))  # type: ignore[arg-type]


class Variables(BaseSettings):
    """Every variable whitebill reads, but the per-provider ``WHITEBILL_<PROVIDER>_API_BASE`` (gateways are
    plug-ins, see ``_api_bases``): each named as it is set, typed, and checked on its own by
    pydantic-settings when a process starts; a validator's message is the line the operator reads. What
    depends on several variables (production's needs, pgbouncer's, the environment's) is checked after, in
    ``load_settings``. An empty variable counts as unset."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    WHITEBILL_ENV: Literal["development", "test", "production"] = "development"
    DATABASE_URL: str = "sqlite://whitebill.sqlite3"
    HOST: str = "127.0.0.1"
    PORT: int = 8000  # 0: any free port
    LOG_LEVEL: str = "INFO"
    WHITEBILL_PROCESSES: int = 1
    WHITEBILL_TEST_CLOCK: bool = False
    WHITEBILL_CHEAP_PASSWORD_HASH: bool = False
    WHITEBILL_ALLOW_SQLITE_IN_PRODUCTION: bool = False
    WHITEBILL_PGBOUNCER: bool = False
    WHITEBILL_SECRET_KEY: SecretStr = SecretStr("")
    WHITEBILL_PUBLIC_URL: str = "http://127.0.0.1:8000"
    WHITEBILL_GATEWAY_TIMEOUT_SECONDS: float | None = None
    WHITEBILL_SMTP_URL: SecretStr | None = None
    WHITEBILL_MAIL_FROM: str | None = None
    WHITEBILL_RESET_URL: str = "http://127.0.0.1:8000/reset-password"
    WHITEBILL_EXPIRY_NOTICE_DAYS: int = DEFAULT_NOTICE_DAYS
    WHITEBILL_USAGE_MAX_AHEAD_SECONDS: int = DEFAULT_USAGE_AHEAD_SECONDS
    WHITEBILL_USAGE_MONTHS_BACK: int = DEFAULT_USAGE_MONTHS_BACK
    WHITEBILL_MAX_PARTNER_LEVELS: int = DEFAULT_PARTNER_LEVELS
    WHITEBILL_CORS_ORIGINS: str = ""  # checked in load_settings: https only in production
    WHITEBILL_OUTBOUND_ALLOW: str | None = None  # checked in load_settings: refused in production
    WHITEBILL_RATE_LIMIT_STORAGE: SecretStr = SecretStr("async+memory://")  # a Redis URL may hold a password
    WHITEBILL_LOGIN_LIMIT_PER_EMAIL: str = "10/minute"
    WHITEBILL_LOGIN_LIMIT_PER_ADDRESS: str = "60/minute"
    WHITEBILL_RESET_LIMIT_PER_EMAIL: str = "5/hour"
    WHITEBILL_RESET_LIMIT_PER_ADDRESS: str = "30/hour"
    WHITEBILL_MAX_BODY_BYTES: int = Settings.max_body_bytes
    WHITEBILL_MAX_USAGE_BODY_BYTES: int = Settings.max_usage_body_bytes
    WHITEBILL_MAX_QUERY_BYTES: int = Settings.max_query_bytes
    PROMETHEUS_MULTIPROC_DIR: str | None = None
    WHITEBILL_WORKER_HEALTH_PORT: int | None = None  # unset: no health endpoint; 0: any free port
    WHITEBILL_WORKER_STALL_SECONDS: int = DEFAULT_STALL_SECONDS
    WHITEBILL_OPERATIONS: Literal["any", "registered"] = "any"
    WHITEBILL_LISTEN_DATABASE_URL: SecretStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, data: Any) -> Any:
        """An empty (or blank) variable counts as unset, but WHITEBILL_OUTBOUND_ALLOW: empty, no network."""
        if not isinstance(data, dict):
            return data
        return {k: v for k, v in data.items() if k == OUTBOUND_ALLOW_ENV or not (isinstance(v, str) and not v.strip())}

    @staticmethod
    def _environment(name: str, raw: Any) -> Any:
        if raw not in ENVIRONMENTS:
            raise ValueError(f"{name}={raw!r} is one of {', '.join(ENVIRONMENTS)}")
        return raw

    @staticmethod
    def _flag(name: str, raw: Any) -> bool:
        if isinstance(raw, bool):
            return raw
        if str(raw).strip().lower() not in FLAGS:
            raise ValueError(f"{name}={raw!r} is 1 or 0 (true or false, yes or no, on or off)")
        return FLAGS[str(raw).strip().lower()]

    @staticmethod
    def _port(name: str, raw: Any) -> int:
        return _whole(name, raw, 0, 65535)

    @staticmethod
    def _processes(name: str, raw: Any) -> int:
        return _whole(name, raw, 1, 64)

    @staticmethod
    def _stall(name: str, raw: Any) -> int:
        return _whole(name, raw, 1, 86_400)

    @staticmethod
    def _log_level(name: str, raw: Any) -> str:
        if str(raw).upper() not in LOG_LEVELS:
            raise ValueError(f"{name}={raw!r} is one of {', '.join(LOG_LEVELS)}")
        return str(raw).upper()

    @staticmethod
    def _database_url(name: str, raw: Any) -> str:
        """``sqlite://PATH`` (its folder must exist: SQLite would wait for it forever) or
        ``postgres://USER:PASSWORD@HOST:PORT/NAME``; the URL itself is never shown (it may hold a password)."""
        if not raw.startswith(DATABASE_SCHEMES):
            scheme = raw.split("://")[0][:20] if "://" in raw else "no scheme"
            raise ValueError(f"{name} ({scheme!r}) is sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/NAME")
        if not raw.startswith("sqlite://"):
            try:
                urlsplit(raw).port  # noqa: B018 (read to check it: a password with a bare / ? # @ breaks the URL)
            except ValueError:
                raise ValueError(
                    f"{name} cannot be read: percent-encode / ? # @ : in its user and password (%2F %3F %23 %40 %3A)"
                ) from None
            return raw
        path = raw[len("sqlite://") :].split("?")[0]
        if path != ":memory:" and not Path(path or ".").absolute().parent.is_dir():
            raise ValueError(f"{name}: the folder of the SQLite file {path!r} does not exist: create it first")
        return raw

    @staticmethod
    def _listen_url(name: str, raw: Any) -> Any:
        if not str(raw).startswith(POSTGRES_SCHEMES):  # the rest is not shown: it may hold a password
            raise ValueError(f"{name} is postgres://USER:PASSWORD@HOST:PORT/NAME, straight to PostgreSQL")
        return raw

    @staticmethod
    def _seconds(name: str, raw: Any) -> float:
        try:
            seconds = float(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not a number of seconds") from None
        if not 0 < seconds <= 600:
            raise ValueError(f"{name}={raw!r} is a number of seconds above 0, at most 600")
        return seconds

    @staticmethod
    def _notice_days(name: str, raw: Any) -> int:
        """Days of notice before a plan ends without renewing; 0: none; above a year counts as a year."""
        if isinstance(raw, int):
            return raw
        text = str(raw).strip()
        if not (text.isascii() and text.isdigit()):
            raise ValueError(f"{name}={raw!r} is a whole number of days (0: no notice)")
        return min(int(text), 366)

    @staticmethod
    def _bounded(name: str, raw: Any) -> int:
        highest = {USAGE_AHEAD_ENV: 86_400, USAGE_MONTHS_BACK_ENV: 24, PARTNER_LEVELS_ENV: DEFAULT_PARTNER_LEVELS}
        value = _whole(name, raw, 0, highest[name])
        return max(1, value) if name == PARTNER_LEVELS_ENV else value

    @staticmethod
    def _rate_limit(name: str, raw: Any) -> str:
        try:
            parse_rate_limit(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not a rate limit such as 10/minute") from None
        return str(raw)

    @staticmethod
    def _bytes(name: str, raw: Any) -> int:
        if isinstance(raw, int):
            return raw
        text = str(raw).strip()
        if not (text.isascii() and text.isdigit()) or int(text) < 1024:
            raise ValueError(f"{name}={raw!r} is not a number of bytes (1024 or more)")
        return int(text)

    @staticmethod
    def _operations(name: str, raw: Any) -> Any:
        if raw not in ("any", "registered"):
            raise ValueError(f"{name}={raw!r} is any (the default) or registered")
        return raw

    _check_environment = _checked_by(_environment, "WHITEBILL_ENV")
    _check_flags = _checked_by(
        _flag, "WHITEBILL_TEST_CLOCK", "WHITEBILL_CHEAP_PASSWORD_HASH", ALLOW_SQLITE_ENV, PGBOUNCER_ENV
    )
    _check_port = _checked_by(_port, "PORT", WORKER_HEALTH_PORT_ENV)
    _check_processes = _checked_by(_processes, "WHITEBILL_PROCESSES")
    _check_stall = _checked_by(_stall, STALL_ENV)
    _check_log_level = _checked_by(_log_level, "LOG_LEVEL")
    _check_database_url = _checked_by(_database_url, "DATABASE_URL")
    _check_listen_url = _checked_by(_listen_url, LISTEN_URL_ENV)
    _check_seconds = _checked_by(_seconds, TIMEOUT_ENV)
    _check_notice_days = _checked_by(_notice_days, NOTICE_DAYS_ENV)
    _check_bounded = _checked_by(_bounded, USAGE_AHEAD_ENV, USAGE_MONTHS_BACK_ENV, PARTNER_LEVELS_ENV)
    _check_rate_limits = _checked_by(
        _rate_limit,
        "WHITEBILL_LOGIN_LIMIT_PER_EMAIL",
        "WHITEBILL_LOGIN_LIMIT_PER_ADDRESS",
        "WHITEBILL_RESET_LIMIT_PER_EMAIL",
        "WHITEBILL_RESET_LIMIT_PER_ADDRESS",
    )
    _check_bytes = _checked_by(
        _bytes, "WHITEBILL_MAX_BODY_BYTES", "WHITEBILL_MAX_USAGE_BODY_BYTES", "WHITEBILL_MAX_QUERY_BYTES"
    )
    _check_operations = _checked_by(_operations, "WHITEBILL_OPERATIONS")


def _variables(problems: list[str]) -> tuple[Variables, set[str]]:
    """The variables, read and checked by pydantic-settings, and the names of those with a problem: each
    adds its line to ``problems`` and counts as unset, so that the checks across variables still run."""
    try:
        return Variables(), set()
    except ValidationError as error:
        failed = {}
        for found in error.errors():
            name = str(found["loc"][0])
            message = str(found["msg"]).removeprefix("Value error, ")
            problems.append(message if message.startswith(name) else f"{name}={found.get('input')!r}: {message}")
            failed[name] = Variables.model_fields[name].default
        return Variables(**failed), set(failed)


def _api_bases() -> dict[str, str]:
    """WHITEBILL_<PROVIDER>_API_BASE for every provider, installed or not (gateways are plug-ins)."""
    return {match[1]: value for name, value in os.environ.items() if (match := _API_BASE.fullmatch(name))}


def _outbound_allowed(env: str, raw: str | None) -> tuple[str, ...]:
    """WHITEBILL_OUTBOUND_ALLOW: comma-separated networks (``127.0.0.0/8,::1``; empty for none) that
    partner webhook URLs may reach besides public addresses. Loopback by default outside production;
    refused in production, which sends only to public addresses."""
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


def _cors_origins(env: str, raw: str) -> tuple[str, ...]:
    """WHITEBILL_CORS_ORIGINS: the platform's own browser origins, comma-separated (https in production)."""
    from billing.core.errors import BillingError
    from billing.tenants.origins import check_origin

    origins = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        try:
            origins.append(check_origin(part, CORS_ORIGINS_ENV, production=env == "production"))
        except BillingError as error:
            raise ValueError(f"{CORS_ORIGINS_ENV}: {part!r}: {error.message}") from None
    return tuple(origins)


def _pooled_database_url(variables: Variables) -> str:
    """DATABASE_URL, and with WHITEBILL_PGBOUNCER=1 (it goes through pgbouncer in transaction mode, where
    each transaction may get another server connection) asyncpg's statement cache off: its named prepared
    statements would be looked for on a server connection that does not have them."""
    url = variables.DATABASE_URL
    if not variables.WHITEBILL_PGBOUNCER:
        return url
    if not url.startswith(POSTGRES_SCHEMES):
        raise ValueError(f"{PGBOUNCER_ENV}=1 is for a PostgreSQL DATABASE_URL that goes through pgbouncer")
    cache = re.search(r"[?&]statement_cache_size=([^&]*)", url)
    if cache is None:
        return url + ("&" if "?" in url else "?") + "statement_cache_size=0"
    if cache[1] != "0":
        raise ValueError(f"DATABASE_URL: statement_cache_size={cache[1]!r} is 0 through pgbouncer ({PGBOUNCER_ENV}=1)")
    return url


def _listen_database_url(variables: Variables) -> str | None:
    """WHITEBILL_LISTEN_DATABASE_URL: where live updates LISTEN, straight to PostgreSQL; required with
    WHITEBILL_PGBOUNCER=1, since a LISTEN through pgbouncer's transaction mode hears nothing."""
    if variables.WHITEBILL_LISTEN_DATABASE_URL is None:
        if variables.WHITEBILL_PGBOUNCER:
            raise ValueError(f"{PGBOUNCER_ENV}=1: set {LISTEN_URL_ENV} to PostgreSQL itself, not pgbouncer (LISTEN)")
        return None
    return variables.WHITEBILL_LISTEN_DATABASE_URL.get_secret_value()


def load_settings() -> Settings:
    """The settings from the environment, every variable checked: SettingsError lists every problem, one
    line each (``whitebill`` prints them and exits with code 2)."""
    problems: list[str] = []
    v, failed = _variables(problems)

    def checked(read: Callable[[], T], fallback: T) -> T:
        try:
            return read()
        except ValueError as problem:
            problems.append(str(problem))
            return fallback

    env = v.WHITEBILL_ENV
    settings = Settings(
        database_url=checked(lambda: _pooled_database_url(v), "sqlite://whitebill.sqlite3"),
        env=env,
        host=v.HOST,
        port=v.PORT,
        log_level=v.LOG_LEVEL,
        test_clock=v.WHITEBILL_TEST_CLOCK,
        password_hash_cheap=v.WHITEBILL_CHEAP_PASSWORD_HASH,
        processes=v.WHITEBILL_PROCESSES,
        secret_key=v.WHITEBILL_SECRET_KEY.get_secret_value(),
        public_url=v.WHITEBILL_PUBLIC_URL,
        gateway_api_bases=_api_bases(),
        gateway_timeout_seconds=v.WHITEBILL_GATEWAY_TIMEOUT_SECONDS,
        smtp_url=v.WHITEBILL_SMTP_URL.get_secret_value() if v.WHITEBILL_SMTP_URL else None,
        mail_from=v.WHITEBILL_MAIL_FROM,
        reset_url=v.WHITEBILL_RESET_URL,
        expiry_notice_days=v.WHITEBILL_EXPIRY_NOTICE_DAYS,
        usage_max_ahead_seconds=v.WHITEBILL_USAGE_MAX_AHEAD_SECONDS,
        usage_months_back=v.WHITEBILL_USAGE_MONTHS_BACK,
        max_partner_levels=v.WHITEBILL_MAX_PARTNER_LEVELS,
        cors_origins=checked(lambda: _cors_origins(env, v.WHITEBILL_CORS_ORIGINS), ()),
        rate_limit_storage=v.WHITEBILL_RATE_LIMIT_STORAGE.get_secret_value(),
        login_limit_per_email=v.WHITEBILL_LOGIN_LIMIT_PER_EMAIL,
        login_limit_per_address=v.WHITEBILL_LOGIN_LIMIT_PER_ADDRESS,
        reset_limit_per_email=v.WHITEBILL_RESET_LIMIT_PER_EMAIL,
        reset_limit_per_address=v.WHITEBILL_RESET_LIMIT_PER_ADDRESS,
        outbound_allowed_networks=checked(lambda: _outbound_allowed(env, v.WHITEBILL_OUTBOUND_ALLOW), ()),
        max_body_bytes=v.WHITEBILL_MAX_BODY_BYTES,
        max_usage_body_bytes=v.WHITEBILL_MAX_USAGE_BODY_BYTES,
        max_query_bytes=v.WHITEBILL_MAX_QUERY_BYTES,
        metrics_dir=v.PROMETHEUS_MULTIPROC_DIR,
        worker_health_port=v.WHITEBILL_WORKER_HEALTH_PORT,
        worker_stall_seconds=v.WHITEBILL_WORKER_STALL_SECONDS,
        operations=v.WHITEBILL_OPERATIONS,
        pgbouncer=v.WHITEBILL_PGBOUNCER,
        listen_database_url=None if LISTEN_URL_ENV in failed else checked(lambda: _listen_database_url(v), None),
    )
    if env == "production":
        problems += _production_problems(settings, sqlite_allowed=v.WHITEBILL_ALLOW_SQLITE_IN_PRODUCTION)
    if problems:
        raise SettingsError(problems)
    return settings


def _production_problems(settings: Settings, *, sqlite_allowed: bool) -> list[str]:
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
    if not settings.is_postgres and not sqlite_allowed:
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
