"""The public ``Monitor``: log predictions and labels from the inference loop, cheaply."""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from monitor.sdk.counters import Counters
from monitor.sdk.errors import report_internal_error
from monitor.sdk.records import (
    TS_DECIMALS,
    InvalidValue,
    build_label,
    build_record,
    check_id,
    finite_number,
    new_id,
    now_ms,
)
from monitor.sdk.sampling import is_sampled
from monitor.sdk.spool import Spool, SpoolLocked, open_disk_spool, open_memory_spool
from monitor.sdk.transport import Backoff, Transport
from monitor.sdk.worker import FlushRequest, Heartbeater, Sender, WarnOnce, Writer
from monitor.wire import MAX_ID_CHARS, MAX_RECORDS_PER_BATCH

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
DAY = 24 * 3600.0

_live: weakref.WeakSet[Monitor] = weakref.WeakSet()


def _close_all_at_exit() -> None:
    for mon in list(_live):
        mon.close(timeout=mon.atexit_timeout)


atexit.register(_close_all_at_exit)


def default_spool_dir(model: str) -> Path:
    """``$XDG_CACHE_HOME/edge-monitor/spool/<model>`` (``~/.cache`` when XDG is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", model) or "_"
    if safe in (".", ".."):
        safe = "_" + safe
    return Path(base) / "edge-monitor" / "spool" / safe


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


class Monitor:
    """Ships predictions (and, later, their labels) from an edge node to the collector.

    ``log()`` and ``log_label()`` only sample, validate and queue; background threads write
    the queue to a bounded on-disk spool, batch, gzip and POST it (see ``monitor.wire``), and
    retry with backoff while the collector is unreachable. Nothing here ever raises into the
    host application, except the constructor for plainly invalid arguments (ValueError).

    Args:
        url: the collector's base URL, e.g. ``https://collector.example:8000`` (a path prefix
            is kept). An unusable URL is logged as an error, not raised: records are then only
            spooled, for a later start with a correct URL to send.
        token: this node's token (``emn_...``), sent as ``Authorization: Bearer``; a non-str
            or one with line breaks is a ValueError.
        model: model name; also names the default spool directory.
        model_version: the version that made the predictions.
        sample_rate: share of requests kept, in [0, 1]. The decision is a hash of the request
            id, so ``log_label`` makes the same decision and a label follows its record.
        spool_dir: where unsent data waits. ``None`` (default): ``~/.cache/edge-monitor/spool/
            <model>`` (``$XDG_CACHE_HOME`` respected). ``False`` or ``""``: memory only, no
            durability (tests, diskless nodes). If the directory is already used by another
            Monitor (an exclusive ``flock`` on ``<spool_dir>/lock``) or cannot be created,
            an error is logged and this Monitor runs memory-only.
        batch_size: most records (or labels) per request, 1..``wire.MAX_RECORDS_PER_BATCH``.
        flush_interval: seconds a partial batch may wait, after reaching the spool, for more
            records before it is sent anyway.
        spool_flush_interval: the durability window, in seconds. The writer thread wakes every
            ``spool_flush_interval / 2`` (sooner when a batch is queued), appends the queue to
            the spool and fsyncs, so a record whose ``log()`` returned more than this long ago
            is on disk (surviving SIGKILL, and power loss once fsynced), provided one
            drain-and-fsync takes under a quarter of the interval (a stalled disk stretches it).
        queue_size: bound of the in-memory queues (one for records, one for labels) between
            ``log()`` and the writer; a full queue drops the newest record as ``queue_full``.
        spool_max_bytes: cap on unacknowledged bytes in the spool (records and labels
            together). When an append would exceed it, the *newest* record is dropped as
            ``spool_overflow``, so acknowledged positions stay valid and the count is exact.
        spool_max_age: seconds; older records (by their ``ts``) are dropped as ``expired``
            when the sender reaches them instead of being sent.
        timeout: seconds for one HTTP request (connect, send, answer).
        max_backoff: cap, in seconds, on the exponential backoff between retries.
        backoff_base: first backoff ceiling in seconds; retry ``n`` sleeps
            ``uniform(0, min(max_backoff, backoff_base * 2**n))`` (full jitter), and at least
            as long as a ``Retry-After`` header asks (capped at one hour).
        heartbeat_interval: seconds between heartbeats (one is also sent at start); ``None``
            sends them only when ``heartbeat()`` is called.
        gzip_level: 1..9 compresses request bodies (``Content-Encoding: gzip``); 0 sends them
            uncompressed. The default 6 is the lowest level whose bodies stay under 0.15 of
            their JSON size for 500-record batches (P2 in BENCHMARKS.md: 0.149 at ~13 us of
            sender CPU per record); level 1 costs ~1/4 of that CPU for ~40% more bytes, a
            fair trade on a CPU-starved node with a cheap link.
        telemetry: optional callable returning a JSON-able dict sent as the heartbeat's
            ``runtime`` (omitted when not given, or when it raises).
        atexit_timeout: seconds the interpreter-exit hook may spend flushing and closing.
        ssl_context: optional ``ssl.SSLContext`` for ``https`` URLs (default: system CAs).

    Delivery semantics: responses with 2xx count ``accepted + duplicate`` as delivered and
    each entry of ``rejected`` as dropped ``rejected`` (never retried). 408/429/502/503/504,
    any other 5xx, connection errors and timeouts are retried (other 5xx too, because a
    collector bug or deploy is transient for the node; the spool's caps bound the wait).
    413 splits the batch in halves; a single record still refused is dropped ``too_large``.
    Other 4xx drop the batch as ``rejected`` with one warning per error code.

    Precision: what the SDK measures or is handed as metadata is rounded before it is queued:
    ``ts`` (of records and labels) to milliseconds (3 decimals), ``latency_ms`` to 3 decimals,
    probabilities to 6 decimals. Monitoring needs no more (windows are minutes, drift tests
    bin probabilities far coarser), and every further digit of a float is incompressible on
    the wire. Features are never rounded: they are the user's data and go as given.

    Ids: every record gets a UUIDv7 (32 hex digits, millisecond timestamp first, then random
    bits), so the collector's indexes grow in time order. A record logged without a
    ``request_id`` uses its record id as its request id and sends it once (the collector
    takes a missing ``request_id`` to be the record id).

    Counters (``stats()``) are totals since this process started and count records only;
    labels have their own (``label_stats()``). Records replayed from a previous run's spool
    count as delivered here without having been logged here.
    """

    def __init__(
        self,
        url: str,
        token: str,
        model: str,
        model_version: str,
        *,
        sample_rate: float = 1.0,
        spool_dir: str | os.PathLike[str] | Literal[False] | None = None,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        spool_flush_interval: float = 0.5,
        queue_size: int = 10_000,
        spool_max_bytes: int = 256 * MiB,
        spool_max_age: float = 7 * DAY,
        timeout: float = 10.0,
        max_backoff: float = 60.0,
        backoff_base: float = 0.5,
        heartbeat_interval: float | None = 30.0,
        gzip_level: int = 6,
        telemetry: Callable[[], dict[str, Any]] | None = None,
        atexit_timeout: float = 2.0,
        ssl_context: Any = None,
    ) -> None:
        # Plainly invalid arguments are programming errors: say so now, not in a log later.
        for name, value in (("model", model), ("model_version", model_version)):
            if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
                raise ValueError(f"{name} must be a str of 1..{MAX_ID_CHARS} characters")
        if (
            isinstance(sample_rate, bool)
            or not isinstance(sample_rate, (int, float))
            or not 0.0 <= sample_rate <= 1.0
        ):
            raise ValueError(f"sample_rate must be in [0, 1], got {sample_rate!r}")
        if not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_RECORDS_PER_BATCH:
            raise ValueError(f"batch_size must be an int in 1..{MAX_RECORDS_PER_BATCH}")
        if not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError("queue_size must be a positive int")
        if not isinstance(spool_max_bytes, int) or spool_max_bytes < 1:
            raise ValueError("spool_max_bytes must be a positive int")
        if not isinstance(gzip_level, int) or not 0 <= gzip_level <= 9:
            raise ValueError("gzip_level must be an int in 0..9")
        if not isinstance(token, str) or any(c in token for c in "\r\n\x00"):
            raise ValueError("token must be a str without line breaks")
        if telemetry is not None and not callable(telemetry):
            raise ValueError("telemetry must be callable")
        flush_interval = _positive("flush_interval", flush_interval)
        spool_flush_interval = _positive("spool_flush_interval", spool_flush_interval)
        spool_max_age = _positive("spool_max_age", spool_max_age)
        timeout = _positive("timeout", timeout)
        max_backoff = _positive("max_backoff", max_backoff)
        backoff_base = _positive("backoff_base", backoff_base)
        if heartbeat_interval is not None:
            heartbeat_interval = _positive("heartbeat_interval", heartbeat_interval)
        self.atexit_timeout = max(0.0, float(atexit_timeout))

        self.model = model
        self.model_version = model_version
        self.sample_rate = float(sample_rate)
        self._telemetry = telemetry
        self._records = Counters()
        self._labels = Counters()
        self._counters = {"records": self._records, "labels": self._labels}
        self._queue_size = queue_size
        self._record_q: collections.deque[dict[str, Any]] = collections.deque()
        self._label_q: collections.deque[dict[str, Any]] = collections.deque()
        # Wake the writer early once a batch is waiting, not only on its timer.
        self._wake_at = max(1, min(batch_size, queue_size // 2))
        self._closed = False
        self._close_lock = threading.Lock()
        self._stop = threading.Event()
        self._warn_once = WarnOnce()

        if spool_dir is False or spool_dir == "":
            self._spool_path: Path | None = None
        elif spool_dir is None:
            self._spool_path = default_spool_dir(model)
        else:
            self._spool_path = Path(spool_dir)
        self._spool_max_bytes = spool_max_bytes
        self._spool_max_age = spool_max_age

        self._writer = Writer(
            open_spool=self._open_spool,
            queues={"records": self._record_q, "labels": self._label_q},
            counters=self._counters,
            period=spool_flush_interval / 2,
            stop=self._stop,
            on_written=self._on_written,
        )
        self._sender: Sender | None = None
        self._heartbeater: Heartbeater | None = None
        self._transports: list[Transport] = []
        try:
            send_tp = Transport(
                url, token, timeout=timeout, gzip_level=gzip_level, ssl_context=ssl_context
            )
            beat_tp = Transport(
                url, token, timeout=timeout, gzip_level=gzip_level, ssl_context=ssl_context
            )
        except ValueError as exc:
            logger.error("edge-monitor: %s; records are spooled but not sent", exc)
        else:
            self._transports = [send_tp, beat_tp]
            self._sender = Sender(
                transport=send_tp,
                ready=self._writer.ready,
                get_spool=lambda: self._writer.spool,
                counters=self._counters,
                model=model,
                model_version=model_version,
                batch_size=batch_size,
                flush_interval=flush_interval,
                backoff=Backoff(base=backoff_base, cap=max_backoff),
                stop=self._stop,
                warn_once=self._warn_once,
                new_id=new_id,
            )
            self._heartbeater = Heartbeater(
                transport=beat_tp,
                body=self._heartbeat_body,
                interval=heartbeat_interval,
                stop=self._stop,
                warn_once=self._warn_once,
                counters=self._records,
            )
        self._writer.start()
        if self._sender is not None:
            self._sender.start()
        if self._heartbeater is not None:
            self._heartbeater.start()
        _live.add(self)

    # -- the hot path ------------------------------------------------------------------------

    def log(
        self,
        features: dict[str, Any],
        prediction: Any,
        *,
        probabilities: Any = None,
        request_id: str | None = None,
        latency_ms: float | None = None,
        ts: float | None = None,
    ) -> str:
        """Queue one prediction; returns its request id (its new record id if not given).

        Never blocks, never does I/O, never raises. ``features`` maps names to numbers,
        strings, booleans or None (NaN/inf become None); ``prediction`` is a number, string or
        boolean; ``probabilities`` a dict class -> probability, a list, or None; numpy scalars
        and arrays are accepted. Anything else drops the record as ``invalid`` (an invalid
        non-str ``request_id`` returns ``""``). ``ts`` is seconds since the epoch (default now).

        Without a ``request_id`` the record's own id (a UUIDv7 as 32 hex digits) serves as
        one: it is returned, ``log_label`` takes it, and it is not sent twice on the wire.
        """
        counters = self._records
        try:
            ms = now_ms()
            record_id = None
            if request_id is None:
                request_id = record_id = new_id(ms)
            elif type(request_id) is not str:
                try:
                    request_id = check_id(request_id, "request_id")
                except InvalidValue:
                    self._count_invalid(counters)
                    return ""
            elif not request_id or len(request_id) > MAX_ID_CHARS:
                self._count_invalid(counters)
                return request_id
            if self.sample_rate < 1.0 and not is_sampled(request_id, self.sample_rate):
                with counters.lock:
                    counters.logged += 1
                    counters.dropped["sampled_out"] += 1
                return request_id
            try:
                record = build_record(
                    record_id or new_id(ms),
                    request_id,
                    ms / 1000 if ts is None else round(finite_number(ts, "ts"), TS_DECIMALS),
                    features,
                    prediction,
                    probabilities,
                    latency_ms,
                )
            except Exception:
                # InvalidValue, or whatever the caller's objects raise while being read
                # (a Mapping whose items() fails, an item() that raises): the input's fault.
                self._count_invalid(counters)
                return request_id
            self._enqueue(self._record_q, record, counters)
            return request_id
        except Exception as exc:
            self._internal_error(exc, "log")
            return request_id if isinstance(request_id, str) else ""

    def log_label(self, request_id: str, label: Any, *, ts: float | None = None) -> None:
        """Queue the ground truth for ``request_id``; it follows its record's sampling.

        Never blocks or raises; an unusable label or request id is counted ``invalid`` in
        ``label_stats()``.
        """
        counters = self._labels
        try:
            try:
                request_id = check_id(request_id, "request_id")
                if self.sample_rate < 1.0 and not is_sampled(request_id, self.sample_rate):
                    with counters.lock:
                        counters.logged += 1
                        counters.dropped["sampled_out"] += 1
                    return
                when = now_ms() / 1000 if ts is None else finite_number(ts, "ts")
                item = build_label(request_id, label, round(when, TS_DECIMALS))
            except Exception:  # InvalidValue, or the caller's objects raising when read
                self._count_invalid(counters)
                return
            self._enqueue(self._label_q, item, counters)
        except Exception as exc:
            self._internal_error(exc, "log_label")

    def _enqueue(
        self, queue: collections.deque[dict[str, Any]], item: dict[str, Any], counters: Counters
    ) -> None:
        # A deque append is atomic under the GIL; the length check may overshoot the bound by
        # a few items under concurrent producers, which is fine for a memory bound.
        if self._closed or len(queue) >= self._queue_size:
            with counters.lock:
                counters.logged += 1
                counters.dropped["queue_full"] += 1
            return
        queue.append(item)
        with counters.lock:
            counters.logged += 1
            counters.enqueued += 1
        if len(queue) >= self._wake_at:
            wake = self._writer.wake
            if not wake.is_set():
                wake.set()

    @staticmethod
    def _count_invalid(counters: Counters) -> None:
        with counters.lock:
            counters.logged += 1
            counters.dropped["invalid"] += 1

    def _internal_error(self, exc: BaseException, where: str) -> None:
        # The last line of defence for the host application.
        with contextlib.suppress(Exception):
            self._records.add_internal_error()
            report_internal_error(exc, where)

    # -- background plumbing -----------------------------------------------------------------

    def _open_spool(self) -> Spool:
        if self._spool_path is not None:
            try:
                return open_disk_spool(self._spool_path, self._spool_max_bytes, self._spool_max_age)
            except SpoolLocked as exc:
                logger.error("edge-monitor: %s; this Monitor runs memory-only", exc)
            except OSError as exc:
                logger.error(
                    "edge-monitor: cannot open spool %s (%s); this Monitor runs memory-only",
                    self._spool_path,
                    exc,
                )
        return open_memory_spool(self._spool_max_bytes, self._spool_max_age)

    def _on_written(self) -> None:
        if self._sender is not None:
            self._sender.wake.set()

    def _heartbeat_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ts": time.time(),
            "model": self.model,
            "model_version": self.model_version,
            "sdk": self.stats(),
        }
        if self._telemetry is not None:
            try:
                runtime = self._telemetry()
                json.dumps(runtime, allow_nan=False)  # must encode, or the heartbeat fails
            except Exception as exc:
                self._warn_once(
                    ("telemetry", type(exc)),
                    "edge-monitor: telemetry callable failed (%r); heartbeat without runtime",
                    exc,
                )
            else:
                if isinstance(runtime, dict):
                    body["runtime"] = runtime
        return body

    # -- public control ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Record counters in the shape of the heartbeat's ``sdk`` object (see monitor.wire)."""
        try:
            snap = self._records.snapshot()
            spool = self._writer.spool
            stream = spool.records if spool is not None else None
            return {
                "logged": snap["logged"],
                "enqueued": snap["enqueued"],
                "delivered": snap["delivered"],
                "dropped": snap["dropped"],
                "queue_depth": len(self._record_q),
                "spool_records": stream.pending_records if stream is not None else 0,
                "spool_bytes": stream.pending_bytes if stream is not None else 0,
                "internal_errors": snap["internal_errors"],
            }
        except Exception as exc:
            self._internal_error(exc, "stats")
            return {}

    def label_stats(self) -> dict[str, Any]:
        """The same counters for labels (not part of the heartbeat)."""
        try:
            snap = self._labels.snapshot()
            del snap["internal_errors"]
            spool = self._writer.spool
            stream = spool.labels if spool is not None else None
            snap["queue_depth"] = len(self._label_q)
            snap["spool_records"] = stream.pending_records if stream is not None else 0
            snap["spool_bytes"] = stream.pending_bytes if stream is not None else 0
            return snap
        except Exception as exc:
            self._internal_error(exc, "label_stats")
            return {}

    def heartbeat(self) -> None:
        """Send a heartbeat now, in the background."""
        if self._heartbeater is not None:
            self._heartbeater.wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything logged before this call is delivered or finally dropped.

        Returns True if so, False if ``timeout`` seconds passed first (the rest stays queued or
        spooled and is still sent later).
        """
        try:
            return self._flush(time.monotonic() + max(0.0, float(timeout)))
        except Exception as exc:
            self._internal_error(exc, "flush")
            return False

    def _flush(self, deadline: float) -> bool:
        writer = self._writer
        if not writer.thread.is_alive():
            return False
        req = FlushRequest()
        writer.flush_requests.append(req)
        writer.wake.set()
        if not req.written.wait(max(0.0, deadline - time.monotonic())):
            return False
        spool = writer.spool
        if spool is None:
            return False
        if self._sender is not None and self._sender.thread.is_alive():
            self._sender.request_flush(req.targets)
        else:  # nothing will send (unusable URL, or closed): only an empty spool is flushed
            return all(spool.stream(k).reached(t) for k, t in req.targets.items())
        for kind, target in req.targets.items():
            if not spool.stream(kind).wait_acked(target, deadline - time.monotonic()):
                return False
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Flush (within ``timeout``), stop the threads; unsent data stays in the spool.

        Idempotent. After close, ``log()`` counts records as dropped ``queue_full``.
        """
        try:
            deadline = time.monotonic() + max(0.0, float(timeout))
            with self._close_lock:
                if self._closed:
                    return
                self._closed = True
            # Keep part of the budget for stopping the threads and closing the spool.
            budget = max(0.0, float(timeout))
            self._flush(deadline - min(0.25 * budget, 0.5))
            self._stop.set()
            self._writer.wake.set()
            for worker in (self._sender, self._heartbeater):
                if worker is not None:
                    worker.wake.set()
            # A request in flight would otherwise hold the sender for up to ``timeout``;
            # the batch stays in the spool and is sent again on the next start.
            for transport in self._transports:
                transport.abort()
            threads = [self._writer.thread]
            threads += [o.thread for o in (self._sender, self._heartbeater) if o is not None]
            for thread in threads:
                if thread.is_alive():
                    thread.join(max(0.0, deadline - time.monotonic()))
            if all(not t.is_alive() for t in threads):
                spool = self._writer.spool
                if spool is not None:
                    spool.close()
            else:
                logger.warning("edge-monitor: close() deadline passed with threads still busy")
            _live.discard(self)
        except Exception as exc:
            self._internal_error(exc, "close")

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
