"""Cursor pagination done in SQL: keyset on the id, one row more than asked to know if more follow."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tortoise.queryset import QuerySet

from billing.core.errors import BillingError, ErrorCode
from schema.ids import decode_cursor
from schema.types import Connection, connection_of

N = TypeVar("N")
DEFAULT_PAGE = 20
MAX_PAGE = 100


def page_size(first: int | None, maximum: int = MAX_PAGE) -> int:
    if first is None:
        return min(DEFAULT_PAGE, maximum)
    if first < 0 or first > maximum:
        raise BillingError(ErrorCode.PAGE_SIZE_TOO_LARGE, f"first must be between 0 and {maximum}", field="first")
    return first


async def paginate(
    queryset: QuerySet[Any],
    *,
    first: int | None,
    after: str | None,
    to_node: Callable[[Any], N],
) -> Connection[N]:
    size = page_size(first)
    if after is not None:
        queryset = queryset.filter(id__gt=decode_cursor(after))
    rows = await queryset.order_by("id").limit(size + 1) if size else []
    page = rows[:size]
    return connection_of(
        [to_node(r) for r in page],
        [r.id for r in page],
        has_next=len(rows) > size,
        has_previous=after is not None,
    )
