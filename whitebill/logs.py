"""Structured logs: one JSON object per line, each with the request id it belongs to.

python-json-logger writes the lines. Each has ``time`` (UTC, milliseconds), ``level``, ``logger``,
``message`` and ``request_id``, then the caller's ``extra`` fields, then ``exception`` (its traceback)
when there is one. No terminal colour codes: uvicorn's ``color_message`` (its message again, coloured) is
left out, and escape sequences in a message are taken out.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as LibraryJsonFormatter

from billing.core.audit import request_id

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")  # CSI sequences: colours, cursor moves


class JsonFormatter(LibraryJsonFormatter):
    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
            json_default=str,
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        fields: dict[str, Any] = {}
        super().add_fields(fields, record, message_dict)
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        log_data["level"] = fields.pop("level")
        log_data["logger"] = fields.pop("logger")
        log_data["message"] = _ANSI.sub("", str(fields.pop("message", "")))
        log_data["request_id"] = request_id.get()
        exception = fields.pop("exception", None)
        log_data.update(fields)  # the caller's extra fields
        if exception is not None:  # last, as the longest
            log_data["exception"] = exception


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
