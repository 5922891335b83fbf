"""The dead-letter file: records and labels the collector kept failing on, kept for inspection.

A record is put here when the sender quarantines it (see ``sender.Sender``): it is removed from
the spool and counted as dropped ``poisoned``, and its spooled line is appended here, so an
operator can see what the collector choked on and, once the collector is fixed, send it again.

Where: ``<spool_dir>/dead-letter/dead-letter.jsonl``, and the file before it,
``dead-letter.1.jsonl`` (a memory-only Monitor keeps no file: it logs the record id). Each file
holds at most half of ``max_bytes`` (``MonitorOptions.dead_letter_max_bytes``): when an entry
would not fit, the current file replaces the previous one and a new one starts, so the two
hold the newest entries and never more than ``max_bytes`` together.

Format: one JSON object per line::

    {"at": 1732530000.125, "kind": "records", "status": 500, "code": "internal_error",
     "failures": 5, "line": {...the record exactly as it was sent...}}

``at`` is when it was quarantined (seconds since the epoch), ``status`` and ``code`` the last
answer (``code`` is the error envelope's ``error.code``, or null), ``failures`` how many times
the collector failed on the record sent alone. A line that is not JSON (damaged on disk) is
kept as ``"text"`` instead of ``"line"``; one too big for the file keeps only ``"id"`` (or
``"request_id"``) and ``"line_bytes"``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: The dead-letter directory's name inside a spool directory.
DEAD_LETTER_DIR = "dead-letter"
CURRENT = "dead-letter.jsonl"
PREVIOUS = "dead-letter.1.jsonl"


def _identity(line: bytes) -> dict[str, Any]:
    """The id (records) or request id (labels) of a spooled line, if it decodes."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(obj, dict):
        return {}
    return {k: obj[k] for k in ("id", "request_id") if isinstance(obj.get(k), str)}


class DeadLetter:
    """Appends quarantined lines to the bounded dead-letter file pair of one spool directory."""

    def __init__(
        self,
        directory: Path | None,
        max_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory if max_bytes > 0 else None
        self._half = max_bytes // 2
        self._clock = clock
        self._lock = threading.Lock()
        self._size: int | None = None  # of the current file, read on first use

    @property
    def path(self) -> Path | None:
        """The file new entries go to, or None when nothing is kept on disk."""
        return self.directory / CURRENT if self.directory is not None else None

    def add(
        self, kind: str, line: bytes, status: int, code: str | None, failures: int
    ) -> Path | None:
        """Keep one quarantined ``line``; returns the file it went to, or None if none.

        Never raises: an I/O error is logged, and the record stays counted ``poisoned``.
        """
        entry = self._entry(kind, line, status, code, failures)
        if self.directory is None:
            return None
        try:
            with self._lock:
                return self._append(entry)
        except OSError as exc:
            logger.warning("edge-monitor: cannot write the dead-letter file (%s)", exc)
            return None

    def _entry(self, kind: str, line: bytes, status: int, code: str | None, failures: int) -> bytes:
        head: dict[str, Any] = {
            "at": round(self._clock(), 3),
            "kind": kind,
            "status": status,
            "code": code,
            "failures": failures,
        }
        try:
            json.loads(line)
        except (ValueError, RecursionError):
            text = line.decode("ascii", "backslashreplace")
            return (json.dumps({**head, "text": text}) + "\n").encode("ascii")
        # The line is JSON already: splice it in rather than decode and re-encode it.
        prefix = json.dumps(head)[:-1].encode("ascii")
        entry = prefix + b', "line": ' + line + b"}\n"
        if self.directory is not None and len(entry) > self._half:
            small = {**head, **_identity(line), "line_bytes": len(line)}
            entry = (json.dumps(small) + "\n").encode("ascii")
        return entry

    def _append(self, entry: bytes) -> Path:
        assert self.directory is not None
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        current = self.directory / CURRENT
        if self._size is None:
            try:
                self._size = current.stat().st_size
            except FileNotFoundError:
                self._size = 0
        if self._size and self._size + len(entry) > self._half:
            os.replace(current, self.directory / PREVIOUS)
            self._size = 0
        fd = os.open(current, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(entry)
            while view:
                view = view[os.write(fd, view) :]
            # The record leaves the spool once this returns: make its only copy durable.
            os.fsync(fd)
        finally:
            os.close(fd)
        self._size += len(entry)
        return current
