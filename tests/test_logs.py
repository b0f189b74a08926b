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
