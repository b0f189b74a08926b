"""Free-text input: one check for every name, note, e-mail and key a client sends."""

from __future__ import annotations

import unicodedata

from billing.core.errors import BillingError, ErrorCode


def check_text(value: str, field: str, *, max_length: int, allow_empty: bool = False, strip: bool = True) -> str:
    """Refuse control characters (NUL breaks PostgreSQL), lone surrogates (not encodable) and
    over-long or (unless allowed) empty values."""
    text = value.strip() if strip else value
    if not allow_empty and not text:
        raise BillingError(ErrorCode.INVALID_INPUT, f"{field} must not be empty", field=field)
    if len(text) > max_length:
        raise BillingError(ErrorCode.INVALID_INPUT, f"{field} must be at most {max_length} characters", field=field)
    for char in text:
        category = unicodedata.category(char)
        if category == "Cs" or (category == "Cc" and char not in "\n\t"):
            raise BillingError(
                ErrorCode.INVALID_INPUT, f"{field} contains characters that are not allowed", field=field
            )
    return text
