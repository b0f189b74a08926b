"""Counting the SQL statements a piece of code runs."""

from __future__ import annotations

from collections import Counter

import pytest
from tortoise import Tortoise


def count_statements(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """A counter whose "statements" grows by one for every statement run through the default connection,
    until ``monkeypatch.undo()``."""
    counts: Counter[str] = Counter()
    client = Tortoise.get_connection("default")
    for name in ("execute_query", "execute_query_dict"):
        original = getattr(type(client), name)

        async def counted(self, *args, _original=original, **kwargs):
            counts["statements"] += 1
            return await _original(self, *args, **kwargs)

        monkeypatch.setattr(type(client), name, counted)
    return counts
