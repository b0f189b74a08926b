"""pgbouncer in transaction mode in front of the test PostgreSQL, as a production deployment runs it.

``running`` starts Debian's pgbouncer on a free 127.0.0.1 port with a configuration in a fresh
directory: every database of the PostgreSQL server behind it (``* =``), ``pool_mode = transaction``,
trust authentication for the test user (pgbouncer still wants the user in its ``auth_file``), no Unix
socket. pgbouncer refuses to run as root: as root it is started with ``-u`` as the ``postgres`` user
(or ``nobody``), which is why the directory and its files are readable by all. It logs to its stderr,
kept in ``pgbouncer.log``; it is stopped when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tests.processes import stop

# Debian installs it in /usr/sbin, which is not on every user's PATH.
CANDIDATES = ("pgbouncer", "/usr/sbin/pgbouncer")
MISSING = "pgbouncer is not installed (Debian: apt-get install pgbouncer)"


def binary() -> str | None:
    """The pgbouncer executable, or None when it is not installed."""
    for candidate in CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


@dataclass
class PgBouncer:
    port: int
    user: str
    process: subprocess.Popen[bytes]
    directory: Path

    def url(self, database: str, **params: str) -> str:
        """A DATABASE_URL for ``database`` through this pgbouncer, with ``params`` as its query."""
        query = "&".join(f"{key}={value}" for key, value in params.items())
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{database}" + (f"?{query}" if query else "")

    def log(self) -> str:
        return (self.directory / "pgbouncer.log").read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> list[str]:
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return ["-u", name]
    raise RuntimeError("pgbouncer refuses to run as root, and there is no postgres or nobody user to run it as")


CONFIG = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {auth_file}
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 1000
"""


@contextlib.contextmanager
def running(server_url: str, *, pool_size: int = 20, start_seconds: float = 10.0) -> Iterator[PgBouncer]:
    """pgbouncer in transaction mode in front of the PostgreSQL server of ``server_url`` (its host, port
    and user), with at most ``pool_size`` server connections per database; RuntimeError if it does not
    start (its log says why)."""
    executable = binary()
    if executable is None:
        raise RuntimeError(MISSING)
    target = urlsplit(server_url)
    user = target.username or "postgres"
    directory = Path(tempfile.mkdtemp(prefix="whitebill-pgbouncer-"))
    directory.chmod(0o755)  # read by the user pgbouncer runs as
    (directory / "users.txt").write_text(f'"{user}" ""\n')
    port = _free_port()
    config = directory / "pgbouncer.ini"
    config.write_text(
        CONFIG.format(
            host=target.hostname or "127.0.0.1",
            port=target.port or 5432,
            listen_port=port,
            auth_file=directory / "users.txt",
            pool_size=pool_size,
        )
    )
    for path in directory.iterdir():
        path.chmod(0o644)
    with (directory / "pgbouncer.log").open("wb") as log:
        process = subprocess.Popen(
            [executable, *_run_as(), str(config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    bouncer = PgBouncer(port, user, process, directory)
    try:
        deadline = time.monotonic() + start_seconds
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer did not start:\n{bouncer.log()}")
            time.sleep(0.05)
        yield bouncer
    finally:
        stop(process)
        shutil.rmtree(directory, ignore_errors=True)
