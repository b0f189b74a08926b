"""A live update executed once for all the subscribers it goes to.

When an object changes, its subscribers that share a tenant scope share one read of it
(``billing.core.realtime.Broker.read``) and so receive the same event object. Executing the
subscription's selection on it is then the same work for each of them when they sent the same
operation with the same variables and hold the same permissions: the first one's result serves the
others (``SharedEvents``), so a change costs one execution per kind of subscriber, not one per
subscriber. Each subscriber still gets its own result object; only the data is shared, read-only.
"""

from __future__ import annotations

import asyncio
from typing import Any

from graphql import ExecutionResult
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

# The attribute of an event object that holds the results executed on it, by operation and caller.
_RESULTS = "_whitebill_shared_results"


def shared(event: Any) -> Any:
    """Mark ``event`` (a node a subscription yields to many subscribers) as one whose results are shared."""
    setattr(event, _RESULTS, {})
    return event


class SharedEvents(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor, except that a shared event's result is computed once per operation,
    variables and caller (tenant and permissions): the caller's context decides what a field shows."""

    def execute_operation(self, serially: bool | None = None) -> Any:
        results: dict[tuple[Any, ...], tuple[Any, asyncio.Future[ExecutionResult]]] | None = getattr(
            self.root_value, _RESULTS, None
        )
        if results is None:
            return super().execute_operation(serially)
        viewer = getattr(self.context_value, "viewer", None)
        key = (
            id(self.operation),
            repr(sorted(self.variable_values.coerced.items())),
            None if viewer is None else (viewer.kind, viewer.partner_id, viewer.workspace_id, viewer.permissions),
        )
        found = results.get(key)
        if found is None or found[0] is not self.operation:  # the operation object keeps its id while held
            found = (self.operation, asyncio.ensure_future(self._execute(serially)))
            results[key] = found
        return self._copy_of(found[1])

    async def _execute(self, serially: bool | None) -> ExecutionResult:
        result = super().execute_operation(serially)
        return await result if self.is_awaitable(result) else result  # type: ignore[no-any-return]

    @staticmethod
    async def _copy_of(execution: asyncio.Future[ExecutionResult]) -> ExecutionResult:
        # A subscriber that goes away does not cancel the execution the others wait for.
        result = await asyncio.shield(execution)
        return ExecutionResult(
            data=result.data,
            errors=list(result.errors) if result.errors else None,
            extensions=result.extensions,
        )
