"""Every example of the README and the docs runs, as written, against `whitebill demo` on a fresh database,
so the two cannot drift: each ```graphql block is sent to /graphql, each ```sh block that calls the API with
curl runs in bash. An example answers without an error: no GraphQL error, no payload error, no event
refused. A block that is not meant to run says why in the comment before it:
``<!-- example: not run: the reason -->``; ``<!-- example: key=platform variables={"id": "..."} -->``
chooses the demo's key (partner by default; platform, usage or none) and the variables.

Also: `whitebill demo` run again adds nothing and keeps its keys; `--new-keys` replaces them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Backend, Server, serving

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[a-z]*)[ \t]*$")
ANNOTATION = re.compile(r"^\s*<!--\s*example:\s*(?P<text>.*?)\s*-->\s*$")
DEMO_PORT_URL = "http://127.0.0.1:8000"  # the address the examples are written for (`make run`)


@dataclass
class Example:
    source: str  # path:line
    lang: str
    text: str
    key: str = "partner"
    variables: dict[str, Any] = field(default_factory=dict)
    not_run: str | None = None

    @property
    def runnable(self) -> bool:
        """GraphQL, a shell command calling the API, a partner's Python or JavaScript."""
        return self.lang in ("graphql", "python", "js") or "curl " in self.text  # curl in any block


def examples() -> list[Example]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        lines = path.read_text().splitlines()
        n = 0
        while n < len(lines):
            opening = FENCE.match(lines[n])
            if not opening:
                n += 1
                continue
            end = next(i for i in range(n + 1, len(lines)) if lines[i].strip() == "```")
            indent = len(opening["indent"])
            example = Example(
                f"{path.relative_to(ROOT)}:{n + 1}",
                opening["lang"],
                "\n".join(line[indent:] for line in lines[n + 1 : end]),
            )
            note = ANNOTATION.match(lines[n - 1]) if n else None
            if note:
                _annotate(example, note["text"])
            if example.runnable:
                found.append(example)
            n = end + 1
    return found


def _annotate(example: Example, text: str) -> None:
    if text.startswith("not run:"):
        example.not_run = text.removeprefix("not run:").strip()
        assert example.not_run, f"{example.source}: say why it is not run"
        return
    for part in re.finditer(r"(\w+)=(\{.*\}|\S+)", text):
        if part[1] == "key":
            assert part[2] in ("partner", "platform", "usage", "none"), example.source
            example.key = part[2]
        elif part[1] == "variables":
            example.variables = json.loads(part[2])
        else:
            raise AssertionError(f"{example.source}: unknown annotation {part[1]}")


@dataclass
class Demo:
    server: Server
    keys: dict[str, str]
    output: str


def _whitebill(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "whitebill.cli", *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _keys(output: str) -> dict[str, str]:
    names = {"Platform operator key": "platform", "Demo partner key": "partner", "Product usage key": "usage"}
    found = re.finditer(r"(Platform operator key|Demo partner key|Product usage key):\s+(\S+)", output)
    return {names[m[1]]: m[2] for m in found}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`make run`'s steps on a fresh SQLite database: migrate, demo, serve."""
    folder = tmp_path_factory.mktemp("demo")
    url = f"sqlite://{folder / 'whitebill.sqlite3'}"
    env = dict(os.environ, DATABASE_URL=url, WHITEBILL_ENV="test", WHITEBILL_CHEAP_PASSWORD_HASH="1")
    _whitebill("migrate", env=env)
    output = _whitebill("demo", env=env)
    with serving(Backend("sqlite", url), folder / "server.log") as server:
        yield Demo(server, _keys(output), output)


def test_the_docs_have_examples_and_each_not_run_says_why() -> None:
    found = examples()
    assert len([e for e in found if e.not_run is None]) >= 10
    assert {e.source.split(":")[0] for e in found} >= {"README.md", "docs/getting-started.md"}


def _problems(answer: Any, path: str = "") -> list[str]:
    """Errors anywhere in an answer: GraphQL's, a payload's typed ones, a refused event."""
    found = []
    if isinstance(answer, dict):
        for key, value in answer.items():
            if key == "errors" and value:
                found.append(f"{path}.errors: {value}")
            elif key == "status" and value == "REFUSED":
                found.append(f"{path}: {answer}")
            else:
                found += _problems(value, f"{path}.{key}")
    elif isinstance(answer, list):
        for n, item in enumerate(answer):
            found += _problems(item, f"{path}[{n}]")
    return found


def _run(demo: Demo, example: Example) -> Any:
    if example.lang == "python":
        return _run_python(example)
    assert example.lang != "js", f"{example.source}: no JavaScript runs here, say why in a not-run note"
    key = demo.keys.get(example.key)
    if example.lang == "graphql":
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        answer = httpx.post(
            f"{demo.server.url}/graphql",
            json={"query": example.text, "variables": example.variables},
            headers=headers,
            timeout=30,
        )
        assert answer.status_code == 200, (example.source, answer.text)
        return answer.json()
    assert example.lang in ("sh", "bash"), f"{example.source}: a shell example is ```sh"
    script = example.text.replace(DEMO_PORT_URL, demo.server.url)
    env = dict(os.environ, PRODUCT_KEY=demo.keys["usage"], PARTNER_KEY=demo.keys["partner"])
    env["PLATFORM_KEY"] = demo.keys["platform"]
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, (example.source, done.stderr)
    return json.loads(done.stdout)


def _run_python(example: Example) -> dict[str, Any]:
    """A partner's Python (the webhook signature check): run on a body signed as whitebill signs it, and
    on the same body altered, which it must refuse."""
    import hashlib
    import hmac
    import time

    from billing.outbox.signing import sign

    secret = "whsec_example"
    body = b'{"id":"evt_1","version":2,"type":"webhook.test"}'

    def check(raw_body: bytes, header: str) -> None:
        request = type("Request", (), {"headers": {"Whitebill-Signature": header}})()
        names = {"hashlib": hashlib, "hmac": hmac, "time": time, "secret": secret, "raw_body": raw_body}
        exec(compile(example.text, example.source, "exec"), {**names, "request": request})

    header = sign(secret, body, int(time.time()))
    check(body, header)
    with pytest.raises(AssertionError):
        check(body.replace(b"evt_1", b"evt_2"), header)
    with pytest.raises(AssertionError):
        check(body, sign(secret, body, int(time.time()) - 3600))  # signed an hour ago: replayed
    return {"data": {}}


def test_every_example_answers_as_written(demo: Demo) -> None:
    assert set(demo.keys) == {"platform", "partner", "usage"}, demo.output
    ran: list[str] = []
    usage: list[list[str]] = []
    for example in examples():
        if example.not_run is not None:
            continue
        answer = _run(demo, example)
        assert _problems(answer) == [], (example.source, answer)
        assert answer.get("data") is not None or example.lang in ("sh", "bash"), (example.source, answer)
        ran.append(example.source)
        if "/usage" in example.text:  # charged the first time (the demo prices usage and gives credit)
            usage.append([r["status"] for r in answer["results"]])
    assert ran
    assert usage[0] == ["CHARGED"] and all(statuses in (["CHARGED"], ["DUPLICATE"]) for statuses in usage), usage


def test_the_demo_run_again_adds_nothing_and_keeps_its_keys(demo: Demo, tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'again.sqlite3'}"
    env = dict(os.environ, DATABASE_URL=url, WHITEBILL_ENV="test", WHITEBILL_CHEAP_PASSWORD_HASH="1")
    _whitebill("migrate", env=env)
    first = _keys(_whitebill("demo", env=env))
    again = _whitebill("demo", env=env)
    assert _keys(again) == {} and "--new-keys" in again
    with serving(Backend("sqlite", url), tmp_path / "server.log") as server:

        def who(key: str) -> httpx.Response:
            return httpx.post(
                f"{server.url}/graphql",
                json={"query": "{ viewer { kind } workspaces(first: 10) { nodes { id } } }"},
                headers={"Authorization": f"Bearer {key}"},
            )

        answer = who(first["partner"]).json()["data"]
        assert answer["viewer"]["kind"] == "PARTNER" and len(answer["workspaces"]["nodes"]) == 3  # nothing twice
        replaced = _keys(_whitebill("demo", "--new-keys", env=env))
        assert set(replaced) == {"platform", "partner", "usage"} and replaced["partner"] != first["partner"]
        assert who(replaced["partner"]).json()["data"]["viewer"]["kind"] == "PARTNER"
        refused = who(first["partner"])
        assert refused.status_code == 401 or refused.json().get("errors"), refused.text
