"""How many processes `make test` runs the suite in (pytest-xdist, one file to a process): one per core, up
to two, when the PostgreSQL server takes enough connections for that many suites at once (each process
has its own database, servers and workers; one suite alone peaks above 80 connections); otherwise one.
`.ci/run` raises PostgreSQL's limit first. Prints the number.
"""

from __future__ import annotations

import asyncio
import os

import asyncpg

# The server tests/conftest.py makes its databases on.
PG_ADMIN = os.environ.get("WHITEBILL_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")
CONNECTIONS_PER_PROCESS = 100


async def _max_connections() -> int | None:
    try:
        conn = await asyncio.wait_for(asyncpg.connect(PG_ADMIN.replace("postgres://", "postgresql://", 1)), 5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None  # no PostgreSQL: its half is skipped (or fails under CI) whatever the processes
    try:
        return int(await conn.fetchval("SHOW max_connections"))
    finally:
        await conn.close()


def processes() -> int:
    wanted = min(2, os.cpu_count() or 1)
    limit = asyncio.run(_max_connections())
    if limit is not None:
        wanted = min(wanted, max(1, limit // CONNECTIONS_PER_PROCESS))
    return wanted


if __name__ == "__main__":
    print(processes())
