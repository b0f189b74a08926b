"""Relay global ids: base64 of "TypeName:databaseId" (made by ``billing.core.ids``), and reading them back."""

from __future__ import annotations

import base64
import binascii

from billing.core.errors import BillingError, ErrorCode
from billing.core.ids import to_global_id

MAX_DB_ID = 2**63 - 1


def _canonical_number(text: str) -> int:
    """A database id written as :func:`to_global_id` writes it: ASCII digits without leading zeros
    (``int`` would also take other scripts' digits, spaces, signs and "_")."""
    if not (text.isascii() and text.isdigit()) or str(int(text)) != text:
        raise ValueError
    return int(text)


def from_global_id(global_id: str, field: str = "id") -> tuple[str, int]:
    """(type name, database id); INVALID_ID for anything that is not one of our ids, exactly as we
    write them: one object has one id."""
    try:
        if len(global_id) > 200 or not global_id.isascii():
            raise ValueError
        raw = base64.b64decode(global_id.encode(), validate=True).decode("ascii")
        type_name, _, number = raw.partition(":")
        if not type_name.isidentifier():
            raise ValueError
        db_id = _canonical_number(number)
        if not 0 < db_id <= MAX_DB_ID or to_global_id(type_name, db_id) != global_id:
            raise ValueError
    except (ValueError, binascii.Error, UnicodeError):
        raise BillingError(ErrorCode.INVALID_ID, "not a valid id", field=field) from None
    return type_name, db_id


def expect_id(global_id: str, type_name: str, field: str) -> int:
    """The database id of a global id of ``type_name``; an id of another type is not found."""
    found_type, db_id = from_global_id(global_id, field)
    if found_type != type_name:
        raise BillingError(ErrorCode.NOT_FOUND, f"{type_name} not found", field=field)
    return db_id


def project_db_id(global_id: str, cache: dict[str, int]) -> int:
    """A project's database id, or 0 (found nowhere) for anything that is not a project's id: a batch
    of usage events refuses that event alone, not the batch. ``cache`` decodes each id once per batch."""
    known = cache.get(global_id)
    if known is None:
        try:
            kind, db_id = from_global_id(global_id, "projectId")
        except BillingError:
            kind, db_id = "", 0
        known = cache[global_id] = db_id if kind == "Project" else 0
    return known


def encode_cursor(db_id: int) -> str:
    return base64.b64encode(f"cursor:{db_id}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        if len(cursor) > 200 or not cursor.isascii():
            raise ValueError
        raw = base64.b64decode(cursor.encode(), validate=True).decode("ascii")
        prefix, _, number = raw.partition(":")
        position = _canonical_number(number)
        if prefix != "cursor" or position > MAX_DB_ID or encode_cursor(position) != cursor:
            raise ValueError
        return position
    except (ValueError, binascii.Error, UnicodeError):
        raise BillingError(ErrorCode.INVALID_CURSOR, "not a valid cursor", field="after") from None
