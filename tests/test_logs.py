"""The JSON log lines: one object a line, the caller's extra fields kept, no terminal colour codes."""

from __future__ import annotations

import json
import logging

from whitebill.logs import JsonFormatter


def test_a_line_keeps_extra_fields_and_drops_uvicorns_coloured_copy() -> None:
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Started server process [%d]", (42,), None)
    record.color_message = "Started server process [\x1b[36m%d\x1b[0m]"  # what uvicorn adds
    record.partner_id = 7
    line = JsonFormatter().format(record)
    assert "\x1b" not in line and "\\u001b" not in line
    entry = json.loads(line)
    assert entry["message"] == "Started server process [42]" and entry["partner_id"] == 7
    assert "color_message" not in entry


def test_a_line_has_todays_fields_in_order_and_no_escape_sequences() -> None:
    from pythonjsonlogger.json import JsonFormatter as LibraryJsonFormatter

    formatter = JsonFormatter()
    assert isinstance(formatter, LibraryJsonFormatter)  # python-json-logger writes the lines
    record = logging.LogRecord(
        "whitebill.worker", logging.WARNING, __file__, 1, "paid \x1b[1;32m%s\x1b[0m", ("42",), None
    )
    record.kind = "renewal"
    entry = json.loads(formatter.format(record))
    assert list(entry) == ["time", "level", "logger", "message", "request_id", "kind"]
    assert entry["level"] == "WARNING" and entry["logger"] == "whitebill.worker"
    assert entry["message"] == "paid 42" and entry["request_id"] is None
    assert entry["time"].endswith("+00:00") and len(entry["time"].split("T")[1]) == len("00:00:00.000+00:00")


def test_an_exception_comes_last_with_its_traceback() -> None:
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        import sys

        info = sys.exc_info()
    record = logging.LogRecord("whitebill.worker", logging.ERROR, __file__, 1, "job failed", (), info)
    record.job_id = 9
    entry = json.loads(JsonFormatter().format(record))
    assert list(entry)[-2:] == ["job_id", "exception"]
    assert "Traceback" in entry["exception"] and "ZeroDivisionError: division by zero" in entry["exception"]
