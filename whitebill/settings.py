"""Configuration from the environment; every variable is documented in the README."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite://whitebill.sqlite3"
    env: str = "development"  # development, production, test
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    test_clock: bool = False  # lets tests move time, also across processes
    password_hash_cheap: bool = False  # tests only
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgres://", "postgresql://", "asyncpg://"))

    @property
    def development(self) -> bool:
        return self.env != "production"


def load_settings() -> Settings:
    env = os.environ.get("WHITEBILL_ENV", "development")
    return Settings(
        database_url=os.environ.get("DATABASE_URL", "sqlite://whitebill.sqlite3"),
        env=env,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
        log_level=os.environ.get("LOG_LEVEL", "INFO"),
        test_clock=_flag("WHITEBILL_TEST_CLOCK"),
        password_hash_cheap=_flag("WHITEBILL_CHEAP_PASSWORD_HASH"),
    )


DEV_KEY_FILE = Path(".whitebill") / "secret-key"


def development_secret_key(settings: Settings) -> None:
    """Outside production, a missing WHITEBILL_SECRET_KEY is made once and kept in .whitebill/ (not
    committed), so `make run` can store gateway credentials; production must set it."""
    if os.environ.get("WHITEBILL_SECRET_KEY") or not settings.development:
        return
    from billing.core.credentials import new_key

    if not DEV_KEY_FILE.exists():
        DEV_KEY_FILE.parent.mkdir(exist_ok=True)
        DEV_KEY_FILE.write_text(new_key())
        DEV_KEY_FILE.chmod(0o600)
    os.environ["WHITEBILL_SECRET_KEY"] = DEV_KEY_FILE.read_text().strip()
