"""A few Prometheus metrics, served as text at GET /metrics."""

from __future__ import annotations

import time
from collections import defaultdict
from threading import Lock

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.errors: dict[str, int] = defaultdict(int)
        self.buckets: dict[str, list[int]] = defaultdict(lambda: [0] * len(_BUCKETS))
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.latency_count: dict[str, int] = defaultdict(int)
        self.started = time.time()

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, path, status)] += 1
            if status >= 500:
                self.errors[path] += 1
            counts = self.buckets[path]
            for i, bound in enumerate(_BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            self.latency_sum[path] += seconds
            self.latency_count[path] += 1

    def count_error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    def render(self) -> str:
        lines = [
            "# HELP whitebill_http_requests_total HTTP requests by method, path and status.",
            "# TYPE whitebill_http_requests_total counter",
        ]
        with self._lock:
            for (method, path, status), count in sorted(self.requests.items()):
                lines.append(
                    f'whitebill_http_requests_total{{method="{method}",path="{path}",status="{status}"}} {count}'
                )
            lines += [
                "# HELP whitebill_errors_total Server errors (5xx) and unexpected GraphQL errors.",
                "# TYPE whitebill_errors_total counter",
            ]
            for kind, count in sorted(self.errors.items()):
                lines.append(f'whitebill_errors_total{{kind="{kind}"}} {count}')
            lines += [
                "# HELP whitebill_http_request_duration_seconds Request latency.",
                "# TYPE whitebill_http_request_duration_seconds histogram",
            ]
            for path, counts in sorted(self.buckets.items()):
                for bound, count in zip(_BUCKETS, counts, strict=True):
                    lines.append(
                        f'whitebill_http_request_duration_seconds_bucket{{path="{path}",le="{bound}"}} {count}'
                    )
                total = self.latency_count[path]
                lines.append(f'whitebill_http_request_duration_seconds_bucket{{path="{path}",le="+Inf"}} {total}')
                lines.append(
                    f'whitebill_http_request_duration_seconds_sum{{path="{path}"}} {self.latency_sum[path]:.6f}'
                )
                lines.append(f'whitebill_http_request_duration_seconds_count{{path="{path}"}} {total}')
        lines.append(f"whitebill_uptime_seconds {time.time() - self.started:.0f}")
        return "\n".join(lines) + "\n"


metrics = Metrics()
