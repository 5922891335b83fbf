"""The SDK's background threads: queue -> spool (writer), heartbeats; and the spool line format.

The writer and the senders (``sender.Sender``, one per stream) are separate threads so that a
slow or dead network never delays getting records onto disk: the durability window depends on
the writer alone. Heartbeats have their own thread and connection too, so they keep flowing
while a stream's batch is being retried.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from monitor.sdk.counters import Counters
from monitor.sdk.errors import report_internal_error
from monitor.sdk.retrylog import RetryLog
from monitor.sdk.spool import Spool, Stream
from monitor.sdk.transport import TRANSPORT_ERRORS, Outcome, Transport, classify
from monitor.wire import HEARTBEATS_PATH

logger = logging.getLogger(__name__)

KINDS = ("records", "labels")
_DRAIN_CHUNK = 1000
_SPLICE = "\x00edge-monitor-lines\x00"

_encode = json.JSONEncoder(
    ensure_ascii=True, allow_nan=False, separators=(",", ":"), check_circular=False
).encode


def encode_line(obj: dict[str, Any]) -> bytes:
    """One spool line: compact ASCII JSON (so any str round-trips) plus a newline."""
    return _encode(obj).encode("ascii") + b"\n"


def splice_body(skeleton: dict[str, Any], key: str, lines: list[bytes]) -> bytes:
    """The JSON of ``skeleton`` with ``skeleton[key]`` replaced by the raw JSON ``lines``.

    Spooled lines are already JSON, so a batch is built by joining bytes instead of decoding
    and re-encoding every record; the skeleton comes from ``monitor.wire``'s body helpers.
    """
    skeleton[key] = [_SPLICE]
    text = _encode(skeleton).encode("ascii")
    marker = _encode([_SPLICE]).encode("ascii")
    head, _, tail = text.partition(marker)
    return head + b"[" + b",".join(lines) + b"]" + tail


class WarnOnce:
    """Log each distinct warning key once per Monitor, so a misconfiguration cannot flood logs."""

    def __init__(self) -> None:
        self._seen: set[Any] = set()
        self._lock = threading.Lock()

    def __call__(self, key: Any, msg: str, *args: Any) -> None:
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
        logger.warning(msg, *args)


@dataclass
class FlushRequest:
    """A flush() waiting for the writer to say how far the spool must be acknowledged."""

    written: threading.Event = field(default_factory=threading.Event)
    targets: dict[str, Any] = field(default_factory=dict)


class Writer:
    """Drains the in-memory queues into the spool and makes them durable.

    It wakes every ``period`` seconds (or sooner when the queue fills or flush() asks), appends
    everything queued to the spool and fsyncs before sleeping again, so a record reaches the
    disk at most ``period`` plus one drain after log() returned.
    """

    def __init__(
        self,
        *,
        open_spool: Callable[[], Spool],
        queues: dict[str, collections.deque[dict[str, Any]]],
        counters: dict[str, Counters],
        period: float,
        stop: threading.Event,
        on_written: Callable[[], None],
    ) -> None:
        self._open_spool = open_spool
        self._queues = queues
        self._counters = counters
        self._period = period
        self._stop = stop
        self._on_written = on_written
        self.wake = threading.Event()
        self.ready = threading.Event()
        self.spool: Spool | None = None
        self.flush_requests: collections.deque[FlushRequest] = collections.deque()
        self.thread = threading.Thread(target=self._run, name="edge-monitor-writer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            self.spool = self._open_spool()
        except BaseException as exc:
            report_internal_error(exc, "writer: opening the spool")
            self._counters["records"].add_internal_error()
            return
        finally:
            self.ready.set()
        while True:
            stopping = self._stop.is_set()
            if not stopping:
                self.wake.wait(self._period)
            self.wake.clear()
            try:
                self._cycle(self.spool)
            except Exception as exc:
                report_internal_error(exc, "writer")
                self._counters["records"].add_internal_error()
                if self._stop.wait(self._period):
                    stopping = True
            if stopping:
                return

    def _cycle(self, spool: Spool) -> None:
        requests: list[FlushRequest] = []
        while self.flush_requests:
            requests.append(self.flush_requests.popleft())
        # Requests are taken before the drain, so everything logged before a flush() call is
        # part of the drain whose end becomes that flush's target.
        written = 0
        for kind in KINDS:
            written += self._drain(kind, spool.stream(kind))
        for kind in KINDS:
            try:
                spool.stream(kind).sync()
            except OSError as exc:
                logger.warning("edge-monitor spool: fsync failed: %s", exc)
        for req in requests:
            req.targets = {kind: spool.stream(kind).tail() for kind in KINDS}
            req.written.set()
        if written or requests:
            self._on_written()

    def _drain(self, kind: str, stream: Stream) -> int:
        queue = self._queues[kind]
        counters = self._counters[kind]
        # Take at most what is queued now: a producer faster than the disk must not keep this
        # loop from reaching the fsync.
        remaining = len(queue)
        accepted = 0
        while remaining > 0:
            lines: list[bytes] = []
            invalid = 0
            for _ in range(min(remaining, _DRAIN_CHUNK)):
                try:
                    item = queue.popleft()
                except IndexError:
                    remaining = 0
                    break
                try:
                    lines.append(encode_line(item))
                except (ValueError, TypeError, RecursionError):
                    invalid += 1  # log() validates, so only exotic values (huge ints) get here
            remaining -= len(lines) + invalid
            counters.drop("invalid", invalid)
            if lines:
                n = stream.append(lines)
                counters.drop("spool_overflow", len(lines) - n)
                accepted += n
        return accepted


class Heartbeater:
    """Posts a heartbeat when started, every ``interval`` seconds, and when asked.

    Best effort: a failed heartbeat is not retried (the next one carries the totals anyway);
    failures are logged by a ``RetryLog`` (a WARNING when they start, then at most one a
    minute, an INFO line when a heartbeat goes through again).
    """

    def __init__(
        self,
        *,
        transport: Transport,
        body: Callable[[], dict[str, Any]],
        interval: float | None,
        stop: threading.Event,
        counters: Counters,
        retry_log: RetryLog | None = None,
    ) -> None:
        self._transport = transport
        self._body = body
        self._interval = interval
        self._stop = stop
        self._counters = counters
        self.retry_log = retry_log or RetryLog("heartbeats")
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="edge-monitor-heartbeat", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        next_due = time.monotonic()
        while not self._stop.is_set():
            if self._interval is None:
                self.wake.wait()
            else:
                self.wake.wait(max(0.0, next_due - time.monotonic()))
            if self._stop.is_set():
                return
            self.wake.clear()
            try:
                self._send()
            except Exception as exc:
                if self._stop.is_set():
                    return
                report_internal_error(exc, "heartbeat")
                self._counters.add_internal_error()
            if self._interval is not None:
                next_due = time.monotonic() + self._interval

    def _send(self) -> None:
        payload = _encode(self._body()).encode("ascii")
        action = "the next heartbeat carries the totals"
        try:
            resp = self._transport.post(HEARTBEATS_PATH, self._transport.encode(payload))
        except TRANSPORT_ERRORS as exc:
            if not self._stop.is_set():
                self.retry_log.failed("unavailable", f"connection failed ({exc!r})", action)
            return
        outcome = classify(resp.status)
        if outcome is Outcome.OK:
            self.retry_log.recovered()
            return
        code = resp.error_code()
        what = f"answered {resp.status}" + (f" ({code})" if code else "")
        if outcome is Outcome.AUTH:
            what += ": the collector refused this node's token"
        self.retry_log.failed(outcome.value, what, action)
