"""HTTP to the collector: keep-alive requests, gzip, bounded answers, status classes, backoff."""

from __future__ import annotations

import contextlib
import email.utils

# socket.getaddrinfo imports this codec on first use, under the import system's lock for that
# module; a sender thread caught there when the host forks leaves the child's copy of that lock
# held forever, and every connection the child makes then hangs. Imported here, once, it is
# never imported lazily by a sender (the same fix as requests' and urllib3's).
import encodings.idna  # noqa: F401
import enum
import http.client
import json
import os
import random
import socket
import threading
import time
import weakref
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from monitor.wire import RETRYABLE_STATUSES, TOO_LARGE_STATUS

USER_AGENT = "edge-monitor-sdk/1"
#: Longest Retry-After honoured; protects the spool from a server asking for days of silence.
MAX_RETRY_AFTER = 3600.0

#: Failures of the connection itself: always retried with backoff.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes ConnectionError, socket.timeout and ssl.SSLError
    http.client.HTTPException,
)


#: HTTP statuses that say the node's token was refused (unknown, revoked, not yet issued).
AUTH_STATUSES = frozenset({401, 403})


class Outcome(enum.Enum):
    """What the sender does after an answer."""

    OK = "ok"  # acknowledged: count the answer's accepted/duplicate/rejected
    RETRY = "retry"  # the collector is busy or unreachable: the same batch again after a backoff
    AUTH = "auth"  # the token was refused: keep the batch, retry with a long capped backoff
    SERVER_ERROR = "server_error"  # the collector failed on this batch: retry, then isolate
    SPLIT = "split"  # too large: send each half on its own
    REJECT = "reject"  # the collector refuses the batch for good: drop it


def classify(status: int) -> Outcome:
    """The sender's reaction to an HTTP status.

    ``wire.RETRYABLE_STATUSES`` (408, 429, 502, 503, 504) say the collector is busy, down or
    being deployed: the batch is fine, so it waits and goes again as it is. 401 and 403 say
    the token was refused (a token being rotated, a revocation being undone): the data is kept
    too. Every other 5xx (500, 501, 505...) is a collector failure that may be caused by the
    batch itself; ``sender.Sender`` retries it and, if it keeps failing while other batches
    succeed, isolates the record that causes it. Unexpected 1xx/3xx statuses (for example a
    redirect from a misconfigured URL) are retried like a busy collector: an operator can fix
    the configuration without the node having thrown its data away.
    """
    if 200 <= status < 300:
        return Outcome.OK
    if status == TOO_LARGE_STATUS:
        return Outcome.SPLIT
    if status in RETRYABLE_STATUSES:
        return Outcome.RETRY
    if status in AUTH_STATUSES:
        return Outcome.AUTH
    if 400 <= status < 500:
        return Outcome.REJECT
    if 500 <= status < 600:
        return Outcome.SERVER_ERROR
    return Outcome.RETRY


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now()
    if seconds != seconds:  # NaN
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


#: Share of a Retry-After added at random on top of it, so that the nodes a collector turned
#: away together do not all come back in the same instant.
RETRY_AFTER_JITTER = 0.2


@dataclass
class Backoff:
    """Exponential backoff with full jitter; a Retry-After value (plus jitter) is a floor."""

    base: float = 0.5
    cap: float = 60.0
    rng: random.Random | None = None

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to sleep before retry number ``attempt`` (0 for the first retry).

        ``uniform(0, min(cap, base * 2**attempt))``; when the server sent ``Retry-After``
        (already capped at ``MAX_RETRY_AFTER`` by ``parse_retry_after``), at least that much
        plus up to ``RETRY_AFTER_JITTER`` of it.
        """
        rng = self.rng or random
        ceiling = min(self.cap, self.base * 2.0 ** min(max(attempt, 0), 60))
        sleep = rng.uniform(0.0, ceiling)
        if retry_after is not None and retry_after > 0:
            sleep = max(sleep, retry_after * (1.0 + RETRY_AFTER_JITTER * rng.random()))
        return sleep


def gzip_encode(payload: bytes, level: int) -> bytes:
    """A gzip member (mtime 0) of ``payload``, deflated with the ``Z_FILTERED`` strategy.

    Records are mostly short numbers between repeated keys; Z_FILTERED makes deflate prefer
    literals to short matches there, which took a 500-record batch from 0.154 to 0.149 of its
    JSON size at level 6 for the same CPU (P2 in BENCHMARKS.md; levels 1-3 ignore the
    strategy). Any gzip decoder reads it.
    """
    compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS, 8, zlib.Z_FILTERED)
    return compressor.compress(payload) + compressor.flush()


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes
    #: The answer had more than the request's ``max_bytes``; ``body`` is empty or cut there.
    truncated: bool = False

    def retry_after(self) -> float | None:
        """Seconds the server asked to wait (``Retry-After``), or None."""
        return parse_retry_after(self.headers.get("retry-after"))

    def json(self) -> Any:
        """The decoded JSON body, or None if there is none or it is not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def error_code(self) -> str | None:
        """``error.code`` of the API's error envelope, if the body is one."""
        data = self.json()
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            code = data["error"].get("code")
            return str(code) if code is not None else None
        return None


def parse_url(url: str) -> tuple[str, str, int | None, str]:
    """(scheme, host, port, base path) of a collector URL; ValueError if unusable."""
    if not isinstance(url, str):
        raise ValueError("url must be a str")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"url must be http:// or https://, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"url has no host: {url!r}")
    port = parts.port  # raises ValueError for a bad port
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")


#: Piece size for bounded reads: an answer is never allocated at its limit up front.
_READ_CHUNK = 1024 * 1024

_transports: weakref.WeakSet[Transport] = weakref.WeakSet()


def _forget_connections_after_fork() -> None:
    for transport in list(_transports):
        with contextlib.suppress(Exception):
            transport.forget_after_fork()


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_forget_connections_after_fork)


def _read_body(resp: http.client.HTTPResponse, limit: int | None) -> tuple[bytes, bool]:
    """The answer's body and whether it was longer than ``limit`` bytes (then cut there)."""
    if limit is None:
        return resp.read(), False
    if resp.length is not None and resp.length > limit:
        return b"", True  # declared too long: not a byte of it is worth downloading
    parts: list[bytes] = []
    got = 0
    while got <= limit:
        piece = resp.read(min(_READ_CHUNK, limit + 1 - got))
        if not piece:
            return b"".join(parts), False
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)[:limit], True


class Transport:
    """One keep-alive connection to the collector, used by a single thread at a time.

    Every request carries the node token, so redirects are never followed: a 3xx answer is
    handed back as it is (http.client does not follow them) and the token never leaves for
    another host. ``abort()`` may be called from another thread to break off a request in
    flight (close() uses it to honour its deadline). After ``os.fork()`` the child's copy
    drops the inherited connection (without shutting down the parent's socket) and opens
    its own on its next request.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 10.0,
        gzip_level: int = 6,
        ssl_context: Any = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.scheme, self.host, self.port, self.base_path = parse_url(url)
        self.timeout = timeout
        self.gzip_level = gzip_level
        self._ssl_context = ssl_context
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "User-Agent": user_agent,
        }
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()  # guards _conn against abort() from another thread
        self._aborted = False
        _transports.add(self)

    def encode(self, payload: bytes) -> bytes:
        """The body as sent: gzip-compressed unless gzip_level is 0 (see ``gzip_encode``)."""
        if self.gzip_level <= 0:
            return payload
        return gzip_encode(payload, self.gzip_level)

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self.scheme == "https":
            import ssl  # only nodes that talk TLS pay for loading it

            context = self._ssl_context or ssl.create_default_context()
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def post(self, path: str, body: bytes, *, timeout: float | None = None) -> Response:
        """POST an already encoded JSON body; raises one of TRANSPORT_ERRORS if no answer came."""
        headers = {"Content-Type": "application/json"}
        if self.gzip_level > 0:
            headers["Content-Encoding"] = "gzip"
        return self.request("POST", path, body=body, headers=headers, timeout=timeout)

    def get(
        self,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        max_bytes: int | None = None,
        timeout: float | None = None,
    ) -> Response:
        """GET ``path`` (e.g. with ``If-None-Match``); see ``request``."""
        return self.request("GET", path, headers=headers, max_bytes=max_bytes, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        max_bytes: int | None = None,
        timeout: float | None = None,
    ) -> Response:
        """One request to ``base path + path``; raises one of TRANSPORT_ERRORS if no answer came.

        ``headers`` add to (or replace) the defaults, never the token. At most ``max_bytes``
        of the answer's body are read: a longer one comes back ``truncated`` (cut there, or
        empty when its Content-Length already said so) and its connection is closed.
        """
        timeout = self.timeout if timeout is None else max(0.001, timeout)
        sent = {**self._headers, **(headers or {})}
        sent["Authorization"] = self._headers["Authorization"]
        for attempt in (0, 1):
            with self._lock:
                if self._aborted:
                    raise ConnectionAbortedError("transport closed")
                reused = self._conn is not None
                if self._conn is None:
                    self._conn = self._connect(timeout)
                conn = self._conn
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            else:
                conn.timeout = timeout
            try:
                conn.request(method, self.base_path + path, body=body, headers=sent)
                resp = conn.getresponse()
                data, truncated = _read_body(resp, max_bytes)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._drop(conn)
                # The server may close an idle keep-alive connection just as we reuse it;
                # one immediate retry on a fresh connection is safe (batches are idempotent,
                # and so is every GET).
                if reused and attempt == 0:
                    continue
                raise
            except BaseException:
                self._drop(conn)
                raise
            if resp.will_close or truncated:  # unread bytes would poison the next answer
                self._drop(conn)
            headers_out = {k.lower(): v for k, v in resp.getheaders()}
            return Response(resp.status, headers_out, data, truncated)
        raise AssertionError("unreachable")  # pragma: no cover

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if self._conn is conn:
                self._conn = None
        with contextlib.suppress(Exception):
            conn.close()

    def forget_after_fork(self) -> None:
        """In a forked child: close the child's copy of the parent's connection.

        Only the descriptor is closed: no ``shutdown()``, which would cut the parent's socket
        too, and the lock is new, since a parent thread may have held it at the fork.
        """
        self._lock = threading.Lock()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def abort(self) -> None:
        """Break off any request in flight and refuse new ones."""
        with self._lock:
            self._aborted = True
            conn, self._conn = self._conn, None
        if conn is not None:
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
