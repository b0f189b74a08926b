"""A live update executed once for its subscribers alike (schema.live): subscribers that receive the
same event object with the same operation, variables, tenant and permissions share one execution of
it; a caller with other permissions, or another operation, gets its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from strawberry.extensions import ParserCache
from strawberry.types import Info

from billing.core.tenancy import Viewer
from models.enums import Permission
from schema.live import SharedEvents, shared

CALLS: list[str] = []


@strawberry.type
class Thing:
    name: str

    @strawberry.field
    def seen_by(self, info: Info) -> str:
        CALLS.append(info.context.viewer.actor)
        return ",".join(sorted(p.value for p in info.context.viewer.permissions))


EVENT = shared(Thing(name="wallet"))


@strawberry.type
class Query:
    ok: bool = True


@strawberry.type
class Live:
    @strawberry.subscription
    async def changed(self, times: int = 1) -> AsyncGenerator[Thing, None]:
        for _ in range(times):
            yield EVENT


# Documents parsed once (whitebill's schema does the same): a shared execution is per operation object.
SCHEMA = strawberry.Schema(
    query=Query,
    subscription=Live,
    execution_context_class=SharedEvents,
    extensions=[lambda: ParserCache(maxsize=16)],
)


class Caller:
    def __init__(self, actor: str, permissions: frozenset[Permission]) -> None:
        self.viewer = Viewer(kind="PARTNER", actor=actor, partner_id=1, permissions=permissions)


async def first(query: str, actor: str, permissions: frozenset[Permission]) -> dict[str, Any] | None:
    stream = await SCHEMA.subscribe(query, context_value=Caller(actor, permissions))
    async for result in stream:  # type: ignore[union-attr]
        assert not result.errors, result.errors
        return result.data
    return None


async def test_a_shared_event_is_executed_once_per_operation_and_kind_of_caller() -> None:
    CALLS.clear()
    reads = frozenset({Permission.READ_REPORTS})
    query = "subscription { changed { name seenBy } }"
    answers = await asyncio.gather(*(first(query, f"a{n}", reads) for n in range(50)))
    assert answers == [{"changed": {"name": "wallet", "seenBy": "READ_REPORTS"}}] * 50
    assert len(CALLS) == 1  # one execution for the 50
    other = await first(query, "b", frozenset({Permission.MANAGE_BILLING}))
    assert other == {"changed": {"name": "wallet", "seenBy": "MANAGE_BILLING"}} and len(CALLS) == 2
    await first("subscription { changed(times: 2) { seenBy } }", "c", reads)  # another operation: its own
    assert len(CALLS) == 3
    plain = await strawberry.Schema(query=Query, subscription=Live).subscribe(query, context_value=Caller("d", reads))
    async for _ in plain:  # type: ignore[union-attr]
        break
    assert len(CALLS) == 4  # without SharedEvents every subscriber executes its own
