"""Child processes the tests start (servers, workers, pgbouncer): stopped the same way everywhere."""

from __future__ import annotations

import subprocess
from typing import Any


def stop(process: subprocess.Popen[Any], *, timeout: float = 10) -> None:
    """SIGTERM, and SIGKILL if it has not ended within ``timeout`` seconds; reaped either way."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
