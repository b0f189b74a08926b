"""Settings with problems stop every command at once: one line on stderr per problem, saying what to set,
exit code 2, no traceback (unless --debug); `whitebill --version` names the version."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

BAD = {"WHITEBILL_ENV": "prod", "PORT": "abc", "LOG_LEVEL": "loud", "WHITEBILL_PROCESSES": "0"}
COMMANDS = [
    ["serve"],
    ["worker"],
    ["migrate"],
    ["demo"],
    ["operations", "list"],
    ["api-key", "create", "--platform"],
    ["operator", "create", "--email", "ops@example.com"],
]


def whitebill(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in BAD}
    environment.update({"DATABASE_URL": f"sqlite://{tmp_path / 'never.sqlite3'}", **env})
    return subprocess.run(
        [sys.executable, "-m", "whitebill.cli", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_refuses_bad_settings_in_one_line_each(tmp_path: Path, command: list[str]) -> None:
    done = whitebill(tmp_path, *command, **BAD)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.splitlines() == [
        "whitebill: WHITEBILL_ENV='prod' is one of development, test, production",
        "whitebill: PORT='abc' is a whole number from 0 to 65535",
        "whitebill: LOG_LEVEL='loud' is one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        "whitebill: WHITEBILL_PROCESSES='0' is a whole number from 1 to 64",
    ]
    assert not (tmp_path / "never.sqlite3").exists()  # nothing was started


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://root:secret@db/billing", "whitebill: DATABASE_URL ('mysql') is sqlite://PATH or postgres://"),
        ("localhost/billing", "whitebill: DATABASE_URL ('no scheme') is sqlite://PATH or postgres://"),
        ("sqlite:///no/such/folder/x.sqlite3", "whitebill: DATABASE_URL: the folder of the SQLite file"),
        # A password with a bare slash cuts the URL short: its start would be read as the port, and shown.
        ("postgres://whitebill:secret/x@db:5432/billing", "whitebill: DATABASE_URL cannot be read: percent-encode"),
    ],
)
def test_a_database_url_that_cannot_work_stops_every_command(tmp_path: Path, url: str, problem: str) -> None:
    """At once, where SQLite would wait forever for a missing folder; the URL's password is never shown."""
    for command in (["migrate"], ["serve"], ["worker"]):
        done = whitebill(tmp_path, *command, DATABASE_URL=url)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith(problem) and "secret" not in line


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    done = whitebill(tmp_path, "--debug", "migrate", PORT="70000")
    assert done.returncode != 0 and "Traceback" in done.stderr and "SettingsError" in done.stderr


def test_the_version(tmp_path: Path) -> None:
    done = whitebill(tmp_path, "--version")
    assert done.returncode == 0 and done.stdout.strip() == f"whitebill {metadata.version('whitebill')}"


def test_serve_on_a_taken_port_says_so_before_anything_starts(tmp_path: Path) -> None:
    """The port is bound before "serving" is printed and before the embedded worker starts."""
    database = {"DATABASE_URL": f"sqlite://{tmp_path / 'served.sqlite3'}"}
    assert whitebill(tmp_path, "migrate", **database).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = whitebill(tmp_path, "serve", "--port", str(port), **database)
    assert done.returncode == 2 and done.stdout == "", done.stdout
    [line] = done.stderr.splitlines()
    assert line.startswith(f"whitebill: cannot listen on 127.0.0.1:{port}: ") and "in use" in line


DATABASE_COMMANDS = [c for c in COMMANDS if c != ["migrate"]]


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=" ".join)
def test_a_database_not_migrated_stops_every_command_in_one_line(tmp_path: Path, command: list[str]) -> None:
    """Not a traceback from the first statement that finds a table missing: what to run."""
    done = whitebill(
        tmp_path,
        *command,
        DATABASE_URL=f"sqlite://{tmp_path / 'empty.sqlite3'}",
        WHITEBILL_OPERATOR_PASSWORD="pw-1234567",
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    [line] = [line for line in done.stderr.splitlines() if not line.startswith("{")]  # JSON log lines aside
    assert line.startswith("whitebill: the database has ") and "unapplied migration(s)" in line, line
    assert line.endswith("run `whitebill migrate` first") and len(line) < 200, line


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    "url",
    [
        "postgres://whitebill:secret-pass@127.0.0.1:{closed}/billing",  # nothing listens there
        "postgres://no_such_role:secret-pass@127.0.0.1:5432/billing",  # PostgreSQL refuses the role
        "postgres://whitebill:secret-pass@no-such-host.invalid:5432/billing",  # no such host
    ],
)
def test_a_database_that_cannot_be_reached_stops_every_command_in_one_line(tmp_path: Path, url: str) -> None:
    url = url.format(closed=_closed_port())
    for command in (["migrate"], ["serve"], ["worker"], ["demo"], ["operations", "list"]):
        done = whitebill(tmp_path, *command, DATABASE_URL=url)
        assert done.returncode == 2 and "Traceback" not in done.stderr, (command, done.stderr)
        [line] = [line for line in done.stderr.splitlines() if not line.startswith("{")]
        assert line.startswith("whitebill: DATABASE_URL: cannot use the database ("), (command, line)
        assert line.endswith("check its host, port, user, password and database name"), (command, line)
        assert "secret-pass" not in done.stderr + done.stdout


def test_only_failures_to_reach_the_database_are_called_a_database_url_problem() -> None:
    import asyncpg
    from tortoise.exceptions import DBConnectionError

    from whitebill.ready import unreachable

    for refused in (
        ConnectionRefusedError(111, "Connect call failed"),
        socket.gaierror(-2, "Name or service not known"),
        asyncpg.InvalidPasswordError('password authentication failed for user "whitebill"'),
        asyncpg.InvalidCatalogNameError('database "billing" does not exist'),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        DBConnectionError("cannot connect"),
    ):
        problem = unreachable(refused)
        assert problem is not None and problem.problems[0].startswith("DATABASE_URL: cannot use the database ("), (
            refused
        )
    for other in (  # a lock, a cancelled statement, a deadlock, a full disk: the error's own words, not a setting
        asyncpg.LockNotAvailableError("could not obtain lock"),
        asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.DeadlockDetectedError("deadlock detected"),
        asyncpg.DiskFullError("could not extend file"),
        ValueError("something else"),
        TimeoutError(),
    ):
        assert unreachable(other) is None, other


def test_a_connection_made_outside_the_pool_keeps_the_urls_tls_settings() -> None:
    from whitebill.db import direct_url

    url = "postgres://u:p%2Fw@db.example:5432/billing?minsize=1&sslmode=verify-full&sslrootcert=/etc/ca.pem&maxsize=5"
    assert direct_url(url, "/postgres") == (
        "postgresql://u:p%2Fw@db.example:5432/postgres?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem"
    )
    assert direct_url("postgres://u@h/b?statement_cache_size=0", "/b") == "postgresql://u@h/b"
