"""Settings in one place: whitebill.settings reads the environment, the domain, the gateways, the
schema and the resolvers are handed what they need (billing.core.config) and never read it."""

from __future__ import annotations

import pathlib
import re

import pytest

from billing.charges import gateway_configs
from billing.core import config, outbound
from billing.core.config import DomainConfig
from billing.core.credentials import new_key
from billing.core.errors import BillingError
from whitebill.settings import Settings, SettingsError, configure_domain, load_settings

ROOT = pathlib.Path(__file__).resolve().parent.parent
READS_THE_ENVIRONMENT = re.compile(r"\benviron\b|getenv")


def test_no_module_but_whitebill_settings_reads_the_environment() -> None:
    sources = [
        path
        for package in ("billing", "gateways", "schema", "resolvers", "whitebill")
        for path in (ROOT / package).rglob("*.py")
        if path != ROOT / "whitebill" / "settings.py"
    ]
    assert len(sources) > 20  # the packages were found
    readers = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sources
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if READS_THE_ENVIRONMENT.search(line)
    ]
    assert readers == [], "read the setting in whitebill/settings.py and hand it over:\n" + "\n".join(readers)


def test_the_check_sees_a_module_that_reads_the_environment() -> None:
    for line in ('url = os.environ.get("X")', 'os.getenv("X")', "from os import environ"):
        assert READS_THE_ENVIRONMENT.search(line), line


KEY_ONE, KEY_TWO = new_key(), new_key()


def test_the_domains_defaults_are_the_settings_defaults() -> None:
    assert Settings().domain_config() == DomainConfig()


def test_every_variable_the_domain_needs_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "WHITEBILL_ENV": "production",
        "WHITEBILL_CHEAP_PASSWORD_HASH": "1",
        "WHITEBILL_SECRET_KEY": f"{KEY_ONE},{KEY_TWO}",
        "DATABASE_URL": "postgres://whitebill@db.example/billing",
        "WHITEBILL_LOGIN_LIMIT_PER_EMAIL": "1/second",
        "WHITEBILL_LOGIN_LIMIT_PER_ADDRESS": "2/second",
        "WHITEBILL_RESET_LIMIT_PER_EMAIL": "3/second",
        "WHITEBILL_RESET_LIMIT_PER_ADDRESS": "4/second",
        "WHITEBILL_RATE_LIMIT_STORAGE": "async+memory://?x=1",
        "WHITEBILL_EXPIRY_NOTICE_DAYS": " 400 ",
        "WHITEBILL_PUBLIC_URL": "https://billing.example/",
        "WHITEBILL_STRIPE_API_BASE": "http://127.0.0.1:1",
        "WHITEBILL_LEDGERPAY_API_BASE": "http://127.0.0.1:2",
        "WHITEBILL_GATEWAY_TIMEOUT_SECONDS": "2.5",
        "WHITEBILL_SMTP_URL": "smtp://127.0.0.1:25",
        "WHITEBILL_MAIL_FROM": "billing@example.com",
        "WHITEBILL_RESET_URL": "https://app.example/reset",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WHITEBILL_ASAAS_API_BASE", raising=False)
    domain = load_settings().domain_config()
    assert domain == DomainConfig(
        production=True,
        cheap_password_hash=True,
        secret_key=f"{KEY_ONE},{KEY_TWO}",
        login_limit_per_email="1/second",
        login_limit_per_address="2/second",
        reset_limit_per_email="3/second",
        reset_limit_per_address="4/second",
        rate_limit_storage="async+memory://?x=1",
        expiry_notice_days=366,  # at most a year
        public_url="https://billing.example/",
        gateway_api_bases={"STRIPE": "http://127.0.0.1:1", "LEDGERPAY": "http://127.0.0.1:2"},
        gateway_timeout_seconds=2.5,
        smtp_url="smtp://127.0.0.1:25",
        mail_from="billing@example.com",
        reset_url="https://app.example/reset",
        outbound_allowed_networks=(),  # production reaches public addresses only
    )


def test_empty_optional_values_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty variable counts as unset; an unreadable one stops the start (below), never a silent default."""
    monkeypatch.setenv("WHITEBILL_EXPIRY_NOTICE_DAYS", "")
    monkeypatch.setenv("WHITEBILL_SMTP_URL", "")
    monkeypatch.setenv("WHITEBILL_GATEWAY_TIMEOUT_SECONDS", "")
    settings = load_settings()
    assert settings.expiry_notice_days == 7
    assert settings.smtp_url is None and settings.gateway_timeout_seconds is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WHITEBILL_GATEWAY_TIMEOUT_SECONDS", "soon"),
        ("WHITEBILL_LOGIN_LIMIT_PER_EMAIL", "ten a minute"),
        ("WHITEBILL_RESET_LIMIT_PER_ADDRESS", "30/fortnight"),
        ("WHITEBILL_OPERATIONS", "registered-only"),
        ("WHITEBILL_OPERATIONS", "Registered "),
        ("WHITEBILL_EXPIRY_NOTICE_DAYS", "a week"),  # was logged and the default used
        ("WHITEBILL_GATEWAY_TIMEOUT_SECONDS", "-1"),
        ("WHITEBILL_TEST_CLOCK", "maybe"),  # was read as off
        ("WHITEBILL_PGBOUNCER", "y"),
        ("WHITEBILL_WORKER_HEALTH_PORT", "http"),
    ],
)
def test_a_malformed_value_stops_the_start_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        load_settings()


async def test_the_domain_uses_what_it_is_handed() -> None:
    configure_domain(Settings(env="production", public_url="https://billing.example/"))
    assert config.current().production
    with pytest.raises(BillingError):
        await outbound.check_url("http://127.0.0.1:9/hook")  # loopback http is for development only
    configure_domain(Settings(env="development"))
    assert await outbound.check_url("http://127.0.0.1:9/hook")


def test_the_webhook_url_starts_with_the_configured_public_url() -> None:
    class Row:
        provider, id = "stripe", 7

    configure_domain(Settings(public_url="https://billing.example/"))
    assert gateway_configs.webhook_url(Row()) == "https://billing.example/webhooks/stripe/7"  # type: ignore[arg-type]


PRODUCTION = {
    "WHITEBILL_ENV": "production",
    "WHITEBILL_SECRET_KEY": KEY_ONE,
    "DATABASE_URL": "postgres://whitebill@db.example/billing",
    "WHITEBILL_PUBLIC_URL": "https://billing.example",
}


@pytest.mark.parametrize(
    ("changed", "problem"),
    [
        ({"WHITEBILL_SECRET_KEY": ""}, "WHITEBILL_SECRET_KEY is required in production"),
        ({"WHITEBILL_SECRET_KEY": f"{KEY_ONE},not-a-key"}, "WHITEBILL_SECRET_KEY: key 2 is not a key"),
        ({"DATABASE_URL": "sqlite://whitebill.sqlite3"}, "DATABASE_URL is SQLite: production runs on PostgreSQL"),
        (
            {"WHITEBILL_PUBLIC_URL": "http://127.0.0.1:8000"},
            "WHITEBILL_PUBLIC_URL='http://127.0.0.1:8000' is a loopback",
        ),
        ({"WHITEBILL_PUBLIC_URL": "http://localhost"}, "WHITEBILL_PUBLIC_URL='http://localhost' is a loopback"),
        ({"WHITEBILL_PUBLIC_URL": "http://[::1]:8000"}, "WHITEBILL_PUBLIC_URL='http://[::1]:8000' is a loopback"),
    ],
)
def test_production_refuses_to_start_without_what_it_needs(
    monkeypatch: pytest.MonkeyPatch, changed: dict[str, str], problem: str
) -> None:
    for name, value in {**PRODUCTION, **changed}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    [found] = refused.value.problems
    assert found.startswith(problem), found


def test_production_starts_with_what_it_needs_and_sqlite_when_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    assert load_settings().env == "production"
    monkeypatch.setenv("DATABASE_URL", "sqlite://whitebill.sqlite3")
    monkeypatch.setenv("WHITEBILL_ALLOW_SQLITE_IN_PRODUCTION", "1")
    assert not load_settings().is_postgres
