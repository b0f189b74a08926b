"""The command line, as a newcomer and an operator use it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def whitebill(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "whitebill.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_the_committed_schema_is_what_the_code_generates() -> None:
    generated = whitebill("schema")
    assert generated.returncode == 0, generated.stderr
    committed = (ROOT / "schema.graphql").read_text()
    assert generated.stdout == committed, "schema.graphql is stale: run `make schema` and commit it"


def test_the_server_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'fresh.sqlite3'}"
    refused = whitebill("serve", env={"DATABASE_URL": url, "PORT": "0"})
    assert refused.returncode == 2
    assert "whitebill migrate" in refused.stderr


def test_migrate_demo_and_api_keys_from_the_command_line(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite://{tmp_path / 'cli.sqlite3'}"}
    migrations = sorted(p.stem for p in (Path(__file__).parent.parent / "models" / "migrations").glob("0*.py"))
    applied = whitebill("migrate", env=env).stdout
    assert f"{len(migrations)} migration(s) applied" in applied
    assert all(f"applied models.{name}" in applied for name in migrations)
    assert "up to date" in whitebill("migrate", env=env).stdout
    demo = whitebill("demo", env=env)
    assert demo.returncode == 0, demo.stderr
    assert "Demo partner key:       wb_" in demo.stdout
    again = whitebill("demo", env=env)  # safe to run twice
    assert again.returncode == 0, again.stderr

    platform_key = whitebill("api-key", "create", "--platform", env=env)
    assert platform_key.returncode == 0 and platform_key.stdout.startswith("wb_")
    partner_key = whitebill("api-key", "create", "--partner", "1", env=env)
    assert partner_key.returncode == 0 and partner_key.stdout.startswith("wb_")
    usage_only = whitebill("api-key", "create", "--platform", "--permissions", "report_usage", env=env)
    assert usage_only.returncode == 0 and usage_only.stdout.startswith("wb_")
    bad = whitebill("api-key", "create", "--partner", "1", "--permissions", "REPORT_USAGE", env=env)
    assert bad.returncode == 2 and "REPORT_USAGE" in bad.stderr  # only the platform's product reports usage
    typo = whitebill("api-key", "create", "--platform", "--permissions", "MANAGE_EVERYTHING", env=env)
    assert typo.returncode == 2 and "unknown permission" in typo.stderr
    operator = whitebill(
        "operator",
        "create",
        "--email",
        "ops@platform.example",
        env={**env, "WHITEBILL_OPERATOR_PASSWORD": "a long operator password"},
    )
    assert operator.returncode == 0, operator.stderr
    weak = whitebill(
        "operator", "create", "--email", "b@platform.example", env={**env, "WHITEBILL_OPERATOR_PASSWORD": "x"}
    )
    assert weak.returncode == 2 and "password" in weak.stderr
    unknown = whitebill("api-key", "create", "--partner", "999", env=env)
    assert unknown.returncode == 2 and "partner not found" in unknown.stderr


@pytest.mark.parametrize("args", [["api-key", "create"], ["nope"]])
def test_usage_errors_say_what_is_wrong(args: list[str]) -> None:
    result = whitebill(*args)
    assert result.returncode == 2 and "usage:" in result.stderr
