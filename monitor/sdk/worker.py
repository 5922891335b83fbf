"""The SDK's background threads: queue -> spool (writer), spool -> collector (sender), heartbeats.

The writer and the sender are separate threads so that a slow or dead network never delays
getting records onto disk: the durability window depends on the writer alone.
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
from monitor.sdk.spool import Chunk, Spool, Stream
from monitor.sdk.transport import (
    TRANSPORT_ERRORS,
    Backoff,
    Outcome,
    Response,
    Transport,
    classify,
    parse_retry_after,
)
from monitor.wire import (
    HEARTBEATS_PATH,
    LABELS_PATH,
    MAX_DECODED_BYTES,
    MAX_WIRE_BYTES,
    RECORDS_PATH,
    labels_body,
    records_body,
)

logger = logging.getLogger(__name__)

KINDS = ("records", "labels")
#: Raw bytes of spooled lines per request, leaving room under MAX_DECODED_BYTES for the
#: envelope and the commas between lines.
MAX_BATCH_BYTES = MAX_DECODED_BYTES - 64 * 1024
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


class _Part:
    """A batch (or half of one) on its way; its body and batch id survive retries."""

    __slots__ = ("body", "checked", "lines")

    def __init__(self, lines: list[bytes], checked: bool = False) -> None:
        self.lines = lines
        self.body: bytes | None = None
        self.checked = checked  # every line known to decode as JSON


def _decodable(lines: list[bytes]) -> list[bytes]:
    """The lines that decode as JSON."""
    good = []
    for line in lines:
        try:
            json.loads(line)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            continue
        good.append(line)
    return good


class Sender:
    """Sends spooled records and labels in batches, one request in flight at a time."""

    def __init__(
        self,
        *,
        transport: Transport,
        ready: threading.Event,
        get_spool: Callable[[], Spool | None],
        counters: dict[str, Counters],
        model: str,
        model_version: str,
        batch_size: int,
        flush_interval: float,
        backoff: Backoff,
        stop: threading.Event,
        warn_once: WarnOnce,
        new_id: Callable[[], str],
    ) -> None:
        self._transport = transport
        self._ready = ready
        self._get_spool = get_spool
        self._counters = counters
        self._model = model
        self._model_version = model_version
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._backoff = backoff
        self._stop = stop
        self._warn_once = warn_once
        self._new_id = new_id
        self.wake = threading.Event()
        self._targets: dict[str, Any] = {}
        self._targets_lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="edge-monitor-sender", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def request_flush(self, targets: dict[str, Any]) -> None:
        """Send partial batches at once until each stream is acknowledged up to its target."""
        with self._targets_lock:
            for kind, target in targets.items():
                old = self._targets.get(kind)
                self._targets[kind] = target if old is None else max(old, target)
        self.wake.set()

    def _urgent(self, kind: str, stream: Stream) -> bool:
        with self._targets_lock:
            target = self._targets.get(kind)
            if target is None:
                return False
            if stream.reached(target):
                del self._targets[kind]
                return False
            return True

    def _run(self) -> None:
        while not self._ready.wait(0.1):
            if self._stop.is_set():
                return
        spool = self._get_spool()
        if spool is None:
            return
        first_seen: dict[str, float | None] = dict.fromkeys(KINDS)
        while not self._stop.is_set():
            self.wake.clear()
            timeout = 1.0
            try:
                # Labels first: they are small, and a label sent early joins sooner.
                for kind in ("labels", "records"):
                    stream = spool.stream(kind)
                    if stream.pending_records == 0:
                        first_seen[kind] = None
                        self._urgent(kind, stream)  # clears a reached target
                        continue
                    now = time.monotonic()
                    seen = first_seen[kind]
                    if seen is None:
                        seen = first_seen[kind] = now
                    if (
                        stream.pending_records >= self._batch_size
                        or self._urgent(kind, stream)
                        or now - seen >= self._flush_interval
                    ):
                        if not self._send_one(kind, stream):
                            return
                        first_seen[kind] = None
                        timeout = 0.0
                    else:
                        timeout = min(timeout, seen + self._flush_interval - now)
            except Exception as exc:
                if self._stop.is_set():
                    return  # close() tore the spool or the connection down under us
                report_internal_error(exc, "sender")
                self._counters["records"].add_internal_error()
                timeout = 1.0
            if timeout > 0:
                self.wake.wait(timeout)

    def _send_one(self, kind: str, stream: Stream) -> bool:
        """Send one chunk of ``stream``; False if stopped before it was done with."""
        chunk: Chunk | None = stream.peek(self._batch_size, MAX_BATCH_BYTES)
        if chunk is None:
            return True
        counters = self._counters[kind]
        counters.drop("expired", chunk.expired)
        counters.drop("too_large", chunk.too_large)
        if chunk.lines and not self._deliver(kind, chunk.lines):
            return False
        stream.ack(chunk)
        return True

    def _body(self, kind: str, lines: list[bytes]) -> bytes:
        if kind == "records":
            skeleton = records_body(self._new_id(), self._model, self._model_version, [])
            payload = splice_body(skeleton, "records", lines)
        else:
            payload = splice_body(labels_body(self._model, []), "labels", lines)
        return self._transport.encode(payload)

    def _deliver(self, kind: str, lines: list[bytes]) -> bool:
        """Deliver ``lines`` (splitting, retrying as answers say); False if stopped first."""
        counters = self._counters[kind]
        path = RECORDS_PATH if kind == "records" else LABELS_PATH
        work: collections.deque[_Part] = collections.deque([_Part(lines)])
        attempt = 0
        while work:
            if self._stop.is_set():
                return False
            part = work[0]
            if part.body is None:
                part.body = self._body(kind, part.lines)
            if len(part.body) > MAX_WIRE_BYTES:  # no point sending what must come back 413
                work.popleft()
                self._split(part, work, counters)
                continue
            try:
                resp = self._transport.post(path, part.body)
            except TRANSPORT_ERRORS as exc:
                if self._stop.is_set():
                    return False
                logger.debug("edge-monitor: POST %s failed: %r", path, exc)
                if self._stop.wait(self._backoff.delay(attempt)):
                    return False
                attempt += 1
                continue
            outcome = classify(resp.status)
            if outcome is Outcome.OK:
                work.popleft()
                attempt = 0
                self._account(kind, part, resp, counters)
            elif outcome is Outcome.SPLIT:
                work.popleft()
                self._split(part, work, counters)
            elif outcome is Outcome.REJECT:
                work.popleft()
                if not part.checked:
                    # The spool judges lines by a cheap scan, so a line damaged on disk in a
                    # way that still looks intact spoils the whole body; find such lines now
                    # (once, and only after a refusal) and send the rest again.
                    good = _decodable(part.lines)
                    if len(good) < len(part.lines):
                        logger.warning(
                            "edge-monitor: skipped %d undecodable spooled %s line(s)",
                            len(part.lines) - len(good),
                            kind,
                        )
                        if good:
                            work.appendleft(_Part(good, checked=True))
                        continue
                counters.drop("rejected", len(part.lines))
                self._warn_once(
                    (path, resp.status, resp.error_code()),
                    "edge-monitor: collector refused %s with %s (%s); dropping the batch",
                    path,
                    resp.status,
                    resp.error_code(),
                )
            else:
                retry_after = parse_retry_after(resp.headers.get("retry-after"))
                logger.debug("edge-monitor: POST %s answered %s; retrying", path, resp.status)
                if self._stop.wait(self._backoff.delay(attempt, retry_after)):
                    return False
                attempt += 1
        return True

    @staticmethod
    def _split(part: _Part, work: collections.deque[_Part], counters: Counters) -> None:
        if len(part.lines) == 1:
            counters.drop("too_large", 1)
            return
        half = len(part.lines) // 2
        # Halves go to the front, first half first, so delivery order is kept.
        work.appendleft(_Part(part.lines[half:], part.checked))
        work.appendleft(_Part(part.lines[:half], part.checked))

    def _account(self, kind: str, part: _Part, resp: Response, counters: Counters) -> None:
        data = resp.json()
        if not isinstance(data, dict):
            self._warn_once(
                ("no-body", kind),
                "edge-monitor: collector answered %s without a JSON body; counting all delivered",
                resp.status,
            )
            counters.add_delivered(len(part.lines))
            return
        rejected = data.get("rejected")
        if not isinstance(rejected, list):
            rejected = []
        n_rejected = len(rejected)
        if "accepted" in data:
            delivered = _int(data.get("accepted")) + _int(data.get("duplicate"))
        else:
            delivered = len(part.lines) - n_rejected
        counters.add_delivered(delivered)
        if n_rejected:
            counters.drop("rejected", n_rejected)
            first = rejected[0] if isinstance(rejected[0], dict) else {}
            self._warn_once(
                ("rejected", kind, first.get("code")),
                "edge-monitor: collector rejected %d %s (first: %s %s)",
                n_rejected,
                kind,
                first.get("code"),
                first.get("field"),
            )


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class Heartbeater:
    """Posts a heartbeat when started, every ``interval`` seconds, and when asked."""

    def __init__(
        self,
        *,
        transport: Transport,
        body: Callable[[], dict[str, Any]],
        interval: float | None,
        stop: threading.Event,
        warn_once: WarnOnce,
        counters: Counters,
    ) -> None:
        self._transport = transport
        self._body = body
        self._interval = interval
        self._stop = stop
        self._warn_once = warn_once
        self._counters = counters
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
        try:
            resp = self._transport.post(HEARTBEATS_PATH, self._transport.encode(payload))
        except TRANSPORT_ERRORS as exc:
            # Best effort: the next heartbeat carries totals anyway, so there is no retry.
            logger.debug("edge-monitor: heartbeat failed: %r", exc)
            return
        if not 200 <= resp.status < 300:
            self._warn_once(
                ("heartbeat", resp.status),
                "edge-monitor: heartbeat answered %s (%s)",
                resp.status,
                resp.error_code(),
            )
