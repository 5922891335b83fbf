"""``MonitorOptions``: every tunable of a ``Monitor`` in one frozen, validated object."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal

from monitor.wire import MAX_ID_CHARS, MAX_RECORDS_PER_BATCH, name_ok

MiB = 1024 * 1024
DAY = 24 * 3600.0


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def _positive(name: str, value: object, *, finite: bool = True) -> float:
    number = _number(name, value)
    if not number > 0 or (finite and not math.isfinite(number)):
        kind = "positive finite" if finite else "positive"
        raise ValueError(f"{name} must be a {kind} number, got {value!r}")
    return number


def _int_in(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an int in {bounds}, got {value!r}")
    return value


def check_identity(token: object, model: object, model_version: object) -> None:
    """ValueError unless ``token``, ``model`` and ``model_version`` are usable."""
    for name, value in (("model", model), ("model_version", model_version)):
        if not name_ok(value):
            raise ValueError(
                f"{name} must be a str of 1..{MAX_ID_CHARS} characters, without NUL or surrogates"
            )
    if not isinstance(token, str) or any(c in token for c in "\r\n\x00"):
        raise ValueError("token must be a str without line breaks")


@dataclass(frozen=True, kw_only=True)
class MonitorOptions:
    """How a ``Monitor`` samples, spools, batches and sends; validated when made.

    ``Monitor(url, token, model, model_version, **options)`` builds one from its keyword
    arguments; ``Monitor(..., options=MonitorOptions(...))`` takes a ready one (keywords given
    beside it override its fields). An invalid value raises ValueError naming the option.
    Numbers are stored as ``float`` where the field is a float.

    Attributes:
        sample_rate: share of requests kept, in [0, 1]. The decision is a hash of the request
            id, so ``log_label`` makes the same decision and a label follows its record.
        spool_dir: where unsent data waits. ``None`` (default): ``~/.cache/edge-monitor/spool/
            <model>`` (``$XDG_CACHE_HOME`` respected). ``False`` or ``""``: memory only, no
            durability (tests, diskless nodes). If the directory is already used by another
            Monitor (an exclusive ``flock`` on ``<spool_dir>/lock``) or cannot be created,
            an error is logged and this Monitor runs memory-only. A forked child process
            spools in a sub-directory of it (see ``Monitor``).
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
        spool_max_age: seconds; records that have waited in the spool longer (since they
            were spooled, whatever their ``ts``) are dropped as ``expired`` when the sender
            reaches them instead of being sent (``math.inf``: never).
        timeout: seconds for one HTTP request (connect, send, answer).
        max_backoff: cap, in seconds, on the exponential backoff between retries.
        backoff_base: first backoff ceiling in seconds; retry ``n`` sleeps
            ``uniform(0, min(max_backoff, backoff_base * 2**n))`` (full jitter), and at least
            as long as a ``Retry-After`` header asks (capped at one hour) plus up to 20% of it.
        auth_max_backoff: cap, in seconds, on the backoff while the collector refuses the
            token (401/403): the batch is kept and retried, e.g. through a token rotation,
            until the spool's caps drop it; default 5 minutes.
        dead_letter_max_bytes: bytes kept of records the collector kept failing on (dropped
            as ``poisoned``) in ``<spool_dir>/dead-letter/`` (two files of half this each,
            newest kept; see ``monitor.sdk.deadletter``); 0 keeps none.
        heartbeat_interval: seconds between heartbeats (one is also sent at start); ``None``
            sends them only when ``heartbeat()`` is called.
        gzip_level: 1..9 compresses request bodies (``Content-Encoding: gzip``); 0 sends them
            uncompressed. The default 6 is the lowest level whose bodies stay under 0.15 of
            their JSON size for 500-record batches (P2 in BENCHMARKS.md: 0.149 at ~13 us of
            sender CPU per record); level 1 costs ~1/4 of that CPU for ~40% more bytes, a
            fair trade on a CPU-starved node with a cheap link.
        telemetry: optional callable returning a JSON-able dict sent as the heartbeat's
            ``runtime`` (omitted when not given, or when it raises).
        atexit_timeout: seconds (>= 0) the interpreter-exit hook may spend flushing and closing.
        ssl_context: optional ``ssl.SSLContext`` for ``https`` URLs (default: system CAs);
            it carries every TLS setting (CA file, client certificate, verification).
    """

    sample_rate: float = 1.0
    spool_dir: str | os.PathLike[str] | Literal[False] | None = None
    batch_size: int = 500
    flush_interval: float = 1.0
    spool_flush_interval: float = 0.5
    queue_size: int = 10_000
    spool_max_bytes: int = 256 * MiB
    spool_max_age: float = 7 * DAY
    timeout: float = 10.0
    max_backoff: float = 60.0
    backoff_base: float = 0.5
    auth_max_backoff: float = 300.0
    dead_letter_max_bytes: int = 16 * MiB
    heartbeat_interval: float | None = 30.0
    gzip_level: int = 6
    telemetry: Callable[[], dict[str, Any]] | None = None
    atexit_timeout: float = 2.0
    ssl_context: Any = None

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)  # frozen: normalise once, here

        rate = _number("sample_rate", self.sample_rate)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"sample_rate must be in [0, 1], got {self.sample_rate!r}")
        put("sample_rate", rate)
        spool_dir = self.spool_dir
        if spool_dir is True or not (
            spool_dir is None or spool_dir is False or isinstance(spool_dir, (str, os.PathLike))
        ):
            raise ValueError(f"spool_dir must be a path, None or False, got {spool_dir!r}")
        _int_in("batch_size", self.batch_size, 1, MAX_RECORDS_PER_BATCH)
        _int_in("queue_size", self.queue_size, 1)
        _int_in("spool_max_bytes", self.spool_max_bytes, 1)
        _int_in("gzip_level", self.gzip_level, 0, 9)
        _int_in("dead_letter_max_bytes", self.dead_letter_max_bytes, 0)
        for name in ("flush_interval", "spool_flush_interval", "timeout"):
            put(name, _positive(name, getattr(self, name)))
        for name in ("max_backoff", "backoff_base", "auth_max_backoff"):
            put(name, _positive(name, getattr(self, name)))
        put("spool_max_age", _positive("spool_max_age", self.spool_max_age, finite=False))
        if self.heartbeat_interval is not None:
            put("heartbeat_interval", _positive("heartbeat_interval", self.heartbeat_interval))
        atexit_timeout = _number("atexit_timeout", self.atexit_timeout)
        if not 0.0 <= atexit_timeout < math.inf:
            raise ValueError(
                f"atexit_timeout must be a finite number >= 0, got {self.atexit_timeout!r}"
            )
        put("atexit_timeout", atexit_timeout)
        if self.telemetry is not None and not callable(self.telemetry):
            raise ValueError("telemetry must be callable or None")
        # Duck-typed so that the SDK does not import ssl unless a URL needs TLS.
        if self.ssl_context is not None and not hasattr(self.ssl_context, "wrap_socket"):
            raise ValueError(f"ssl_context must be an ssl.SSLContext, got {self.ssl_context!r}")


#: The option names, as ``Monitor`` accepts them as keyword arguments.
OPTION_NAMES = frozenset(f.name for f in fields(MonitorOptions))
