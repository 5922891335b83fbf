"""Spool -> collector: one sender thread per stream, and what each answer does to a batch.

Records and labels each have their own sender thread and connection (heartbeats have theirs,
in ``worker.Heartbeater``), so a stream the collector keeps failing on never holds up the
others: labels and heartbeats flow while a records batch waits, and the other way round.

What an answer does to the batch in flight:

* **2xx**: acknowledged; ``accepted + duplicate`` count as delivered, each ``rejected`` entry
  as dropped ``rejected`` (never retried).
* **Unavailable** (connection errors, timeouts, 408, 429, 502, 503, 504, unexpected 1xx/3xx):
  the collector is down, busy or being deployed and the batch is fine, so the same batch is
  sent again after ``uniform(0, min(max_backoff, backoff_base * 2**n))`` seconds (``n``
  consecutive such failures so far), and at least a ``Retry-After`` plus up to 20% of it.
  Never split, never dropped: only the spool's caps (size, age) bound what waits.
* **Refused token** (401, 403): the same, with the backoff capped at ``auth_max_backoff``
  (default 5 minutes) instead, so a token being rotated or a revocation being undone loses
  nothing. Counted in ``auth_failures``.
* **413**: the batch is split in halves; a single record still refused is ``too_large``.
* **Other 4xx**: the batch is dropped as ``rejected`` (one warning per error code).
* **Server error** (500, 501, 505-599): the poison rule below.

Every failed attempt is counted in ``retries`` and logged by a ``RetryLog``: a WARNING when a
stream starts failing, at most one a minute per kind of failure while it goes on, an INFO line
when it works again. While a batch waits, its records still age out (``spool_max_age``: the
time since each was spooled, never the age of its ``ts``).

**The poison rule.** A collector bug triggered by one record fails every batch that holds it,
and retrying it forever would stop the stream for good. But a collector failing on everything
(a broken deploy) answers the same 500s, and then nothing may be thrown away. So:

1. A batch of several records answered ``BISECT_AFTER`` (3) server errors, without a success
   in between (unavailable answers neither count nor reset), is split in halves, sent first
   half first; halves that go through are delivered, failing ones are split again.
2. A record alone that was answered ``QUARANTINE_AFTER`` (8) server errors is quarantined,
   provided the stream had a success *since that record first failed* (in any batch): the
   collector works, just not on it. It is removed from the spool, counted as dropped
   ``poisoned``, and its line is kept in the dead-letter file (``deadletter.DeadLetter``).
3. Without such a success nothing is quarantined: every request fails, which is an outage, not
   a poison record. The record goes behind the rest of its batch, or, if nothing else of it
   is left to try, the sender reads further into the spool (at most ``MAX_EXTENSIONS`` more
   batches for one batch in flight) and sends those lines first, so a working collector soon
   proves itself while one that fails on everything loses nothing.

The wait after a server error is ``backoff(k)`` with ``k = (s - 1) // BISECT_AFTER`` for ``s``
consecutive server errors of the stream since its last success: it doubles once per halving,
so isolating one record in a full 500-record batch takes at most 9 halvings x 3 + 8 = 35
requests, about 9 minutes at the default backoff (less when halves go through, which resets
it), and a collector failing on everything gets about one request per ``max_backoff / 2``
from each stream of a node once the backoff has reached its cap.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from monitor.sdk.counters import Counters
from monitor.sdk.deadletter import DeadLetter
from monitor.sdk.errors import report_internal_error
from monitor.sdk.retrylog import RETRY_LOG_INTERVAL, RetryLog
from monitor.sdk.spool import Chunk, Spool, Stream
from monitor.sdk.transport import (
    TRANSPORT_ERRORS,
    Backoff,
    Outcome,
    Response,
    Transport,
    classify,
)
from monitor.sdk.worker import WarnOnce, splice_body
from monitor.wire import (
    LABELS_PATH,
    MAX_DECODED_BYTES,
    MAX_WIRE_BYTES,
    RECORDS_PATH,
    labels_body,
    records_body,
)

logger = logging.getLogger(__name__)

#: Raw bytes of spooled lines per request, leaving room under MAX_DECODED_BYTES for the
#: envelope and the commas between lines.
MAX_BATCH_BYTES = MAX_DECODED_BYTES - 64 * 1024
#: Server errors in a row on one batch of several records before it is split in halves.
BISECT_AFTER = 3
#: Server errors on one record sent alone before it is quarantined (if the stream works). A
#: collector failing at random on a share p of requests quarantines a record by mistake with a
#: chance of about p**8 (0.4% at p = 0.5); a real poison record costs 8 more requests.
QUARANTINE_AFTER = 8
#: Records remembered as suspects (failed alone) across batches; the oldest are forgotten.
MAX_SUSPECTS = 1024
#: Batches read past the one in flight while its suspects wait for proof that the collector
#: works (rule 3); bounds what one sender holds in memory.
MAX_EXTENSIONS = 3


class _Part:
    """A batch (or a piece of one) on its way; its body and batch id survive retries."""

    __slots__ = ("body", "checked", "failed", "lines", "seen", "server_errors")

    def __init__(self, lines: list[bytes], checked: bool = False, seen: int | None = None) -> None:
        self.lines = lines
        self.body: bytes | None = None
        self.checked = checked  # every line known to decode as JSON
        self.failed = False  # sent before without success: its lines may have aged out since
        self.server_errors = 0  # in a row, on this very part
        #: The stream's success count when this part (or the batch it came from) first got a
        #: server error: a success after that proves the collector works without its lines.
        self.seen = seen


@dataclass
class _Suspect:
    """A record that got server errors when sent alone."""

    failures: int
    seen: int  # the stream's success count when it first failed, in any batch


def _digest(line: bytes) -> bytes:
    return hashlib.blake2b(line, digest_size=16).digest()


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


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _answer(resp: Response) -> str:
    code = resp.error_code()
    return f"answered {resp.status}" + (f" ({code})" if code else "")


class Sender:
    """Sends one spooled stream (``"records"`` or ``"labels"``) in batches, one request in
    flight at a time, on its own thread (see the module docstring for the rules)."""

    def __init__(
        self,
        *,
        kind: str,
        transport: Transport,
        ready: threading.Event,
        get_spool: Callable[[], Spool | None],
        get_dead_letter: Callable[[], DeadLetter],
        counters: Counters,
        error_counters: Counters,
        model: str,
        model_version: str,
        batch_size: int,
        flush_interval: float,
        backoff: Backoff,
        auth_backoff: Backoff,
        stop: threading.Event,
        warn_once: WarnOnce,
        new_id: Callable[[], str],
        retry_log: RetryLog | None = None,
    ) -> None:
        self.kind = kind
        self._path = RECORDS_PATH if kind == "records" else LABELS_PATH
        self._transport = transport
        self._ready = ready
        self._get_spool = get_spool
        self._get_dead_letter = get_dead_letter
        self._counters = counters
        # Internal errors are counted where stats() and the heartbeat report them (records).
        self._error_counters = error_counters
        self._model = model
        self._model_version = model_version
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._backoff = backoff
        self._auth_backoff = auth_backoff
        self._stop = stop
        self._warn_once = warn_once
        self._new_id = new_id
        self.retry_log = retry_log or RetryLog(kind)
        self.wake = threading.Event()
        self._target: Any = None
        self._target_lock = threading.Lock()
        # Only the sender thread touches what follows.
        self._successes = 0  # 2xx answers so far: the poison rule's witness clock
        self._unavailable = 0  # consecutive failures of each class since the last 2xx
        self._auth = 0
        self._server_errors = 0
        self._suspects: collections.OrderedDict[bytes, _Suspect] = collections.OrderedDict()
        self._quarantine_log: tuple[float, int] | None = None  # (logged at, suppressed since)
        # The chunks of the batch in flight, and (built when a retry first needs it) when each
        # of their lines was spooled, by line: parts keep the very lines they were read as.
        self._chunks: list[Chunk] = []
        self._spooled: dict[bytes, float] | None = None
        self.thread = threading.Thread(target=self._run, name=f"edge-monitor-{kind}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def request_flush(self, target: Any) -> None:
        """Send partial batches at once until the stream is acknowledged up to ``target``."""
        with self._target_lock:
            self._target = target if self._target is None else max(self._target, target)
        self.wake.set()

    def _urgent(self, stream: Stream) -> bool:
        with self._target_lock:
            if self._target is None:
                return False
            if stream.reached(self._target):
                self._target = None
                return False
            return True

    def _run(self) -> None:
        while not self._ready.wait(0.1):
            if self._stop.is_set():
                return
        spool = self._get_spool()
        if spool is None:
            return
        stream = spool.stream(self.kind)
        first_seen: float | None = None
        while not self._stop.is_set():
            self.wake.clear()
            timeout = 1.0
            try:
                if stream.pending_records == 0:
                    first_seen = None
                    self._urgent(stream)  # clears a reached target
                else:
                    now = time.monotonic()
                    if first_seen is None:
                        first_seen = now
                    if (
                        stream.pending_records >= self._batch_size
                        or self._urgent(stream)
                        or now - first_seen >= self._flush_interval
                    ):
                        if not self._send_one(stream):
                            return
                        first_seen = None
                        timeout = 0.0
                    else:
                        timeout = first_seen + self._flush_interval - now
            except Exception as exc:
                if self._stop.is_set():
                    return  # close() tore the spool or the connection down under us
                report_internal_error(exc, f"{self.kind} sender")
                self._error_counters.add_internal_error()
                timeout = 1.0
            if timeout > 0:
                self.wake.wait(timeout)

    def _send_one(self, stream: Stream) -> bool:
        """Send one chunk of ``stream``; False if stopped before it was done with."""
        chunk: Chunk | None = stream.peek(self._batch_size, MAX_BATCH_BYTES)
        if chunk is None:
            return True
        self._chunks, self._spooled = [chunk], None
        extensions = 0

        def more() -> list[bytes] | None:
            """The lines after the chunk in flight, which then grows to include them."""
            nonlocal chunk, extensions
            assert chunk is not None
            while extensions < MAX_EXTENSIONS:
                later = stream.peek(self._batch_size, MAX_BATCH_BYTES, after=chunk.end)
                if later is None:
                    return None
                chunk = chunk.then(later)
                self._chunks.append(later)
                self._spooled = None
                extensions += 1
                if later.lines:
                    return later.lines
            return None

        if chunk.lines and not self._deliver(stream, chunk.lines, more):
            return False
        self._counters.drop("expired", chunk.expired)
        self._counters.drop("too_large", chunk.too_large)
        stream.ack(chunk)
        self._chunks, self._spooled = [], None
        return True

    def _unexpired(self, stream: Stream, lines: list[bytes]) -> list[bytes]:
        """``lines`` (of the batch in flight, being retried) without those that have now
        waited in the spool longer than its age cap."""
        if self._spooled is None:
            spooled: dict[bytes, float] = {}
            for chunk in self._chunks:
                for line, at in zip(chunk.lines, chunk.spooled, strict=True):
                    spooled.setdefault(line, at)  # a repeated line: its first (older) time
            self._spooled = spooled
        horizon = stream.horizon()
        return [line for line in lines if self._spooled.get(line, horizon) >= horizon]

    def _body(self, lines: list[bytes]) -> bytes:
        if self.kind == "records":
            skeleton = records_body(self._new_id(), self._model, self._model_version, [])
            payload = splice_body(skeleton, "records", lines)
        else:
            payload = splice_body(labels_body(self._model, []), "labels", lines)
        return self._transport.encode(payload)

    def _parts(self, lines: list[bytes]) -> list[_Part]:
        """The chunk as parts to send: known suspects alone, after everything else."""
        if not self._suspects:
            return [_Part(lines)]
        rest: list[bytes] = []
        alone: list[_Part] = []
        for line in lines:
            suspect = self._suspects.get(_digest(line))
            if suspect is None:
                rest.append(line)
            else:
                alone.append(_Part([line], seen=suspect.seen))
        return ([_Part(rest)] if rest else []) + alone

    def _deliver(
        self, stream: Stream, lines: list[bytes], more: Callable[[], list[bytes] | None]
    ) -> bool:
        """Deliver ``lines`` (splitting, retrying, isolating as answers say); False if stopped
        first. ``more()`` reads the lines that follow them, to deliver with them."""
        counters = self._counters
        work: collections.deque[_Part] = collections.deque(self._parts(lines))
        while work:
            if self._stop.is_set():
                return False
            part = work[0]
            if part.failed:
                kept = self._unexpired(stream, part.lines)
                if len(kept) < len(part.lines):
                    counters.drop("expired", len(part.lines) - len(kept))
                    work.popleft()
                    if kept:
                        fresh = _Part(kept, part.checked, part.seen)
                        fresh.failed = True
                        work.appendleft(fresh)
                    continue
            if part.body is None:
                part.body = self._body(part.lines)
            if len(part.body) > MAX_WIRE_BYTES:  # no point sending what must come back 413
                work.popleft()
                self._split(part, work)
                continue
            try:
                resp = self._transport.post(self._path, part.body)
            except TRANSPORT_ERRORS as exc:
                if self._stop.is_set():
                    return False
                part.failed = True
                self._unavailable += 1
                counters.add_retry()
                self.retry_log.failed(
                    "unavailable", f"connection failed ({exc!r})", "retrying with backoff"
                )
                if self._stop.wait(self._backoff.delay(self._unavailable - 1)):
                    return False
                continue
            outcome = classify(resp.status)
            if outcome is Outcome.OK:
                work.popleft()
                self._succeeded(part)
                self._account(part, resp)
            elif outcome is Outcome.SPLIT:
                work.popleft()
                self._split(part, work)
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
                            self.kind,
                        )
                        if good:
                            work.appendleft(_Part(good, checked=True, seen=part.seen))
                        continue
                counters.drop("rejected", len(part.lines))
                self._warn_once(
                    (self._path, resp.status, resp.error_code()),
                    "edge-monitor: collector refused %s with %s (%s); dropping the batch",
                    self._path,
                    resp.status,
                    resp.error_code(),
                )
            else:
                part.failed = True
                if outcome is Outcome.AUTH:
                    delay = self._refused(resp, stream)
                elif outcome is Outcome.SERVER_ERROR:
                    if self._server_error(part, work, more, resp):
                        continue  # quarantined: nothing to wait for
                    delay = self._backoff.delay(
                        (self._server_errors - 1) // BISECT_AFTER, resp.retry_after()
                    )
                else:
                    self._unavailable += 1
                    counters.add_retry()
                    self.retry_log.failed("unavailable", _answer(resp), "retrying with backoff")
                    delay = self._backoff.delay(self._unavailable - 1, resp.retry_after())
                if self._stop.wait(delay):
                    return False
        return True

    def _succeeded(self, part: _Part) -> None:
        self._successes += 1
        self._unavailable = self._auth = self._server_errors = 0
        self.retry_log.recovered()
        if len(part.lines) == 1 and self._suspects:
            self._suspects.pop(_digest(part.lines[0]), None)

    def _refused(self, resp: Response, stream: Stream) -> float:
        """A 401/403: count it, say so (rate-limited), and return how long to wait."""
        self._auth += 1
        self._counters.add_retry(auth=True)
        self.retry_log.failed(
            "auth",
            f"{_answer(resp)}: the collector refused this node's token",
            f"keeping {stream.pending_records} {self.kind} in the spool and retrying "
            f"(backoff up to {self._auth_backoff.cap:.0f} s)",
        )
        return self._auth_backoff.delay(self._auth - 1, resp.retry_after())

    def _server_error(
        self,
        part: _Part,
        work: collections.deque[_Part],
        more: Callable[[], list[bytes] | None],
        resp: Response,
    ) -> bool:
        """Apply the poison rule to a server error on ``work[0]``; True if its record was
        quarantined (and taken off ``work``), False to retry after the backoff."""
        self._server_errors += 1
        if part.seen is None:
            part.seen = self._successes
        part.server_errors += 1
        if len(part.lines) > 1:
            self._counters.add_retry()
            if part.server_errors >= BISECT_AFTER:
                work.popleft()
                half = len(part.lines) // 2
                work.appendleft(_Part(part.lines[half:], part.checked, part.seen))
                work.appendleft(_Part(part.lines[:half], part.checked, part.seen))
                action = f"splitting the batch of {len(part.lines)} to find a record it fails on"
            else:
                action = f"retrying the batch of {len(part.lines)} with backoff"
            self.retry_log.failed("server_error", _answer(resp), action)
            return False
        key = _digest(part.lines[0])
        suspect = self._suspects.get(key)
        if suspect is None:
            suspect = self._suspects[key] = _Suspect(0, part.seen)
            while len(self._suspects) > MAX_SUSPECTS:
                self._suspects.popitem(last=False)
        suspect.failures += 1
        if suspect.failures >= QUARANTINE_AFTER and self._successes > suspect.seen:
            work.popleft()
            del self._suspects[key]
            self._quarantine(part.lines[0], resp, suspect.failures)
            return True
        self._counters.add_retry()
        self.retry_log.failed(
            "server_error", _answer(resp), f"retrying one {self.kind[:-1]} alone with backoff"
        )
        if suspect.failures >= QUARANTINE_AFTER:
            self._make_way(work, more)
        return False

    def _exhausted(self, part: _Part) -> bool:
        """A record alone that failed enough to be quarantined, but with no proof yet that the
        collector works (nothing went through since it first failed)."""
        if len(part.lines) != 1:
            return False
        suspect = self._suspects.get(_digest(part.lines[0]))
        return (
            suspect is not None
            and suspect.failures >= QUARANTINE_AFTER
            and self._successes <= suspect.seen
        )

    def _make_way(
        self, work: collections.deque[_Part], more: Callable[[], list[bytes] | None]
    ) -> None:
        """Let what may prove the collector works go before the exhausted suspects: the rest of
        the batch, else the lines after it in the spool (rule 3 of the poison rule)."""
        fresh = [p for p in work if not self._exhausted(p)]
        if not fresh:
            lines = more()
            if lines:
                work.extend(self._parts(lines))
                fresh = [p for p in work if not self._exhausted(p)]
        if fresh:
            first = {id(p) for p in fresh}
            stale = [p for p in work if id(p) not in first]
            work.clear()
            work.extend(fresh + stale)
        else:
            work.rotate(-1)  # nothing else to try: take the exhausted suspects in turn

    def _quarantine(self, line: bytes, resp: Response, failures: int) -> None:
        self._counters.drop("poisoned", 1)
        dead_letter = self._get_dead_letter()
        kept = dead_letter.add(self.kind, line, resp.status, resp.error_code(), failures)
        # Rate-limited like retries: a collector that fails on many records must not flood.
        now = time.monotonic()
        last = self._quarantine_log
        if last is not None and now - last[0] < RETRY_LOG_INTERVAL:
            self._quarantine_log = (last[0], last[1] + 1)
            return
        suppressed = last[1] if last is not None else 0
        self._quarantine_log = (now, 0)
        logger.warning(
            "edge-monitor: the collector %s to one %s sent alone %d times while other batches "
            "went through; dropped it as 'poisoned'%s%s",
            _answer(resp),
            self.kind[:-1],
            failures,
            f", kept in {kept}" if kept is not None else " (no dead-letter file kept it)",
            f" ({suppressed} more since the last report)" if suppressed else "",
        )

    def _split(self, part: _Part, work: collections.deque[_Part]) -> None:
        """Halve a part that is too large; a single record is dropped ``too_large``."""
        if len(part.lines) == 1:
            self._counters.drop("too_large", 1)
            return
        half = len(part.lines) // 2
        # Halves go to the front, first half first, so delivery order is kept.
        work.appendleft(_Part(part.lines[half:], part.checked, part.seen))
        work.appendleft(_Part(part.lines[:half], part.checked, part.seen))

    def _account(self, part: _Part, resp: Response) -> None:
        counters = self._counters
        data = resp.json()
        if not isinstance(data, dict):
            self._warn_once(
                ("no-body", self.kind),
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
                ("rejected", self.kind, first.get("code")),
                "edge-monitor: collector rejected %d %s (first: %s %s)",
                n_rejected,
                self.kind,
                first.get("code"),
                first.get("field"),
            )
