"""Database configuration shared by the server, the worker, the CLI and the tests."""

from __future__ import annotations

from typing import Any

from tortoise import Tortoise
from tortoise.migrations.executor import MigrationExecutor
from tortoise.migrations.loader import MigrationLoader
from tortoise.connection import get_connection

from models import MODEL_MODULES

APP_LABEL = "models"
MIGRATIONS_MODULE = "models.migrations"


def normalise_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgres://" + url[len("postgresql://") :]
    return url


def tortoise_config(database_url: str) -> dict[str, Any]:
    return {
        "connections": {"default": normalise_url(database_url)},
        "apps": {
            APP_LABEL: {
                "models": list(MODEL_MODULES),
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def dialect() -> str:
    """'postgres' or 'sqlite' for the default connection."""
    return "postgres" if get_connection("default").capabilities.dialect == "postgres" else "sqlite"


async def pending_migrations(database_url: str) -> list[str]:
    """Names of migrations not yet applied to the database Tortoise is connected to."""
    config = tortoise_config(database_url)
    executor = MigrationExecutor(get_connection("default"), {APP_LABEL: config["apps"][APP_LABEL]})
    steps = await executor.plan(None)
    return [f"{s.migration.app_label}.{s.migration.name}" for s in steps if not s.backward]


__all__ = ["APP_LABEL", "MigrationLoader", "Tortoise", "dialect", "pending_migrations", "tortoise_config"]
