"""Prometheus metrics, served at GET /metrics by prometheus-client.

Labels come from a bounded set only: a request's ``path`` label is the template of the route it
matched (``/graphql``, ``/reports/{report}.csv``...) or ``other``, its method one of the HTTP
methods or ``OTHER``. A client choosing the path therefore can neither add series without bound nor
break the exposition (prometheus-client escapes label values).

Business metrics come from the domain's reports (``billing.core.observe``), made only once the work they
count has committed: this module installs the ``Observer`` that counts them (``install``). The worker adds
how long due work waited before it was taken, and its own loop's ticks.

``whitebill serve --processes N`` runs N processes on one port: it points PROMETHEUS_MULTIPROC_DIR at
a fresh temporary directory before starting them, so that each process writes its values there and
any of them answers /metrics with the sum (see prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from billing.core import observe as domain_observe

disable_created_metrics()  # no *_created series: they mean nothing summed over processes

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNMATCHED = "other"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_registry = CollectorRegistry()
_requests = Counter(
    "whitebill_http_requests",
    "HTTP requests by method, route and status.",
    ["method", "path", "status"],
    registry=_registry,
)
_errors = Counter(
    "whitebill_errors", "Server errors (5xx) by route, and unexpected GraphQL errors.", ["kind"], registry=_registry
)
_latency = Histogram(
    "whitebill_http_request_duration_seconds",
    "Request latency by route.",
    ["path"],
    buckets=_BUCKETS,
    registry=_registry,
)


_compiled = Counter(
    "whitebill_compiled_queries",
    "Registered queries run as their compiled statement (compiled), or handed to the general executor"
    " at run time (fallback: no caller, bad variables or page, or a value the statement cannot write).",
    ["result"],
    registry=_registry,
)


_payments = Counter(
    "whitebill_payment_transitions",
    "Payments reaching a status (CREATED when made), by provider (gateway) and status; counted on commit.",
    ["provider", "status"],
    registry=_registry,
)
_postings = Counter(
    "whitebill_ledger_postings",
    "Ledger postings written, by cause; counted on commit (a rolled-back posting never counts).",
    ["cause"],
    registry=_registry,
)
_usage = Counter(
    "whitebill_usage_events",
    "Usage events answered, by result (CHARGED, FREE, DUPLICATE, REFUSED) and reason (none unless REFUSED).",
    ["result", "reason"],
    registry=_registry,
)
_webhooks = Counter(
    "whitebill_webhook_attempts",
    "Partner webhook delivery attempts, by result: delivered, failed (tried again later), dead (no attempts"
    " left: dead-lettered), dropped (endpoint removed or disabled).",
    ["result"],
    registry=_registry,
)
_LAG_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
_lag = Histogram(
    "whitebill_worker_lag_seconds",
    "Seconds between due work becoming due and a worker taking it, by kind: a job's kind, or the queue"
    " (outbox_event, webhook_delivery).",
    ["kind"],
    buckets=_LAG_BUCKETS,
    registry=_registry,
)
_ticks = Counter("whitebill_worker_ticks", "Passes of the worker loop over every queue, completed.", registry=_registry)
_handled = Counter(
    "whitebill_worker_items", "Items (jobs, events, deliveries...) the worker handled.", registry=_registry
)
_last_tick = Gauge(
    "whitebill_worker_last_tick_timestamp_seconds",
    "Unix time of the worker loop's last completed pass (the latest of every worker process).",
    registry=_registry,
    multiprocess_mode="max",
)


class Counting:
    """The domain's observer (``billing.core.observe.Observer``): each report is one increment."""

    def payment_moved(self, provider: str, status: str) -> None:
        _payments.labels(provider, status).inc()

    def ledger_posted(self, cause: str, postings: int) -> None:
        _postings.labels(cause).inc(postings)

    def usage_results(self, counts: dict[tuple[str, str], int]) -> None:
        for (result, reason), count in counts.items():
            _usage.labels(result, reason).inc(count)

    def webhook_attempt(self, result: str) -> None:
        _webhooks.labels(result).inc()


def install() -> None:
    """Count the domain's reports in this process (the server's and the worker's)."""
    domain_observe.install(Counting())


def worker_took(kind: str, lag_seconds: float) -> None:
    _lag.labels(kind).observe(max(lag_seconds, 0.0))


def worker_ticked(handled: int, at: float) -> None:
    _ticks.inc()
    if handled:
        _handled.inc(handled)
    _last_tick.set(at)


def count_compiled(result: str) -> None:
    _compiled.labels(result).inc()


def route_of(routes: list[BaseRoute], scope: Scope) -> str:
    """The template of the route ``scope`` matches (also when only its method is wrong), else ``other``."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return getattr(route, "path", UNMATCHED)
    return UNMATCHED


def observe(method: str, route: str, status: int, seconds: float) -> None:
    label = method if method in _METHODS else "OTHER"
    _requests.labels(label, route, str(status)).inc()
    _latency.labels(route).observe(seconds)
    if status >= 500:
        _errors.labels(route).inc()


def count_error(kind: str) -> None:
    _errors.labels(kind).inc()


def render(multiprocess_dir: str | None) -> bytes:
    """The exposition: this process's values, or every process's summed from ``multiprocess_dir``."""
    if multiprocess_dir is None:
        return generate_latest(_registry)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)
    return generate_latest(registry)


def process_exiting(multiprocess_dir: str | None) -> None:
    """A server process is ending: its live gauges leave the sums (its counters stay counted)."""
    if multiprocess_dir is not None:
        multiprocess.mark_process_dead(os.getpid(), multiprocess_dir)
