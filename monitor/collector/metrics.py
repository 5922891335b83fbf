"""Process-local counters and a latency histogram, rendered as Prometheus text."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Status counted for a request whose client went away before its answer (nginx's 499); it is
#: never sent.
CLIENT_CLOSED = 499
#: Route label of requests refused before their headers were complete (408, 431).
HEADERS_ROUTE = "(headers)"


class Metrics:
    """Counts of records by outcome, requests by route and status, batch latency, and gauges
    read when rendered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        self._records: Counter[tuple[str, str]] = Counter()
        self._requests: Counter[tuple[str, int]] = Counter()
        self._latency_buckets = [0] * (len(_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._latency_count = 0

    def records(self, outcome: str, count: int, reason: str = "") -> None:
        """Count records accepted, duplicate, or rejected (with the rejection code)."""
        if count:
            with self._lock:
                self._records[(outcome, reason)] += count

    def request(self, route: str, status: int) -> None:
        with self._lock:
            self._requests[(route, status)] += 1

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Render ``name`` as a gauge whose value ``read`` gives at each scrape."""
        self._gauges[name] = (help_text, read)

    def batch_latency(self, seconds: float) -> None:
        """Time from a records request arriving to its answer, after commit."""
        with self._lock:
            self._latency_buckets[bisect_left(_BUCKETS, seconds)] += 1
            self._latency_sum += seconds
            self._latency_count += 1

    def render(self) -> str:
        """The Prometheus text exposition of everything counted so far."""
        lines = [
            "# HELP edge_monitor_records_total Records received, by outcome and reason.",
            "# TYPE edge_monitor_records_total counter",
        ]
        with self._lock:
            for (outcome, reason), n in sorted(self._records.items()):
                lines.append(
                    f'edge_monitor_records_total{{outcome="{outcome}",reason="{reason}"}} {n}'
                )
            lines += [
                "# HELP edge_monitor_requests_total HTTP requests, by route and status "
                f"({CLIENT_CLOSED}: the client went away first; route {HEADERS_ROUTE}: refused "
                "before its headers were complete).",
                "# TYPE edge_monitor_requests_total counter",
            ]
            for (route, status), n in sorted(self._requests.items()):
                lines.append(
                    f'edge_monitor_requests_total{{route="{route}",status="{status}"}} {n}'
                )
            lines += [
                "# HELP edge_monitor_batch_seconds Records batch latency, arrival to answer.",
                "# TYPE edge_monitor_batch_seconds histogram",
            ]
            cumulative = 0
            for bound, n in zip((*_BUCKETS, "+Inf"), self._latency_buckets, strict=True):
                cumulative += n
                lines.append(f'edge_monitor_batch_seconds_bucket{{le="{bound}"}} {cumulative}')
            lines.append(f"edge_monitor_batch_seconds_sum {self._latency_sum}")
            lines.append(f"edge_monitor_batch_seconds_count {self._latency_count}")
        for name, (help_text, read) in sorted(self._gauges.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read()}"]
        return "\n".join(lines) + "\n"


class RequestMetrics:
    """Counts every request by route template and status (pure ASGI: no body buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", "unmatched")
            scope["app"].state.collector.metrics.request(path, status)
