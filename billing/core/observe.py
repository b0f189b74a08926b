"""What the domain reports to whoever watches it: a payment moved, a ledger posting was written, usage
events got their results, a partner webhook delivery ended an attempt.

The domain never imports the application: the application installs an ``Observer`` when a process
starts (``whitebill.metrics`` counts each report in Prometheus); until then reports go nowhere.

A report is about committed work only. Made inside a transaction, it is held until that transaction
commits, and dropped if it rolls back: a rolled-back posting never counts. Tortoise has no "on commit"
hook, so the held reports ride on the transaction's own ``commit`` and ``rollback``. A savepoint that
rolls back while its transaction goes on is not visible that way: a block whose failure the caller
survives is written ``async with observe.savepoint():`` instead of ``in_transaction``, so that what it
reported leaves with it.

Labels are closed sets (providers, statuses, causes, reasons): never an id.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Protocol

from tortoise.transactions import in_transaction

from billing.core import sql

log = logging.getLogger("whitebill.observe")

_HELD = "_whitebill_reports"  # the list of held reports, kept on the transaction's client


class Observer(Protocol):
    def payment_moved(self, provider: str, status: str) -> None:
        """A payment of ``provider`` reached ``status`` (CREATED when it was made)."""

    def ledger_posted(self, cause: str, postings: int) -> None:
        """``postings`` postings of ``cause`` were written."""

    def usage_results(self, counts: dict[tuple[str, str], int]) -> None:
        """Usage events answered, counted by (status, reason); reason ``none`` when there is none."""

    def webhook_attempt(self, result: str) -> None:
        """A partner webhook delivery ended an attempt: delivered, failed (tried again later), dead (no
        attempts left) or dropped (its endpoint was removed or disabled)."""


_observer: Observer | None = None


def install(observer: Observer | None) -> None:
    """The observer of this process (None: reports go nowhere)."""
    global _observer
    _observer = observer


def payment_moved(provider: str, status: str) -> None:
    _report(lambda o: o.payment_moved(provider, status))


def ledger_posted(cause: str, postings: int = 1) -> None:
    if postings:
        _report(lambda o: o.ledger_posted(cause, postings))


def usage_results(results: Iterable[Any]) -> None:
    """``results``: objects with ``status`` and ``reason`` (``billing.usage.whatsapp.UsageResult``)."""
    if _observer is None:
        return
    counts = Counter((str(r.status), str(r.reason) if r.reason is not None else "none") for r in results)
    if counts:
        _report(lambda o: o.usage_results(dict(counts)))


def webhook_attempt(result: str) -> None:
    _report(lambda o: o.webhook_attempt(result))


Report = Callable[[Observer], None]


def _report(report: Report) -> None:
    if _observer is None:
        return
    connection = sql.connection()
    if sql.in_transaction(connection):
        _held(connection).append(report)
    else:
        _deliver([report])


def _deliver(reports: list[Report]) -> None:
    observer = _observer
    if observer is None:
        return
    for report in reports:
        try:
            report(observer)
        except Exception:  # counting never breaks the work it counts
            log.exception("an observer failed")


def _held(connection: Any) -> list[Report]:
    """The reports held by the open transaction ``connection``; the first call makes its commit deliver them
    and its rollback drop them."""
    state = vars(connection)
    held: list[Report] | None = state.get(_HELD)
    if held is not None:
        return held
    held = state[_HELD] = []
    commit: Callable[[], Awaitable[None]] = connection.commit
    rollback: Callable[[], Awaitable[None]] = connection.rollback

    async def commit_then_deliver() -> None:
        await commit()
        reports: list[Report] = held[:]
        held.clear()
        _deliver(reports)

    async def drop_then_rollback() -> None:
        held.clear()
        await rollback()

    # Instance attributes, on this transaction's client only (it lives as long as the transaction).
    state["commit"] = commit_then_deliver
    state["rollback"] = drop_then_rollback
    return held


@contextlib.asynccontextmanager
async def savepoint() -> AsyncIterator[None]:
    """``in_transaction("default")`` for a block that may fail while the caller goes on: inside a transaction
    it is a savepoint, and what was reported inside it is dropped when it rolls back."""
    connection = sql.connection()
    held = _held(connection) if _observer is not None and sql.in_transaction(connection) else None
    mark = len(held) if held is not None else 0
    try:
        async with in_transaction("default"):
            yield
    except BaseException:
        if held is not None:
            del held[mark:]
        raise
