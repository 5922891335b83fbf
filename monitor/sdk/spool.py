"""The bounded spool between the in-memory queue and the network: on disk, or memory-only.

On disk, each stream ("records", "labels") is a run of append-only segment files
``<kind>-<seq>.jsonl`` (one wire object per line, after its spool time: see below) plus
``<kind>.ack``, a tiny JSON file naming
the first unacknowledged position, replaced atomically (temp file + ``os.replace``). A segment
is deleted once everything in it is acknowledged. The writer thread appends and fsyncs; each
stream's sender thread reads from the acknowledged position and acknowledges after the
collector has answered; exactly one batch per stream is in flight (a sender may read on past
it, ``peek(after=...)``, and then acknowledge both at once), so the acknowledged part is always
a prefix.

Guarantees and choices:

* Size cap: when appending a line would take the unacknowledged bytes of both streams over
  ``max_bytes``, that *newest* line is dropped and counted (``spool_overflow``). Dropping the
  newest keeps the acknowledged prefix valid while a batch is in flight and makes the count
  exact; stale data ages out through the age cap instead.
* Age cap: lines that have waited in the spool longer than ``max_age`` seconds when read are
  dropped and counted (``expired``). The age is the time since the line was spooled, by this
  machine's clock, never the age of the record's ``ts``: a record stamped 1970 by a clock that
  was never set is delivered like any other (the collector stores it at its arrival). So each
  line starts with its spool time: ``<seconds since the epoch>\t<wire JSON>`` (``_split``); the
  JSON itself never holds a raw tab (compact ASCII JSON escapes it). A line that starts with
  ``{`` was written by an SDK before spool times: its ``ts`` stands in for its spool time, as
  that SDK aged it (found by a byte scan, ``_line_ts``). If the clock jumps while lines wait,
  their age jumps with it: a clock set forward from 1970 expires what was spooled before, as
  it would anyway once ``max_age`` had passed.
* Crash tolerance: a truncated last line (a crash mid-write) is cut off when the spool opens;
  any other undecodable line is skipped with a warning. "Undecodable" is judged cheaply: a
  line whose spool time does not read as a number, or whose JSON is not one ASCII object
  without NUL bytes, is decoded with json.loads. Damage that leaves a line looking intact
  (printable ASCII, the time and the braces in place) passes here; if the collector then
  refuses the batch, the sender decodes its lines, skips the bad ones and sends the rest
  (``sender.Sender``). The ack file is not fsynced: losing it only means re-sending records,
  which the collector deduplicates by record id.
* One process per directory: ``open_disk_spool`` takes an exclusive ``flock`` on ``lock`` and
  raises ``SpoolLocked`` if another Monitor holds it. A forked child lets go of its copy
  (``Spool.forget_after_fork``) and spools elsewhere (see ``Monitor``).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

try:  # fcntl is POSIX-only; without it two Monitors on one directory are not guarded
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

KINDS = ("records", "labels")
#: Target size of one segment file; a segment is closed once it reaches this.
SEGMENT_BYTES = 4 * 1024 * 1024
#: A fully acknowledged tail segment at least this big is rotated so its space is reclaimed.
_RECLAIM_BYTES = 64 * 1024
_READ_WINDOW = 256 * 1024


class SpoolLocked(RuntimeError):
    """Another Monitor (in this or another process) already uses the spool directory."""


class Budget:
    """The byte cap shared by the streams of one spool."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self._lock = threading.Lock()

    def reserve(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.max_bytes:
                return False
            self.used += n
            return True

    def force(self, n: int) -> None:
        """Count bytes already on disk (found when opening), even past the cap."""
        with self._lock:
            self.used += n

    def release(self, n: int) -> None:
        with self._lock:
            self.used = max(0, self.used - n)


@dataclass
class Chunk:
    """What the sender read from a stream: lines to send and the position to acknowledge."""

    lines: list[bytes]  # raw JSON objects, without the spool time and the newline
    end: Any  # position to acknowledge once ``lines`` are delivered or finally dropped
    #: When each of ``lines`` was spooled (seconds since the epoch), to age it while retried.
    spooled: list[float] = field(default_factory=list)
    consumed: int = 0  # entries between where it was read from and ``end``
    consumed_bytes: int = 0
    expired: int = 0
    too_large: int = 0
    corrupt: int = 0

    def then(self, later: Chunk) -> Chunk:
        """This chunk and ``later`` (read right after it, ``peek(after=self.end)``) as one,
        to acknowledge together."""
        return Chunk(
            lines=self.lines + later.lines,
            end=later.end,
            spooled=self.spooled + later.spooled,
            consumed=self.consumed + later.consumed,
            consumed_bytes=self.consumed_bytes + later.consumed_bytes,
            expired=self.expired + later.expired,
            too_large=self.too_large + later.too_large,
            corrupt=self.corrupt + later.corrupt,
        )


class Stream(Protocol):
    """One spooled stream of wire objects (records or labels)."""

    kind: str
    pending_records: int
    pending_bytes: int

    def append(self, lines: list[bytes]) -> int:
        """Append newline-terminated lines; returns how many fitted under the cap."""

    def sync(self) -> None:
        """Make appended lines durable."""

    def peek(self, max_items: int, max_bytes: int, after: Any = None) -> Chunk | None:
        """Up to ``max_items`` unacknowledged lines (None if there are none).

        ``after``: the ``end`` of a chunk read earlier and not yet acknowledged, to read the
        lines that follow it instead of those at the acknowledged position.
        """

    def ack(self, chunk: Chunk) -> None:
        """Forget everything up to ``chunk.end``."""

    def horizon(self) -> float:
        """Lines spooled before this time (seconds since the epoch) have expired."""

    def tail(self) -> Any:
        """The position after the last appended line."""

    def reached(self, target: Any) -> bool:
        """True once everything appended before ``target`` is acknowledged."""

    def wait_acked(self, target: Any, timeout: float) -> bool:
        """Wait until ``reached(target)``; False on timeout."""

    def close(self) -> None: ...


_TS_KEY = b'"ts":'


def _line_ts(raw: bytes) -> float | None:
    """The ``ts`` of a line as the SDK writes it, by a byte scan; None if the scan cannot tell.

    The writer encodes compact ASCII JSON (``encode_line``) with ``"ts"`` before any key the
    user chooses (records: ``{"id":<hex>,"ts":...``; labels have no user keys), and inside a
    JSON string every quote is escaped, so the first ``"ts":`` is the top-level key. The
    checks first are cheap stand-ins for "this is a line the SDK wrote": one object, ASCII
    only, no NUL (blocks a crashed file system zero-fills), so damaged lines go to json.loads.
    """
    if raw[:1] != b"{" or raw[-1:] != b"}" or not raw.isascii() or b"\x00" in raw:
        return None
    i = raw.find(_TS_KEY)
    if i < 0:
        return None
    i += len(_TS_KEY)
    j = raw.find(b",", i)
    try:
        ts = float(raw[i:j] if j >= 0 else raw[i:-1])
    except ValueError:
        return None
    return ts if ts - ts == 0.0 else None  # NaN or infinity: not something the SDK wrote


#: Most bytes of a spool time before its tab (``b"%.3f" % time.time()`` takes 14).
_STAMP_MAX = 32


def spool_stamp(now: float) -> bytes:
    """The start of a line spooled at ``now``: its spool time and a tab."""
    return b"%.3f\t" % now


def _split(data: bytes, start: int, end: int) -> tuple[bytes, float] | None:
    """The wire JSON of the spooled line ``data[start:end]`` (without its newline) and when it
    was spooled; None for a line too damaged to send.

    A few byte checks (< 1 us) instead of decoding the whole line (~9 us for 25 features):
    the spool time must read as a finite number, and the JSON must look like what the SDK
    writes (one object, ASCII only, no NUL: blocks a crashed file system zero-fills);
    json.loads decides only the lines that do not.
    """
    if data[start : start + 1] == b"{":
        return _legacy(data[start:end])
    tab = data.find(b"\t", start, min(end, start + _STAMP_MAX))
    if tab < 0:
        return None
    try:
        spooled = float(data[start:tab])
    except ValueError:
        return None
    if spooled - spooled != 0.0:  # NaN or infinity: not something the SDK wrote
        return None
    raw = data[tab + 1 : end]
    if raw[:1] != b"{" or raw[-1:] != b"}" or not raw.isascii() or b"\x00" in raw:
        try:
            if type(json.loads(raw)) is not dict:
                return None
        except Exception:
            return None
    return raw, spooled


def _legacy(raw: bytes) -> tuple[bytes, float] | None:
    """A line spooled by an SDK before spool times: aged by its ``ts``, as that SDK did."""
    ts: Any = _line_ts(raw)
    if ts is None:
        try:
            ts = json.loads(raw)["ts"]
        except Exception:
            return None
        if type(ts) is not float and type(ts) is not int:
            return None
    try:
        spooled = float(ts)
    except OverflowError:  # an integer beyond float64
        return None
    return (raw, spooled) if spooled - spooled == 0.0 else None


class _AckWaiter:
    """Lets ``flush()`` wait for the acknowledged position to pass a target."""

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())

    def wait_for(self, reached: Callable[[], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(reached, timeout=max(0.0, timeout))

    def notify(self) -> None:
        with self.cond:
            self.cond.notify_all()


class MemoryStream:
    """A stream held in memory only: same caps and accounting, no durability."""

    def __init__(
        self, kind: str, budget: Budget, max_age: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.kind = kind
        self._budget = budget
        self._max_age = max_age
        self._clock = clock
        # (spool time, line with its newline): held in memory, a line needs no stamp.
        self._lines: collections.deque[tuple[float, bytes]] = collections.deque()
        self._lock = threading.Lock()
        self._appended = 0  # positions are counts of lines ever appended
        self._acked = 0
        self._waiter = _AckWaiter()
        self.pending_records = 0
        self.pending_bytes = 0

    def append(self, lines: list[bytes]) -> int:
        accepted = 0
        now = self._clock()
        with self._lock:
            for line in lines:
                if not self._budget.reserve(len(line)):
                    continue
                self._lines.append((now, line))
                accepted += 1
                self.pending_bytes += len(line)
            self._appended += accepted
            self.pending_records = len(self._lines)
        return accepted

    def sync(self) -> None:
        pass

    def peek(self, max_items: int, max_bytes: int, after: Any = None) -> Chunk | None:
        horizon = self.horizon()
        with self._lock:
            start = self._acked if after is None else max(after, self._acked)
            skip = start - self._acked
            snapshot = list(itertools.islice(self._lines, skip, skip + max_items))
        if not snapshot:
            return None
        chunk = Chunk(lines=[], end=start)
        size = 0
        for spooled, line in snapshot:
            raw = line[:-1]
            if len(raw) > max_bytes:
                if chunk.lines:
                    break
                chunk.too_large += 1
            elif chunk.lines and size + len(raw) > max_bytes:
                break
            elif spooled < horizon:
                chunk.expired += 1
            else:
                chunk.lines.append(raw)
                chunk.spooled.append(spooled)
                size += len(raw)
            chunk.consumed += 1
            chunk.consumed_bytes += len(line)
        chunk.end = start + chunk.consumed
        return chunk

    def ack(self, chunk: Chunk) -> None:
        with self._lock:
            n = chunk.end - self._acked
            for _ in range(max(0, n)):
                self._lines.popleft()
            self._acked = max(self._acked, chunk.end)
            self.pending_records = len(self._lines)
            self.pending_bytes -= chunk.consumed_bytes
        self._budget.release(chunk.consumed_bytes)
        self._waiter.notify()

    def horizon(self) -> float:
        return self._clock() - self._max_age

    def tail(self) -> int:
        with self._lock:
            return self._appended

    def reached(self, target: Any) -> bool:
        return self._acked >= target or self.pending_records == 0

    def wait_acked(self, target: Any, timeout: float) -> bool:
        return self._waiter.wait_for(lambda: self.reached(target), timeout)

    def close(self) -> None:
        self._waiter.notify()


@dataclass
class _Segment:
    seq: int
    path: Path
    size: int  # committed bytes: only whole lines are ever below this mark
    fd: int | None = field(default=None, repr=False)  # read descriptor, opened lazily


def _count_newlines(fd: int, start: int, end: int) -> int:
    n = 0
    pos = start
    while pos < end:
        data = os.pread(fd, min(1 << 20, end - pos), pos)
        if not data:
            break
        n += data.count(b"\n")
        pos += len(data)
    return n


def _last_newline_end(fd: int, size: int) -> int:
    """Offset just after the last newline in the first ``size`` bytes (0 if none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        data = os.pread(fd, pos - start, start)
        i = data.rfind(b"\n")
        if i >= 0:
            return start + i + 1
        pos = start
    return 0


class DiskStream:
    """One stream of segment files in a spool directory (see the module docstring)."""

    def __init__(
        self,
        directory: Path,
        kind: str,
        budget: Budget,
        max_age: float,
        segment_bytes: int = SEGMENT_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kind = kind
        self._dir = directory
        self._budget = budget
        self._max_age = max_age
        self._segment_bytes = segment_bytes
        self._clock = clock
        self._pattern = re.compile(rf"^{re.escape(kind)}-(\d{{12}})\.jsonl$")
        self._ack_path = directory / f"{kind}.ack"
        self._lock = threading.Lock()
        self._waiter = _AckWaiter()
        self._segments: list[_Segment] = []
        self._wfd: int | None = None
        self._dirty = False
        self._closed = False
        self.pending_records = 0
        self.pending_bytes = 0
        self._open()

    # -- opening ---------------------------------------------------------------------------

    def _seg_path(self, seq: int) -> Path:
        return self._dir / f"{self.kind}-{seq:012d}.jsonl"

    def _read_ack(self) -> tuple[int, int]:
        try:
            data = json.loads(self._ack_path.read_bytes())
            return int(data["segment"]), int(data["offset"])
        except FileNotFoundError:
            return 0, 0
        except Exception:
            logger.warning("spool %s: unreadable %s.ack, replaying it all", self._dir, self.kind)
            return 0, 0

    def _open(self) -> None:
        seqs = sorted(
            int(m.group(1)) for p in self._dir.iterdir() if (m := self._pattern.match(p.name))
        )
        ack_seq, ack_off = self._read_ack()
        for seq in seqs:
            if seq < ack_seq:  # fully acknowledged; its deletion was interrupted
                with contextlib.suppress(OSError):
                    self._seg_path(seq).unlink()
        seqs = [s for s in seqs if s >= ack_seq]
        if not seqs:
            seqs = [max(ack_seq, 1)]
            os.close(os.open(self._seg_path(seqs[0]), os.O_WRONLY | os.O_CREAT, 0o600))
        if seqs[0] != ack_seq:
            ack_seq, ack_off = seqs[0], 0
        for seq in seqs:
            path = self._seg_path(seq)
            self._segments.append(_Segment(seq, path, path.stat().st_size))
        tail = self._segments[-1]
        # Only the last segment can end mid-line (a crash during a write): cut the torn line
        # off so that new lines start cleanly.
        fd = os.open(tail.path, os.O_RDWR)
        try:
            good = _last_newline_end(fd, tail.size)
            if good != tail.size:
                logger.warning(
                    "spool %s: dropping %d bytes of a torn line at the end of %s",
                    self._dir,
                    tail.size - good,
                    tail.path.name,
                )
                os.ftruncate(fd, good)
                tail.size = good
        finally:
            os.close(fd)
        ack_off = min(ack_off, self._segments[0].size)
        self._ack = (ack_seq, ack_off)
        for seg in self._segments:
            start = ack_off if seg.seq == ack_seq else 0
            self.pending_bytes += seg.size - start
            self.pending_records += _count_newlines(self._reader(seg), start, seg.size)
        self._budget.force(self.pending_bytes)
        self._wfd = os.open(tail.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _reader(self, seg: _Segment) -> int:
        if seg.fd is None:
            seg.fd = os.open(seg.path, os.O_RDONLY)
        return seg.fd

    # -- writing (writer thread) -----------------------------------------------------------

    def append(self, lines: list[bytes]) -> int:
        accepted = 0
        # One spool time for the lines of one append: they are spooled together.
        stamp = spool_stamp(self._clock())
        with self._lock:
            if self._closed or self._wfd is None:
                return 0
            tail = self._segments[-1]
            if tail.size >= _RECLAIM_BYTES and self._ack == (tail.seq, tail.size):
                self._rotate()  # everything in the tail is acknowledged: reclaim its space
            buf: list[bytes] = []
            buf_size = 0
            for line in lines:
                n = len(stamp) + len(line)
                if not self._budget.reserve(n):
                    continue
                if buf and self._segments[-1].size + buf_size + n > self._segment_bytes:
                    accepted += self._write(buf, buf_size, stamp)
                    buf, buf_size = [], 0
                    self._rotate()
                elif not buf and self._segments[-1].size >= self._segment_bytes:
                    self._rotate()
                buf.append(line)
                buf_size += n
            if buf:
                accepted += self._write(buf, buf_size, stamp)
        return accepted

    def _write(self, buf: list[bytes], size: int, stamp: bytes) -> int:
        """Write whole lines, each after ``stamp``, to the tail; on failure roll the file back
        and uncount them."""
        tail = self._segments[-1]
        # Each line ends with its newline, so joining on the stamp starts every next line
        # with it: one copy, no per-line concatenation.
        data = stamp + stamp.join(buf)
        assert self._wfd is not None
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._wfd, view)
                view = view[written:]
        except OSError as exc:
            logger.warning("spool %s: cannot write %s (%s); dropping", self._dir, self.kind, exc)
            with contextlib.suppress(OSError):
                os.ftruncate(self._wfd, tail.size)
            self._budget.release(size)
            return 0
        tail.size += size
        self.pending_bytes += size
        self.pending_records += len(buf)
        self._dirty = True
        return len(buf)

    def _rotate(self) -> None:
        assert self._wfd is not None
        old = self._segments[-1]
        os.fsync(self._wfd)
        os.close(self._wfd)
        self._dirty = False
        new = _Segment(old.seq + 1, self._seg_path(old.seq + 1), 0)
        self._wfd = os.open(new.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._segments.append(new)
        # The fully acknowledged segments are deleted by the sender (the only thread that
        # reads them) when it next acknowledges.
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        # The new segment's directory entry must survive a power cut too.
        with contextlib.suppress(OSError):
            dfd = os.open(self._dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def sync(self) -> None:
        with self._lock:
            if self._dirty and self._wfd is not None and not self._closed:
                os.fsync(self._wfd)
                self._dirty = False

    # -- reading and acknowledging (sender thread) -----------------------------------------

    def peek(self, max_items: int, max_bytes: int, after: Any = None) -> Chunk | None:
        with self._lock:
            if self._closed:
                return None
            start = self._ack if after is None else max(after, self._ack)
            seq, off = start
            segments = [(s, s.size) for s in self._segments if s.seq >= seq]
        horizon = self.horizon()
        chunk = Chunk(lines=[], end=(seq, off))
        size = 0
        full = False
        for seg, end in segments:
            if seg.seq != seq:  # the previous segment is exhausted: move on to this one
                seq, off = seg.seq, 0
            fd = self._reader(seg)
            window = _READ_WINDOW
            while off < end and not full:
                data = os.pread(fd, min(window, end - off), off)
                if not data:
                    break
                cut = data.rfind(b"\n")
                if cut < 0:
                    if off + len(data) < end:  # a line longer than the window: read more
                        window *= 2
                        continue
                    # Unterminated bytes at the end of a closed segment (only if the disk
                    # lied): skip them as one corrupt line.
                    chunk.corrupt += 1
                    chunk.consumed += 1
                    chunk.consumed_bytes += len(data)
                    off += len(data)
                    break
                window = _READ_WINDOW
                pos = 0
                while pos <= cut:
                    nl = data.index(b"\n", pos)
                    line = _split(data, pos, nl)
                    if line is None:
                        chunk.corrupt += 1
                    else:
                        raw, spooled = line
                        if chunk.lines and size + len(raw) > max_bytes:
                            full = True
                            break
                        if len(raw) > max_bytes:
                            chunk.too_large += 1
                        elif spooled < horizon:
                            chunk.expired += 1
                        else:
                            chunk.lines.append(raw)
                            chunk.spooled.append(spooled)
                            size += len(raw)
                    chunk.consumed += 1
                    chunk.consumed_bytes += nl + 1 - pos
                    pos = nl + 1
                    if chunk.consumed >= max_items:
                        full = True
                        break
                off += pos
            chunk.end = (seq, off)
            if full or off < end:
                break
        if chunk.corrupt:
            logger.warning(
                "spool %s: skipped %d undecodable %s line(s)", self._dir, chunk.corrupt, self.kind
            )
        if chunk.consumed == 0 and chunk.end == start:
            return None
        return chunk

    def ack(self, chunk: Chunk) -> None:
        with self._lock:
            if self._closed or chunk.end <= self._ack:
                return
            self._ack = chunk.end
            self.pending_records = max(0, self.pending_records - chunk.consumed)
            self.pending_bytes = max(0, self.pending_bytes - chunk.consumed_bytes)
            self._drop_segments_before(chunk.end[0])
            self._write_ack()
        self._budget.release(chunk.consumed_bytes)
        self._waiter.notify()

    def _drop_segments_before(self, seq: int) -> None:
        keep = []
        for seg in self._segments:
            if seg.seq < seq and seg is not self._segments[-1]:
                if seg.fd is not None:
                    os.close(seg.fd)
                with contextlib.suppress(OSError):
                    seg.path.unlink()
            else:
                keep.append(seg)
        self._segments = keep

    def _write_ack(self) -> None:
        tmp = self._ack_path.with_suffix(".ack.tmp")
        tmp.write_text(json.dumps({"segment": self._ack[0], "offset": self._ack[1]}))
        os.replace(tmp, self._ack_path)

    def horizon(self) -> float:
        return self._clock() - self._max_age

    def tail(self) -> tuple[int, int]:
        with self._lock:
            tail = self._segments[-1]
            return (tail.seq, tail.size)

    def wait_acked(self, target: Any, timeout: float) -> bool:
        return self._waiter.wait_for(lambda: self.reached(target), timeout)

    def reached(self, target: Any) -> bool:
        """True once everything appended before ``target`` is acknowledged."""
        # pending == 0 counts too: an exhausted segment is only stepped over on the next read.
        return self._ack >= target or self.pending_records == 0

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._wfd is not None:
                with contextlib.suppress(OSError):
                    if self._dirty:
                        os.fsync(self._wfd)
                    os.close(self._wfd)
                self._wfd = None
            for seg in self._segments:
                if seg.fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(seg.fd)
                    seg.fd = None
        self._waiter.notify()

    def forget_after_fork(self) -> None:
        """In a forked child: close this process's descriptors, touching nothing on disk."""
        self._lock = threading.Lock()  # may have been copied held by a parent thread
        self._closed = True
        fds = [self._wfd] + [seg.fd for seg in self._segments]
        self._wfd = None
        for seg in self._segments:
            seg.fd = None
        for fd in fds:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


class Spool:
    """The two streams of one Monitor, and the lock on their directory (if on disk)."""

    def __init__(
        self, records: Stream, labels: Stream, lock_fd: int | None, path: Path | None
    ) -> None:
        self.records = records
        self.labels = labels
        self.path = path
        self._lock_fd = lock_fd

    def stream(self, kind: str) -> Stream:
        return self.records if kind == "records" else self.labels

    def close(self) -> None:
        self.records.close()
        self.labels.close()
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's spool without writing, syncing or unlocking.

        The parent keeps using the directory; closing the child's copy of the lock descriptor
        leaves the parent's ``flock`` in place (it belongs to the shared open file description,
        released only by the last descriptor or an explicit unlock).
        """
        for stream in (self.records, self.labels):
            forget = getattr(stream, "forget_after_fork", None)
            if forget is not None:  # memory streams have nothing of the parent's to let go
                forget()
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None


def open_memory_spool(
    max_bytes: int, max_age: float, clock: Callable[[], float] = time.time
) -> Spool:
    """A spool that keeps everything in memory (lost when the process ends)."""
    budget = Budget(max_bytes)
    return Spool(
        MemoryStream("records", budget, max_age, clock),
        MemoryStream("labels", budget, max_age, clock),
        None,
        None,
    )


def open_disk_spool(
    directory: str | os.PathLike[str],
    max_bytes: int,
    max_age: float,
    segment_bytes: int = SEGMENT_BYTES,
    clock: Callable[[], float] = time.time,
) -> Spool:
    """Open (creating if needed) the spool in ``directory``; raises SpoolLocked or OSError."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock_fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SpoolLocked(f"spool directory {path} is in use by another Monitor") from None
        budget = Budget(max_bytes)
        records = DiskStream(path, "records", budget, max_age, segment_bytes, clock)
        labels = DiskStream(path, "labels", budget, max_age, segment_bytes, clock)
    except BaseException:
        os.close(lock_fd)
        raise
    return Spool(records, labels, lock_fd, path)
