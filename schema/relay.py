"""Relay's shapes: the Node interface, cursor connections, and keyset pagination done in SQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import strawberry
import strawberry.scalars
from tortoise.queryset import QuerySet

from billing.core import sql
from billing.core.errors import BillingError, ErrorCode
from schema.ids import decode_cursor, encode_cursor


@strawberry.interface(description="An object with a global id, fetchable with node(id:).")
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


N = TypeVar("N")


@strawberry.type
class Edge(Generic[N]):
    cursor: str
    node: N


@strawberry.type
class Connection(Generic[N]):
    edges: list[Edge[N]]
    page_info: PageInfo

    @strawberry.field
    def nodes(self) -> list[N]:
        return [edge.node for edge in self.edges]


def connection_of(nodes: list[N], db_ids: list[int], *, has_next: bool, has_previous: bool) -> Connection[N]:
    edges = [Edge(cursor=encode_cursor(i), node=n) for n, i in zip(nodes, db_ids, strict=True)]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_next,
            has_previous_page=has_previous,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )


DEFAULT_PAGE = 20
MAX_PAGE = 100


def page_size(first: int | None, maximum: int = MAX_PAGE) -> int:
    if first is None:
        return min(DEFAULT_PAGE, maximum)
    if first < 0:
        raise BillingError(ErrorCode.INVALID_PAGE_SIZE, "first must not be negative", field="first")
    if first > maximum:
        raise BillingError(ErrorCode.PAGE_SIZE_TOO_LARGE, f"first must be at most {maximum}", field="first")
    return first


async def paginate(
    queryset: QuerySet[Any],
    *,
    first: int | None,
    after: str | None,
    to_node: Callable[[Any], N],
    newest_first: bool = False,
) -> Connection[N]:
    """One page of ``queryset`` in id order: oldest first, or newest first (payments, periods)."""
    size = page_size(first)
    if after is not None:
        cursor = decode_cursor(after)
        queryset = queryset.filter(id__lt=cursor) if newest_first else queryset.filter(id__gt=cursor)
    rows = await queryset.order_by("-id" if newest_first else "id").limit(size + 1) if size else []
    return _page_of(rows, size, after, to_node)


async def paginate_plain(
    model: type[Any],
    scope: tuple[str, list[Any]],
    *,
    first: int | None,
    after: str | None,
    to_node: Callable[[Any], N],
) -> Connection[N]:
    """:func:`paginate` (oldest first) over plain rows of ``model`` (``sql.plain_rows``) for a hot read path:
    ``scope`` is the rows' condition over the alias ``r`` and its parameters, numbered from $1."""
    size = page_size(first)
    cursor = decode_cursor(after) if after is not None else None
    rows = []
    if size:
        condition, params = scope
        if cursor is not None:
            params = [*params, cursor]
            condition = f"({condition}) AND r.id > ${len(params)}"
        table = model._meta.db_table
        query = f"SELECT r.* FROM {table} r WHERE {condition} ORDER BY r.id LIMIT {size + 1}"  # noqa: S608 (ours)
        rows = await sql.plain_rows(model, query, *params)
    return _page_of(rows, size, after, to_node)


def _page_of(rows: list[Any], size: int, after: str | None, to_node: Callable[[Any], N]) -> Connection[N]:
    """The first ``size`` of ``rows`` as a page; a row beyond them tells of a next page."""
    page = rows[:size]
    return connection_of(
        [to_node(r) for r in page],
        [r.id for r in page],
        has_next=len(rows) > size,
        has_previous=after is not None,
    )


def paginate_loaded(
    rows: list[Any], *, first: int | None, after: str | None, to_node: Callable[[Any], N]
) -> Connection[N]:
    """One page, keyed on ids like :func:`paginate`, of rows already loaded in id order: what a
    DataLoader fetched in one statement for a whole page of parents (each workspace's projects)."""
    size = page_size(first)
    cursor = decode_cursor(after) if after is not None else None
    return _page_of([r for r in rows if cursor is None or r.id > cursor], size, after, to_node)


def slice_connection(items: list[N], *, first: int | None, after: str | None) -> Connection[N]:
    """A connection over a list already in memory (computed rows with no id of their own: rate card
    cells, forecast renewals, history entries): the cursor is the item's position in the list."""
    size = page_size(first)
    start = decode_cursor(after) if after is not None else 0
    page = items[start : start + size]
    return connection_of(
        page,
        list(range(start + 1, start + 1 + len(page))),
        has_next=start + size < len(items),
        has_previous=start > 0,
    )
