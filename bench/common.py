"""Shared pieces: a throwaway PostgreSQL database, a real server process, the result line."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from billing.core.credentials import new_key
from whitebill import db

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def admin_url() -> str:
    return db.normalise_url(os.environ.get("DATABASE_URL", DEFAULT_URL)).split("?")[0]


def database_url(name: str, **params: str) -> str:
    parts = urlsplit(admin_url())
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", query, ""))


def asyncpg_dsn(url: str) -> str:
    return url.split("?")[0].replace("postgres://", "postgresql://", 1)


@contextlib.asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    """A freshly migrated database on the server named by DATABASE_URL, dropped afterwards."""
    name = f"whitebill_bench_{secrets.token_hex(4)}"
    await db.migrate(database_url(name), quiet=True)
    try:
        yield name
    finally:
        conn = await asyncpg.connect(asyncpg_dsn(admin_url()))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parent_death_signal() -> Callable[[], None] | None:
    """A function for the child to run before exec, so that it gets SIGTERM when the benchmark dies
    and no server outlives it (Linux's PR_SET_PDEATHSIG). Looked up here, in the parent: the child
    only makes the call."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, int(signal.SIGTERM))


@contextlib.contextmanager
def process_server(argv: list[str], env: dict[str, str], base: str) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv``, wait until ``base``/healthz answers 200, stop it (and wait for it) afterwards."""
    log_path = os.environ.get("BENCH_SERVER_LOG")  # where the server's output goes; nowhere by default
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # closed below
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_parent_death_signal())
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(argv)} did not start")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log is not subprocess.DEVNULL:
            log.close()


@contextlib.contextmanager
def server(url: str, processes: int = 1) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real ``whitebill serve`` on 127.0.0.1 against ``url`` (``processes`` server processes)."""
    port = free_port()
    env = dict(os.environ, DATABASE_URL=url, PORT=str(port), WHITEBILL_ENV="production", LOG_LEVEL="WARNING")
    # What production requires to start; nothing is sent to the public address in a benchmark.
    env.setdefault("WHITEBILL_SECRET_KEY", new_key())
    env.setdefault("WHITEBILL_PUBLIC_URL", "https://billing.example")
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "whitebill.cli", "serve", "--processes", str(processes)]
    with process_server(argv, env, base) as process:
        yield base, process


@contextlib.contextmanager
def servers(url: str, count: int) -> Iterator[list[str]]:
    """``count`` one-process ``whitebill serve`` on their own ports: N servers for a balancer (``LeanHttp``
    with all their bases) to spread connections over evenly."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(server(url))[0] for _ in range(count)]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class BackendCpu:
    """CPU time used by the PostgreSQL processes serving database ``name`` since ``start()``.

    The pool may replace its connections during a long run: every backend seen at a ``sample()`` is
    remembered with the last CPU time read for it, so one that ends between two samples loses only
    what it used after the last one."""

    def __init__(self, admin: asyncpg.Connection, name: str) -> None:
        self.admin, self.name = admin, name
        self.initial: dict[int, float] = {}
        self.latest: dict[int, float] = {}

    async def _read(self) -> dict[int, float]:
        rows = await self.admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", self.name
        )
        found = {}
        for row in rows:
            with contextlib.suppress(OSError):
                found[row["pid"]] = cpu_seconds(row["pid"])
        return found

    async def start(self) -> None:
        self.initial = await self._read()
        self.latest = dict(self.initial)

    async def sample(self) -> float:
        """Seconds of CPU used since ``start()``."""
        self.latest.update(await self._read())
        return sum(cpu - self.initial.get(pid, 0.0) for pid, cpu in self.latest.items())


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of a process from /proc/<pid>/status (VmRSS, VmHWM...), in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} for process {pid}")


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so that servers are stopped and scratch databases dropped."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def report(bench_id: str, figure: float, unit: str, floor: float) -> None:
    ratio = figure / floor if floor else 0.0
    print(f"BENCH {bench_id} {figure:.1f} {unit} floor={floor:.1f} ratio={ratio:.3f}", flush=True)


@dataclass(frozen=True)
class Load:
    """What ``load_for`` did: how many requests completed, and how long until the last one did."""

    completed: int
    seconds: float  # the time during which new requests were started
    elapsed: float  # until the last request still in flight at the deadline finished (the drain)

    @property
    def rate(self) -> float:
        return self.completed / self.elapsed if self.elapsed else 0.0

    def __add__(self, other: Load) -> Load:
        """Two loads taken one after the other, as one."""
        return Load(self.completed + other.completed, self.seconds + other.seconds, self.elapsed + other.elapsed)


async def load_for(seconds: float, clients: int, work: Callable[[], Awaitable[object]]) -> Load:
    """Run ``work()`` from ``clients`` concurrent tasks, starting new calls for ``seconds``.

    The rate counts every completed call over the whole time until the last one finished. Counting
    them all against ``seconds`` would overstate a slow server by up to ``clients`` calls (those in
    flight at the deadline), and counting only those done by the deadline would understate it, since
    a slow server finishes its ``clients`` concurrent requests in waves."""
    completed = 0
    started = time.monotonic()
    stop = started + seconds

    async def client() -> None:
        nonlocal completed
        while time.monotonic() < stop:
            await work()
            completed += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return Load(completed, seconds, time.monotonic() - started)


async def run_for(seconds: float, clients: int, work: Callable[[], Awaitable[object]]) -> float:
    """``load_for``'s rate times ``seconds``: divided by ``seconds``, the calls completed per second."""
    return (await load_for(seconds, clients, work)).rate * seconds


class LeanHttp:
    """Keep-alive HTTP/1.1 connections for load generation, one per concurrent client.

    The load generator shares the machine's cores with the server it measures: httpx's pool spent
    2.5 to 10 ms of CPU per request here (more than the server), a bare request over a kept-alive
    socket about 0.1 ms, close to what asyncpg costs the raw floors' clients. Answers must carry a
    Content-Length (Starlette's do)."""

    def __init__(self, base: str | Sequence[str], connections: int, headers: dict[str, str] | None = None) -> None:
        """``base`` may name several servers: connection i then goes to server i modulo their number, the
        way a balancer spreads clients (processes sharing one listening socket take connections as they
        race for them: four connections have all gone to one of two processes)."""
        self.targets = []
        for one in [base] if isinstance(base, str) else base:
            parts = urlsplit(one)
            self.targets.append((parts.hostname or "127.0.0.1", parts.port or 80))
        self.size = connections
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self.heads = [
            f"Host: {host}:{port}\r\nContent-Type: application/json\r\n{extra}" for host, port in self.targets
        ]
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter, int]] = asyncio.Queue()

    async def _open(self, target: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
        reader, writer = await asyncio.open_connection(*self.targets[target])
        return reader, writer, target

    async def __aenter__(self) -> LeanHttp:
        for n in range(self.size):
            self.idle.put_nowait(await self._open(n % len(self.targets)))
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        while not self.idle.empty():
            _, writer, _ = self.idle.get_nowait()
            writer.close()

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """(status, body) of one POST, on an idle kept-alive connection."""
        return await self.request("POST", path, body)

    async def get(self, path: str) -> tuple[int, bytes]:
        """(status, body) of one GET (``path`` with its query string, already encoded)."""
        return await self.request("GET", path, b"")

    async def request(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        reader, writer, target = await self.idle.get()
        try:
            head = self.heads[target]
            writer.write(f"{method} {path} HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            answer_head = await reader.readuntil(b"\r\n\r\n")
            status_line, *lines = answer_head.decode("latin-1").split("\r\n")
            fields = dict(line.split(":", 1) for line in lines if ":" in line)
            length = next(int(v) for k, v in fields.items() if k.strip().lower() == "content-length")
            answer = await reader.readexactly(length)
        except BaseException:
            writer.close()  # a connection in an unknown state is not reused
            self.idle.put_nowait(await self._open(target))
            raise
        self.idle.put_nowait((reader, writer, target))
        return int(status_line.split(" ", 2)[1]), answer


def run_on_uvloop(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a benchmark's ``main`` on the event loop the server runs on (uvloop where installed), so that a
    floor's client pays what the server's loop pays."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
