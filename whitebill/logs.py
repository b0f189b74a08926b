"""Structured logs: one JSON object per line, each with the request id it belongs to."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from billing.core.audit import request_id

# Keys of LogRecord that are not extra fields passed by the caller; and uvicorn's ``color_message``, its
# message again with terminal colour codes, which a JSON line has no use for.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id.get(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that would print SQL or request bodies stay quiet: bodies can hold secrets.
    for noisy in (
        "tortoise",
        "tortoise.db_client",
        "aiosqlite",
        "asyncpg",
        "stripe",
        "asaas",
        "urllib3",
        "httpx",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("strawberry.execution").setLevel(logging.CRITICAL)
    logging.getLogger("uvicorn.access").disabled = True
