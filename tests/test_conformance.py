"""GraphQL-over-HTTP conformance: graphql-http's audit against a real uvicorn process.

The audit (tests/conformance/audit.mjs, Node) sends some sixty requests, well-formed and not,
to /graphql and grades the answers against the GraphQL-over-HTTP spec: a failed MUST is an
error and fails this test; a failed SHOULD is a warning, printed but allowed. The HTTP layer is
the same on every database, so it runs on SQLite only. Without node and npm on PATH (or with too
old a Node) it skips on a developer's machine, and fails under CI (``CI`` set, as CI services do), where
a skipped audit would pass unseen; the first run installs the pinned audit with `npm ci` (needs the npm registry).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import httpx
import pytest

from billing.tenants import api_keys

CONFORMANCE = Path(__file__).parent / "conformance"
NPM_CI_TIMEOUT = 300
AUDIT_TIMEOUT = 180
MIN_NODE_MAJOR = 18  # global fetch, util.parseArgs, AbortSignal.timeout

pytestmark = [
    pytest.mark.usefixtures("database"),
    pytest.mark.parametrize("backend", ["sqlite"], indirect=True),
]


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _under_ci() -> bool:
    """``CI`` set to anything but an explicit no (CI services set ``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _cannot_audit(reason: str) -> NoReturn:
    """No usable Node: a skip on a developer's machine, a failure under CI."""
    message = f"GraphQL-over-HTTP conformance audit {{}}: {reason}; see tests/conformance/package.json"
    if _under_ci():
        pytest.fail(message.format("cannot run under CI"), pytrace=False)
    pytest.skip(message.format("SKIPPED"))


@pytest.mark.parametrize(
    ("ci", "outcome"),
    [
        (None, pytest.skip.Exception),
        ("", pytest.skip.Exception),
        ("false", pytest.skip.Exception),
        ("0", pytest.skip.Exception),
        ("true", pytest.fail.Exception),
        ("1", pytest.fail.Exception),
    ],
)
def test_without_node_the_audit_skips_but_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str | None, outcome: type[BaseException]
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="`node` and `npm` must be on PATH"):
        _cannot_audit("`node` and `npm` must be on PATH")


@pytest.fixture(scope="module")
def audit_command() -> list[str]:
    """`node audit.mjs`, installing the audit's pinned packages first when they are missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        _cannot_audit(f"`node` and `npm` must be on PATH (Node >= {MIN_NODE_MAJOR})")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    major = re.match(r"v(\d+)\.", version)
    if not major or int(major[1]) < MIN_NODE_MAJOR:
        _cannot_audit(f"needs Node >= {MIN_NODE_MAJOR}, found {version!r}")
    if not (CONFORMANCE / "node_modules" / "graphql-http" / "package.json").is_file():
        try:
            installed = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=CONFORMANCE,
                capture_output=True,
                text=True,
                timeout=NPM_CI_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"`npm ci` in {CONFORMANCE} did not finish within {NPM_CI_TIMEOUT}s", pytrace=False)
        if installed.returncode != 0:
            output = _tail(installed.stderr + installed.stdout)
            pytest.fail(f"`npm ci` in {CONFORMANCE} failed ({installed.returncode}):\n{output}", pytrace=False)
    return [node, str(CONFORMANCE / "audit.mjs")]


def _server_trouble(log: str) -> list[str]:
    """Log lines of the server that say something broke: errors, tracebacks, 5xx answers."""
    trouble = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if "Traceback" in line:
                trouble.append(line)
            continue
        if not isinstance(record, dict):
            continue
        status = record.get("status")
        if record.get("level") in {"ERROR", "CRITICAL"} or (isinstance(status, int) and status >= 500):
            trouble.append(line)
    return trouble


def _describe(result: dict) -> str:
    text = f"{result['id']} {result['name']}: {result['reason']}"
    response = result.get("response")
    if response:
        body = " ".join((response["body"] or "").split())
        text += f"\n      got {response['status']} {response['contentType']} {body}".rstrip()
    return text


@pytest.mark.parametrize("auth", ["anonymous", "api_key"])
async def test_graphql_over_http_audit(server, audit_command: list[str], auth: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GRAPHQL_AUTHORIZATION"}
    if auth == "api_key":
        # The secret travels in the environment, not argv; first prove the header authenticates.
        header = "Bearer " + (await api_keys.create_key(partner_id=None, name="conformance")).secret
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(
                f"{server.url}/graphql", json={"query": "{ viewer { kind } }"}, headers={"Authorization": header}
            )
        assert response.json() == {"data": {"viewer": {"kind": "PLATFORM"}}}, response.text
        env["GRAPHQL_AUTHORIZATION"] = header

    log_start = len(server.log())
    try:
        run = await asyncio.to_thread(
            subprocess.run,
            [*audit_command, "--json", f"{server.url}/graphql"],
            cwd=CONFORMANCE,
            env=env,
            capture_output=True,
            text=True,
            timeout=AUDIT_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the audit did not finish within {AUDIT_TIMEOUT}s", pytrace=False)
    summary = run.stderr.strip()
    if run.returncode not in (0, 1):
        pytest.fail(f"the audit could not run ({run.returncode}):\n{_tail(run.stderr + run.stdout)}", pytrace=False)
    results = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    assert len(results) > 40, f"the audit ran only {len(results)} checks:\n{run.stdout}\n{summary}"

    errors = [r for r in results if r["status"] == "error"]
    warnings = [r for r in results if r["status"] in ("warn", "notice")]
    print(summary)
    for result in warnings:
        print(f"  {result['status']}: {_describe(result)}")
    assert not errors, f"{len(errors)} GraphQL-over-HTTP MUST requirement(s) failed ({summary}):\n" + "\n".join(
        f"  - {_describe(r)}" for r in errors
    )
    assert run.returncode == 0, f"the audit found no error but exited {run.returncode}:\n{run.stderr}"

    # Malformed requests must be refused, not crash: the spec lets 5xx pass some checks, we do not.
    trouble = _server_trouble(server.log()[log_start:])
    assert not trouble, "the server logged errors during the audit:\n" + "\n".join(trouble[:20])
