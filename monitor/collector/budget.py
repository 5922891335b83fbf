"""The memory budget of request bodies: admit what fits in one process, refuse the rest at once.

A body costs its wire size while it is read, then ``BODY_MEMORY_FACTOR`` times its decoded size
while it is decoded, parsed, validated and stored (JSON records in Python objects weigh about
ten times their text). The sum over the requests in progress stays within the budget; a request
that does not fit is answered 503 ``busy`` with Retry-After instead of waiting in an unbounded
queue. The last part of the budget is kept for small bodies, so that a few huge bodies cannot
crowd out the ordinary batches of healthy nodes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from monitor.collector.body import decode_json, read_body
from monitor.config import BODY_MEMORY_FACTOR, BODY_MEMORY_HEADROOM, Settings
from monitor.errors import BadRequest, PayloadTooLarge, Unavailable

log = logging.getLogger(__name__)

#: Seconds a refused request is asked to wait before sending again.
BUSY_RETRY_AFTER = 2
#: A request that held at least this much gives memory back to the system when it ends.
_TRIM_AFTER = 16 * 1024 * 1024
#: The smallest gzip member: a 10-byte header, an empty deflate block and the 8-byte trailer.
_GZIP_MIN = 18


class BodyBudget:
    """Bytes of request bodies in progress in this process, bounded by ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # Bodies above ``small`` may fill the budget only up to ``large_ceiling``.
        self.small = limit // (BODY_MEMORY_HEADROOM * 4)
        self.large_ceiling = limit - limit // BODY_MEMORY_HEADROOM
        self._in_use = 0
        self._lock = threading.Lock()
        self._trimming = False

    @property
    def in_use(self) -> int:
        return self._in_use

    def try_resize(self, held: int, wanted: int) -> bool:
        """Change one request's share from ``held`` to ``wanted`` bytes, if it fits."""
        with self._lock:
            total = self._in_use - held + wanted
            ceiling = self.limit if wanted <= self.small else self.large_ceiling
            if wanted > held and total > ceiling:
                return False
            self._in_use = total
            return True

    def release(self, held: int) -> None:
        """Give back a finished request's share; a large one hands freed memory back to the
        system once no other large body is in progress (glibc keeps freed heap pages)."""
        with self._lock:
            self._in_use -= held
            trim = held >= _TRIM_AFTER and self._in_use < _TRIM_AFTER and not self._trimming
            if trim:
                self._trimming = True
        if trim:
            threading.Thread(target=self._trim, name="collector-malloc-trim", daemon=True).start()

    def _trim(self) -> None:
        try:
            _malloc_trim()
        finally:
            with self._lock:
                self._trimming = False


@dataclass
class ReadBody:
    """A body read within the budget: its bytes as sent, their encoding, and the limit its
    decoding is held to (the size it announced, so it cannot outgrow its reservation)."""

    raw: bytes
    encoding: str
    decoded_limit: int
    max_decoded_bytes: int

    def decode(self) -> Any:
        """The parsed JSON (call it off the event loop)."""
        raw, self.raw = self.raw, b""  # the parsed body replaces the bytes in memory
        try:
            return decode_json(raw, self.encoding, max_decoded_bytes=self.decoded_limit)
        except PayloadTooLarge:
            if self.decoded_limit >= self.max_decoded_bytes:
                raise
            # Only a gzip body decodes to more than its own trailer says: it is corrupt.
            raise BadRequest(
                "gzip body decodes to more than the size its trailer states",
                code="bad_gzip",
                details=[{"field": "body", "message": "inconsistent gzip size trailer"}],
            ) from None


@contextlib.asynccontextmanager
async def read_within_budget(
    request: Request, budget: BodyBudget, settings: Settings
) -> AsyncIterator[ReadBody]:
    """Read the request's body holding its share of ``budget`` until the block ends.

    Raises ``Unavailable`` (503 ``busy``) when the body does not fit, before reading it when
    its declared length does not fit, else as soon as its decoded size is known."""
    held = 0
    try:
        declared = request.headers.get("content-length", "")
        wire = int(declared) if declared.isdigit() else settings.max_wire_bytes
        # A declared length beyond the limit is read_body's 413, not a reason to be busy.
        held = _reserve(budget, held, min(wire, settings.max_wire_bytes))
        raw, encoding = await read_body(request, max_wire_bytes=settings.max_wire_bytes)
        decoded = min(decoded_size_hint(raw, encoding), settings.max_decoded_bytes)
        held = _reserve(budget, held, len(raw) + BODY_MEMORY_FACTOR * decoded)
        limit = decoded if encoding == "gzip" else settings.max_decoded_bytes
        yield ReadBody(raw, encoding, limit, settings.max_decoded_bytes)
    finally:
        budget.release(held)


def decoded_size_hint(raw: bytes, encoding: str) -> int:
    """The size ``raw`` decodes to: its own length, or the size a gzip member's trailer states
    (ISIZE, the last four bytes, little-endian); decoding then holds the body to it."""
    if encoding != "gzip":
        return len(raw)
    if len(raw) < _GZIP_MIN:
        return 0
    return int.from_bytes(raw[-4:], "little")


def _reserve(budget: BodyBudget, held: int, wanted: int) -> int:
    if budget.try_resize(held, wanted):
        return wanted
    raise Unavailable(
        "the collector is busy with other large requests; retry later",
        code="busy",
        retry_after=BUSY_RETRY_AFTER,
        details=[{"field": "body", "message": f"{wanted} bytes do not fit in the body budget"}],
    )


def _load_malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim  # glibc only; musl and others have none
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_malloc_trim()


def _malloc_trim() -> None:
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
        log.debug("returned freed heap memory to the system (malloc_trim)")
