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
import contextlib
from typing import Any

from graphql import ExecutionResult
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.types import ExecutionContext

from schema.execution import PlainLeaves

# The attribute of an event object that holds the results executed on it, by operation and caller.
_RESULTS = "_whitebill_shared_results"
# The attribute of an executor that holds its variables written out (part of the key of its results).
_VARIABLES = "_whitebill_variables"


def shared(event: Any) -> Any:
    """Mark ``event`` (a node a subscription yields to many subscribers) as one whose results are shared."""
    setattr(event, _RESULTS, {})
    return event


class SharedEvents(PlainLeaves):
    """Strawberry's executor, except that a shared event's result is computed once per operation,
    variables and caller (tenant and permissions): the caller's context decides what a field shows."""

    def _shared_key(self) -> tuple[Any, ...]:
        viewer = getattr(self.context_value, "viewer", None)
        variables = self.__dict__.get(_VARIABLES)
        if variables is None:  # a subscription's variables are fixed: written out once
            variables = self.__dict__[_VARIABLES] = repr(sorted(self.variable_values.coerced.items()))
        return (
            id(self.operation),
            variables,
            None if viewer is None else (viewer.kind, viewer.partner_id, viewer.workspace_id, viewer.permissions),
        )

    def build_per_event_executor(self, payload: Any) -> Any:
        # A result already computed for callers alike needs no executor of its own for this event.
        results = getattr(payload, _RESULTS, None)
        if results is not None:
            found = results.get(self._shared_key())
            if found is not None and found[0] is self.operation and isinstance(found[1], ExecutionResult):
                return _Answered(found[1])
        return super().build_per_event_executor(payload)

    def execute_operation(self, serially: bool | None = None) -> Any:
        results: dict[tuple[Any, ...], tuple[Any, ExecutionResult | asyncio.Future[ExecutionResult]]] | None = getattr(
            self.root_value, _RESULTS, None
        )
        if results is None:
            return super().execute_operation(serially)
        key = self._shared_key()
        found = results.get(key)
        if found is None or found[0] is not self.operation:  # the operation object keeps its id while held
            outcome = super().execute_operation(serially)
            # A selection whose resolvers all answer at once is executed here and now: the subscribers
            # after the first take its result without waiting on anything (the common case).
            found = (self.operation, asyncio.ensure_future(outcome) if self.is_awaitable(outcome) else outcome)
            results[key] = found
        outcome = found[1]
        if isinstance(outcome, asyncio.Future):
            if outcome.done() and not outcome.cancelled() and outcome.exception() is None:
                return _copy(outcome.result())
            return self._copy_of(outcome)
        return _copy(outcome)

    @staticmethod
    async def _copy_of(execution: asyncio.Future[ExecutionResult]) -> ExecutionResult:
        # A subscriber that goes away does not cancel the execution the others wait for.
        return _copy(await asyncio.shield(execution))


class _Answered:
    """The executor of an event whose result is known: it hands out a copy of it."""

    __slots__ = ("result",)

    def __init__(self, result: ExecutionResult) -> None:
        self.result = result

    def execute_operation(self, serially: bool | None = None) -> ExecutionResult:
        return _copy(self.result)


def _copy(result: ExecutionResult) -> ExecutionResult:
    return ExecutionResult(
        data=result.data,
        errors=list(result.errors) if result.errors else None,
        extensions=result.extensions,
    )


class LeanExtensionsRunner(SchemaExtensionsRunner):
    """Strawberry's runner, less what it spends on every result of a live update for hooks no
    extension here has: results are asked only of extensions that give some, and a result with no
    error skips ``on_stream_result`` when the only extensions with that hook mask errors."""

    def __init__(self, execution_context: ExecutionContext, extensions: list[SchemaExtension] | None = None) -> None:
        super().__init__(execution_context, extensions)
        self._with_results = [e for e in self.extensions if type(e).get_results is not SchemaExtension.get_results]
        on_result = [e for e in self.extensions if type(e).on_stream_result is not SchemaExtension.on_stream_result]
        self._only_errors_on_result = all(isinstance(e, MaskErrors) for e in on_result)

    async def get_extensions_results(self, ctx: ExecutionContext) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for extension in self._with_results:
            found = extension.get_results()
            data.update(await found if asyncio.iscoroutine(found) else found)
        data.update(ctx.extensions_results)
        return data

    def on_stream_result(self, result: Any) -> Any:
        if self._only_errors_on_result and not any(
            getattr(result, part, None) for part in ("errors", "incremental", "completed")
        ):
            return contextlib.nullcontext()
        return super().on_stream_result(result)
