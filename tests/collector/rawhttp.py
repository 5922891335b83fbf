"""HTTP/1.1 by hand over a socket, for requests no client library sends: headers that never end,
bodies that stop half-way, connections dropped mid-body."""

from __future__ import annotations

import json
import socket
import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def connect(url: str, timeout: float = 30.0) -> socket.socket:
    """A connection to the collector at ``url``; ``timeout`` is a deadline for progress."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def head(path: str, headers: dict[str, str], *, method: str = "POST") -> bytes:
    """A request line and headers, complete (ending in an empty line)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: collector"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_answer(sock: socket.socket, received: bytes = b"") -> RawAnswer:
    """One response (sized by Content-Length) that begins with ``received`` and goes on in
    ``sock``; raises ConnectionError on EOF before it."""
    data = received
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before an answer (got {data!r})")
        data += chunk
    top, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = top.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return RawAnswer(int(status_line.split()[1]), headers, rest[:length])


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server closed the connection (EOF or reset), reading whatever is left."""
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset instead of an orderly shutdown (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
