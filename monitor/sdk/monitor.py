"""The public ``Monitor``: log predictions and labels from the inference loop, cheaply."""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monitor.sdk.counters import Counters
from monitor.sdk.deadletter import DEAD_LETTER_DIR, DeadLetter
from monitor.sdk.errors import report_internal_error
from monitor.sdk.options import MonitorOptions, check_identity
from monitor.sdk.records import (
    TS_DECIMALS,
    InvalidValue,
    build_label,
    build_record,
    check_id,
    finite_number,
    heartbeat_runtime,
    new_id,
    now_ms,
)
from monitor.sdk.sampling import is_sampled
from monitor.sdk.sender import Sender
from monitor.sdk.spool import Spool, SpoolLocked, open_disk_spool, open_memory_spool
from monitor.sdk.transport import Backoff, Transport
from monitor.sdk.worker import KINDS, FlushRequest, Heartbeater, WarnOnce, Writer
from monitor.wire import MAX_ID_CHARS

logger = logging.getLogger(__name__)

#: Sub-directories of a spool directory that forked children spool in: ``fork-<pid>``.
FORK_DIR_PREFIX = "fork-"

_live: weakref.WeakSet[Monitor] = weakref.WeakSet()


def _close_all_at_exit() -> None:
    for mon in list(_live):
        mon.close(timeout=mon.atexit_timeout)


def _after_fork_in_child() -> None:
    # Runs in the child right after os.fork(), before any of its Python code: only the forking
    # thread exists there, so no lock is contended, but any lock may have been copied held.
    for mon in list(_live):
        try:
            mon._reset_after_fork()
        except Exception as exc:
            with contextlib.suppress(Exception):
                report_internal_error(exc, "after fork")


atexit.register(_close_all_at_exit)
if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_after_fork_in_child)


def default_spool_dir(model: str) -> Path:
    """``$XDG_CACHE_HOME/edge-monitor/spool/<model>`` (``~/.cache`` when XDG is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", model) or "_"
    if safe in (".", ".."):
        safe = "_" + safe
    return Path(base) / "edge-monitor" / "spool" / safe


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
        options: a ``MonitorOptions`` (defaults when not given).
        **kwargs: any ``MonitorOptions`` field (``sample_rate``, ``spool_dir``, ``batch_size``,
            ``flush_interval``, ``spool_flush_interval``, ``queue_size``, ``spool_max_bytes``,
            ``spool_max_age``, ``timeout``, ``max_backoff``, ``backoff_base``,
            ``auth_max_backoff``, ``dead_letter_max_bytes``, ``heartbeat_interval``,
            ``gzip_level``, ``telemetry``, ``atexit_timeout``, ``ssl_context``), documented
            there; given beside ``options``, it overrides it.

    Fork safety: after ``os.fork()`` the child's copy of a Monitor drops everything it shares
    with the parent (threads, locks, the HTTP connections, the spool's descriptors, records
    still queued in memory: those are the parent's to send) and starts afresh on first use:
    the writer, sender and heartbeat threads start when the child first calls ``log()``,
    ``log_label()``, ``flush()`` or ``heartbeat()``. Counters start from zero in the child. A
    spool directory belongs to one process (its ``flock``), so the child spools in a
    sub-directory ``<spool_dir>/fork-<pid>``, or takes over an existing ``fork-*`` one that no
    live process holds: the unsent records of an earlier child that exited are then sent by
    a later one (under the later one's model version, as after a restart). Each child's spool
    has its own ``spool_max_bytes`` cap. A child that ends with ``os._exit()`` (as
    ``multiprocessing`` children do) skips the interpreter-exit flush: call ``close()`` first.

    Delivery semantics (details in ``monitor.sdk.sender``): records and labels are sent by
    a thread each, heartbeats by a third, so none ever waits for another. Responses with 2xx
    count ``accepted + duplicate`` as delivered and each entry of ``rejected`` as dropped
    ``rejected`` (never retried). Connection errors, timeouts and 408/429/502/503/504 are
    retried with backoff (``Retry-After`` honoured) for as long as the spool's caps allow;
    so are 401/403 (a token being rotated), with a backoff up to ``auth_max_backoff``.
    Other 5xx are retried too; a batch that keeps getting them is split to find the record
    the collector fails on, and a record that alone keeps failing while other batches go
    through is dropped as ``poisoned`` and kept in ``<spool_dir>/dead-letter/``. 413 splits
    the batch in halves; a single record still refused is dropped ``too_large``. Other 4xx
    drop the batch as ``rejected`` with one warning per error code. Failing sends are logged
    at WARNING when they start and at most once a minute while they go on, and at INFO when
    they work again.

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
    labels have their own (``label_stats()``). Besides what happened to each record they
    count ``retries`` (failed attempts to send a batch, made again) and ``auth_failures``
    (those answered 401/403). Records replayed from a previous run's spool
    count as delivered here without having been logged here.
    """

    def __init__(
        self,
        url: str,
        token: str,
        model: str,
        model_version: str,
        *,
        options: MonitorOptions | None = None,
        **kwargs: Any,
    ) -> None:
        # Plainly invalid arguments are programming errors: say so now, not in a log later.
        check_identity(token, model, model_version)
        if options is None:
            options = MonitorOptions(**kwargs)
        elif not isinstance(options, MonitorOptions):
            raise ValueError(f"options must be a MonitorOptions, got {options!r}")
        elif kwargs:
            options = dataclasses.replace(options, **kwargs)
        self.options = options
        self.url = url
        self._token = token
        self.model = model
        self.model_version = model_version
        self.sample_rate = options.sample_rate
        self.atexit_timeout = options.atexit_timeout
        self._telemetry = options.telemetry
        self._queue_size = options.queue_size
        # Wake the writer early once a batch is waiting, not only on its timer.
        self._wake_at = max(1, min(options.batch_size, options.queue_size // 2))
        spool_dir = options.spool_dir
        if spool_dir is False or spool_dir == "":
            self._spool_path: Path | None = None
        elif spool_dir is None:
            self._spool_path = default_spool_dir(model)
        else:
            self._spool_path = Path(spool_dir)
        self._forked = False  # True in a child process: spool in a fork-* sub-directory
        self._closed = False
        self._close_lock = threading.Lock()
        self._build()
        self._start()
        _live.add(self)

    def _build(self) -> None:
        """Make the queues, counters and (unstarted) threads; no I/O happens here."""
        opts = self.options
        self._records = Counters()
        self._labels = Counters()
        self._counters = {"records": self._records, "labels": self._labels}
        self._record_q: collections.deque[dict[str, Any]] = collections.deque()
        self._label_q: collections.deque[dict[str, Any]] = collections.deque()
        self._stop = threading.Event()
        self._warn_once = WarnOnce()
        self._started = False
        self._start_lock = threading.Lock()
        self._writer = Writer(
            open_spool=self._open_spool,
            queues={"records": self._record_q, "labels": self._label_q},
            counters=self._counters,
            period=opts.spool_flush_interval / 2,
            stop=self._stop,
            on_written=self._on_written,
        )
        self._senders: dict[str, Sender] = {}
        self._heartbeater: Heartbeater | None = None
        self._transports: list[Transport] = []
        self._dead_letter = DeadLetter(None, 0)  # replaced once the spool is open
        # What flush() has already reported as lost, per stream (see flush()).
        self._lost_reported = dict.fromkeys(KINDS, 0)
        self._lost_lock = threading.Lock()
        try:
            # One connection per stream and one for heartbeats: a request hanging or being
            # retried on one never delays the others.
            records_tp, labels_tp, beat_tp = (
                Transport(
                    self.url,
                    self._token,
                    timeout=opts.timeout,
                    gzip_level=opts.gzip_level,
                    ssl_context=opts.ssl_context,
                )
                for _ in range(3)
            )
        except ValueError as exc:
            logger.error("edge-monitor: %s; records are spooled but not sent", exc)
            return
        self._transports = [records_tp, labels_tp, beat_tp]
        for kind, transport in (("records", records_tp), ("labels", labels_tp)):
            self._senders[kind] = Sender(
                kind=kind,
                transport=transport,
                ready=self._writer.ready,
                get_spool=lambda: self._writer.spool,
                get_dead_letter=lambda: self._dead_letter,
                counters=self._counters[kind],
                error_counters=self._records,
                model=self.model,
                model_version=self.model_version,
                batch_size=opts.batch_size,
                flush_interval=opts.flush_interval,
                backoff=Backoff(base=opts.backoff_base, cap=opts.max_backoff),
                auth_backoff=Backoff(base=opts.backoff_base, cap=opts.auth_max_backoff),
                stop=self._stop,
                warn_once=self._warn_once,
                new_id=new_id,
            )
        self._heartbeater = Heartbeater(
            transport=beat_tp,
            body=self._heartbeat_body,
            interval=opts.heartbeat_interval,
            stop=self._stop,
            counters=self._records,
        )

    def _workers(self) -> list[Sender | Heartbeater]:
        """The threads that talk to the collector (none when the URL is unusable)."""
        workers: list[Sender | Heartbeater] = list(self._senders.values())
        if self._heartbeater is not None:
            workers.append(self._heartbeater)
        return workers

    def _start(self) -> None:
        """Start the background threads, once (in a forked child: on first use)."""
        with self._start_lock:
            if self._started or self._closed:
                return
            self._started = True
            self._writer.start()
            for worker in self._workers():
                worker.start()

    def _reset_after_fork(self) -> None:
        """In a forked child: let go of the parent's threads, locks, sockets and spool."""
        self._close_lock = threading.Lock()
        if self._closed:
            return
        # Close this process's copies of the parent's descriptors without a word on disk: no
        # fsync, no ack file, no unlock. (Transports drop their connections by themselves,
        # in transport.py's own fork hook, without shutting down the shared sockets.)
        spool = self._writer.spool
        if spool is not None:
            spool.forget_after_fork()
        self._forked = True
        self._build()  # fresh queues and counters: what is queued now is the parent's

    # -- the hot path ------------------------------------------------------------------------

    def log(
        self,
        features: Mapping[str, Any],
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
        if not self._started:  # only in a forked child, until its first call
            self._start()
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
        spool = self._open_any_spool()
        if spool.path is not None:
            self._dead_letter = DeadLetter(
                spool.path / DEAD_LETTER_DIR, self.options.dead_letter_max_bytes
            )
        return spool

    def _open_any_spool(self) -> Spool:
        opts = self.options
        path = self._spool_path
        if path is not None:
            for directory in self._spool_candidates(path):
                try:
                    return open_disk_spool(directory, opts.spool_max_bytes, opts.spool_max_age)
                except SpoolLocked as exc:
                    if directory == path:
                        logger.error("edge-monitor: %s; this Monitor runs memory-only", exc)
                        break
                except OSError as exc:
                    logger.error(
                        "edge-monitor: cannot open spool %s (%s); this Monitor runs memory-only",
                        directory,
                        exc,
                    )
                    break
        return open_memory_spool(opts.spool_max_bytes, opts.spool_max_age)

    def _spool_candidates(self, path: Path) -> list[Path]:
        """The spool directory to try, in order: the configured one, or in a forked child a
        free ``fork-*`` sub-directory (an exited child's leftovers are sent) then its own."""
        if not self._forked:
            return [path]
        try:
            taken = sorted(
                p for p in path.iterdir() if p.name.startswith(FORK_DIR_PREFIX) and p.is_dir()
            )
        except OSError:  # not created yet, or unreadable: the own directory is made below
            taken = []
        own = path / f"{FORK_DIR_PREFIX}{os.getpid()}"
        return [p for p in taken if p != own] + [own]

    def _on_written(self) -> None:
        for sender in self._senders.values():
            sender.wake.set()

    def _heartbeat_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ts": time.time(),
            "model": self.model,
            "model_version": self.model_version,
            "sdk": self.stats(),
        }
        if self._telemetry is not None:
            try:
                # Fitted to the wire's bounds (long strings cut, non-finite numbers null):
                # telemetry the collector would refuse must not cost the whole heartbeat.
                runtime = heartbeat_runtime(self._telemetry())
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
                "retries": snap["retries"],
                "auth_failures": snap["auth_failures"],
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
        try:
            if not self._started:
                self._start()
            if self._heartbeater is not None:
                self._heartbeater.wake.set()
        except Exception as exc:
            self._internal_error(exc, "heartbeat")

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything logged before this call is delivered or finally dropped.

        Returns True only if all of it was delivered: False if ``timeout`` seconds passed
        first (the rest stays queued or spooled and is still sent later), and False if any
        record or label given to ``log()``/``log_label()`` was dropped since the previous
        flush() returned (or since start), for any reason but sampling: ``queue_full`` or
        ``invalid`` (decided inside ``log()``), ``spool_overflow``, ``expired`` (it waited in
        the spool longer than ``spool_max_age``), ``too_large``, ``rejected`` or ``poisoned``
        (``stats()``/``label_stats()`` count each under its reason). ``sampled_out`` is the
        sampling asked for, not a loss. A drop of something logged concurrently with the flush
        also makes it return False. A record's ``ts`` never drops it: one from a clock that
        was never set (1970) is delivered, and the collector stores it at its arrival.
        """
        try:
            if not self._started:
                self._start()
            return self._flush(time.monotonic() + max(0.0, float(timeout)))
        except Exception as exc:
            self._internal_error(exc, "flush")
            return False

    def _flush(self, deadline: float) -> bool:
        with self._lost_lock:
            reported = dict(self._lost_reported)
        if not self._wait_flushed(deadline):
            return False
        lost = {kind: self._counters[kind].lost() for kind in KINDS}
        with self._lost_lock:
            for kind in KINDS:
                self._lost_reported[kind] = max(self._lost_reported[kind], lost[kind])
        return lost == reported

    def _wait_flushed(self, deadline: float) -> bool:
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
        senders = self._senders
        if not senders or not all(s.thread.is_alive() for s in senders.values()):
            # Nothing will send (unusable URL, or closed): only an empty spool is flushed.
            return all(spool.stream(k).reached(t) for k, t in req.targets.items())
        for kind, target in req.targets.items():
            senders[kind].request_flush(target)
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
            for worker in self._workers():
                worker.wake.set()
            # A request in flight would otherwise hold the sender for up to ``timeout``;
            # the batch stays in the spool and is sent again on the next start.
            for transport in self._transports:
                transport.abort()
            threads = [self._writer.thread]
            threads += [worker.thread for worker in self._workers()]
            for thread in threads:
                if thread.is_alive():
                    thread.join(max(0.0, deadline - time.monotonic()))
            if all(not t.is_alive() for t in threads):
                spool = self._writer.spool
                if spool is not None:
                    spool.close()
            elif budget > 0:
                # With no time given (close(0), atexit_timeout=0) the caller chose not to wait:
                # busy threads are expected then, and unsent data stays in the spool.
                logger.warning("edge-monitor: close() deadline passed with threads still busy")
            _live.discard(self)
        except Exception as exc:
            self._internal_error(exc, "close")

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
