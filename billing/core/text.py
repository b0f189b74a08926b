"""Free-text input: one check for every name, note, e-mail and key a client sends.

PostgreSQL cannot store NUL and no database can encode a lone surrogate; SQLite takes both. So
that both backends answer alike, such text is refused here, before any statement, with a typed
error. Control characters are refused too: in a name, an e-mail or a key they make no sense (and a
line break in a brand name would reach an e-mail header); notes and descriptions may hold line
breaks and tabs.
"""

from __future__ import annotations

import re

from billing.core.errors import BillingError, ErrorCode

# Unicode's control characters (category Cc) and surrogates (Cs).
_SINGLE_LINE_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_MULTILINE_REFUSED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def storable_line(text: str) -> bool:
    """Whether ``text`` holds no control character and no surrogate: one line any database stores."""
    return _SINGLE_LINE_REFUSED.search(text) is None


def check_text(
    value: str,
    field: str,
    *,
    max_length: int,
    allow_empty: bool = False,
    strip: bool = True,
    multiline: bool = False,
) -> str:
    """Refuse control characters (line breaks and tabs only where ``multiline``), lone surrogates
    and over-long or (unless allowed) empty values."""
    text = value.strip() if strip else value
    if not allow_empty and not text:
        raise BillingError(ErrorCode.INVALID_INPUT, f"{field} must not be empty", field=field)
    if len(text) > max_length:
        raise BillingError(ErrorCode.INVALID_INPUT, f"{field} must be at most {max_length} characters", field=field)
    if (_MULTILINE_REFUSED if multiline else _SINGLE_LINE_REFUSED).search(text):
        raise BillingError(ErrorCode.INVALID_INPUT, f"{field} contains characters that are not allowed", field=field)
    return text
