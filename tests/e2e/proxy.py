"""A loopback HTTP proxy that loses answers and resets connections at seeded rates.

It stands between SDK processes and the collector in the kill rig (tests/e2e/rig.py), playing
an unlucky network and load balancer. For each request, in the order requests arrive, one
seeded draw picks what happens to it:

* forward (``1 - drop_rate - reset_rate``): the request goes to the collector, its answer back;
* drop (``drop_rate``): the request goes to the collector, which answers (so the batch is
  stored), then the proxy closes the client's connection without a byte of the answer;
* reset (``reset_rate``): the client's connection is reset (``SO_LINGER`` 0, an RST) at one of
  three points drawn with it: before anything reaches the collector, halfway through sending
  the request to it (the collector's connection is reset too), or after the collector answered.

When the collector cannot be reached (it is being killed and restarted) the proxy answers
``502`` with the API's error envelope, as a load balancer with no healthy backend does, or, with
``upstream_down="close"``, closes the client's connection without answering.

The stream of decisions is a function of the seed alone; which request meets which decision
depends on thread scheduling, as it would on a real network.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

#: Longest request or status line, and longest header block, the proxy reads.
MAX_HEAD_BYTES = 64 * 1024
#: Where a reset happens: before forwarding, halfway through forwarding, after the answer.
RESET_POINTS = ("before", "midway", "after")


class ProtocolError(Exception):
    """A message the proxy cannot frame (it then closes the connection)."""


@dataclass
class ProxyStats:
    """What the proxy did, by kind (read under ``lock``, or after the proxy stopped)."""

    connections: int = 0
    requests: int = 0
    forwarded: int = 0  # answered by the collector (whatever the proxy did with the answer)
    answered: int = 0  # answers passed on to the client
    dropped_answers: int = 0
    resets: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESET_POINTS, 0))
    upstream_down: int = 0  # requests the collector could not be reached for, or died during
    statuses: dict[int, int] = field(default_factory=dict)  # the collector's answers by status
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        with self.lock:
            return {
                "connections": self.connections,
                "requests": self.requests,
                "forwarded": self.forwarded,
                "answered": self.answered,
                "dropped_answers": self.dropped_answers,
                "resets": dict(self.resets),
                "upstream_down": self.upstream_down,
                "statuses": dict(sorted(self.statuses.items())),
            }


@dataclass(frozen=True)
class Message:
    """One HTTP/1.1 message as raw bytes, with what framing needs to know about it."""

    head: bytes
    body: bytes
    method: str  # of a request; "" for an answer
    status: int  # of an answer; 0 for a request
    close: bool  # the sender said ``Connection: close`` (or HTTP/1.0 without keep-alive)

    @property
    def raw(self) -> bytes:
        return self.head + self.body


def _read_head(reader: BinaryIO) -> tuple[bytes, list[bytes]] | None:
    """The raw head (start line + headers + blank line) and its lines; None on a clean EOF."""
    lines: list[bytes] = []
    size = 0
    while True:
        line = reader.readline(MAX_HEAD_BYTES + 1)
        if not line:
            if not lines:
                return None
            raise ProtocolError("connection closed inside a message head")
        size += len(line)
        if size > MAX_HEAD_BYTES or not line.endswith(b"\n"):
            raise ProtocolError("message head too long")
        if line in (b"\r\n", b"\n"):
            if not lines:
                continue  # a stray blank line between messages (RFC 9112 allows skipping it)
            return b"".join([*lines, line]), lines
        lines.append(line)


def _headers(lines: list[bytes]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise ProtocolError(f"malformed header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


def _read_exact(reader: BinaryIO, n: int) -> bytes:
    data = reader.read(n)
    if len(data) != n:
        raise ProtocolError(f"connection closed after {len(data)} of {n} body bytes")
    return data


def _read_chunked(reader: BinaryIO) -> bytes:
    """A chunked body as raw bytes, framing included (it is passed on as it came)."""
    parts: list[bytes] = []
    while True:
        size_line = reader.readline(MAX_HEAD_BYTES)
        if not size_line.endswith(b"\n"):
            raise ProtocolError("bad chunk size line")
        parts.append(size_line)
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise ProtocolError(f"bad chunk size {size_line!r}") from exc
        if size == 0:
            while True:  # trailers, then the blank line
                trailer = reader.readline(MAX_HEAD_BYTES)
                if not trailer.endswith(b"\n"):
                    raise ProtocolError("connection closed inside trailers")
                parts.append(trailer)
                if trailer in (b"\r\n", b"\n"):
                    return b"".join(parts)
        parts.append(_read_exact(reader, size + 2))


def read_message(reader: BinaryIO, *, request_method: str | None = None) -> Message | None:
    """Read one request (``request_method`` None) or the answer to ``request_method``.

    Returns None on a clean end of stream before the message began.
    """
    got = _read_head(reader)
    if got is None:
        return None
    head, lines = got
    start = lines[0].decode("latin-1").split()
    if len(start) < 2:
        raise ProtocolError(f"malformed start line {lines[0]!r}")
    headers = _headers(lines)
    connection = headers.get("connection", "").lower()
    if request_method is None:
        method, version = start[0], start[-1]
        status = 0
    else:
        method, version = "", start[0]
        try:
            status = int(start[1])
        except ValueError as exc:
            raise ProtocolError(f"malformed status line {lines[0]!r}") from exc
    close = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
    if request_method is not None and (
        request_method == "HEAD" or 100 <= status < 200 or status in (204, 304)
    ):
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = _read_chunked(reader)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError as exc:
            raise ProtocolError("bad Content-Length") from exc
        body = _read_exact(reader, length)
    elif request_method is None:
        body = b""  # a request without a length has no body
    else:
        body = reader.read()  # an answer without a length runs to the end of the connection
        close = True
    return Message(head, body, method, status, close)


def _reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN: the peer sees ECONNRESET."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


BAD_GATEWAY_BODY = json.dumps(
    {
        "error": {
            "code": "bad_gateway",
            "message": "the collector could not be reached (kill rig proxy)",
            "details": {},
        }
    }
).encode()
BAD_GATEWAY = (
    b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(BAD_GATEWAY_BODY)}\r\nConnection: close\r\n\r\n".encode()
    + BAD_GATEWAY_BODY
)


class FaultyProxy:
    """The proxy, serving on a loopback port from its own threads (``start``/``close``).

    Args:
        upstream_port: the collector's port on 127.0.0.1.
        drop_rate: share of requests whose answer is dropped after the collector gave it.
        reset_rate: share of requests whose client connection is reset (see ``RESET_POINTS``).
        seed: seeds the decisions.
        upstream_down: ``"502"`` (answer 502, like a load balancer) or ``"close"``.
        upstream_timeout: seconds to wait for the collector's answer.
    """

    def __init__(
        self,
        upstream_port: int,
        *,
        drop_rate: float = 0.0,
        reset_rate: float = 0.0,
        seed: int = 0,
        upstream_down: Literal["502", "close"] = "502",
        upstream_timeout: float = 60.0,
    ) -> None:
        if not (0.0 <= drop_rate <= 1.0 and 0.0 <= reset_rate <= 1.0):
            raise ValueError("drop_rate and reset_rate must be in [0, 1]")
        if drop_rate + reset_rate > 1.0:
            raise ValueError("drop_rate + reset_rate must be at most 1")
        if upstream_down not in ("502", "close"):
            raise ValueError(f"upstream_down must be '502' or 'close', got {upstream_down!r}")
        self.upstream = ("127.0.0.1", upstream_port)
        self.drop_rate = drop_rate
        self.reset_rate = reset_rate
        self.upstream_down = upstream_down
        self.upstream_timeout = upstream_timeout
        self.stats = ProxyStats()
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # the accept loop polls the stop flag this often
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultyProxy:
        self._acceptor.start()
        return self

    def close(self) -> None:
        """Stop accepting, cut every open connection, wait for the threads."""
        self._stop.set()
        if self._acceptor.is_alive():
            self._acceptor.join(5)
        self._listener.close()
        with self._live_lock:
            live = list(self._live)
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def decide(self) -> tuple[str, str]:
        """The next decision: ("forward" | "drop" | "reset", reset point or "")."""
        with self._rng_lock:
            u = self._rng.random()
            if u < self.reset_rate:
                return "reset", self._rng.choice(RESET_POINTS)
            if u < self.reset_rate + self.drop_rate:
                return "drop", ""
            return "forward", ""

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self.stats.lock:
                self.stats.connections += 1
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()

    def _track(self, sock: socket.socket) -> None:
        with self._live_lock:
            self._live.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._live_lock:
            self._live.discard(sock)

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        upstream: socket.socket | None = None
        up_reader: BinaryIO | None = None
        reader: BinaryIO = client.makefile("rb")
        try:
            while not self._stop.is_set():
                try:
                    request = read_message(reader)
                except (OSError, ProtocolError):
                    return
                if request is None:
                    return
                action, point = self.decide()
                with self.stats.lock:
                    self.stats.requests += 1
                    if action == "reset":
                        self.stats.resets[point] += 1
                if action == "reset" and point == "before":
                    reader.close()
                    _reset(client)
                    return
                if upstream is None:
                    try:
                        upstream = socket.create_connection(self.upstream, timeout=5)
                    except OSError:
                        self._collector_down(client)
                        return
                    upstream.settimeout(self.upstream_timeout)
                    self._track(upstream)
                    up_reader = upstream.makefile("rb")
                assert up_reader is not None
                if action == "reset" and point == "midway":
                    raw = request.raw
                    with contextlib.suppress(OSError):
                        upstream.sendall(raw[: len(request.head) + len(request.body) // 2])
                    up_reader.close()
                    _reset(upstream)
                    reader.close()
                    _reset(client)
                    return
                try:
                    upstream.sendall(request.raw)
                    answer = read_message(up_reader, request_method=request.method)
                except (OSError, ProtocolError):
                    answer = None
                if answer is None:  # the collector died with the request (or closed idle)
                    self._collector_down(client)
                    return
                with self.stats.lock:
                    self.stats.forwarded += 1
                    statuses = self.stats.statuses
                    statuses[answer.status] = statuses.get(answer.status, 0) + 1
                if action == "drop":
                    with self.stats.lock:
                        self.stats.dropped_answers += 1
                    return  # the finally block closes the client's connection with a FIN
                if action == "reset":  # point == "after"
                    reader.close()
                    _reset(client)
                    return
                try:
                    client.sendall(answer.raw)
                except OSError:
                    return
                with self.stats.lock:
                    self.stats.answered += 1
                if request.close or answer.close:
                    return
        finally:
            with contextlib.suppress(OSError):
                reader.close()
            with contextlib.suppress(OSError):
                client.close()
            self._untrack(client)
            if upstream is not None:
                if up_reader is not None:
                    with contextlib.suppress(OSError):
                        up_reader.close()
                with contextlib.suppress(OSError):
                    upstream.close()
                self._untrack(upstream)

    def _collector_down(self, client: socket.socket) -> None:
        with self.stats.lock:
            self.stats.upstream_down += 1
        if self.upstream_down == "502":
            with contextlib.suppress(OSError):
                client.sendall(BAD_GATEWAY)
