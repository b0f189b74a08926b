"""The API's ids for our rows: Relay global ids, base64 of "TypeName:databaseId".

Here, not in schema/, because the domain writes them too: the audit log names rows as the API does."""

from __future__ import annotations

import base64


def to_global_id(type_name: str, db_id: int | str) -> str:
    return base64.b64encode(f"{type_name}:{db_id}".encode()).decode()
