"""A scripted collector on a loopback port implementing monitor.wire, and test helpers."""

from __future__ import annotations

import collections
import gzip
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from monitor import wire


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` (generous: only a hang should hit it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


@dataclass
class Reply:
    """One scripted answer. ``hang`` sleeps before answering; ``drop`` closes the connection
    without an answer."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # JSON-able object, bytes, or None for the default collector body
    hang: float = 0.0
    drop: bool = False


@dataclass
class Request:
    path: str
    headers: dict[str, str]  # lower-cased names
    raw: bytes  # as on the wire
    body: Any  # decoded JSON (None if the body is not JSON)
    client_port: int
    at: float  # time.monotonic()
    status: int = 0  # what the server answered


Script = Reply | Callable[[Request], Reply | None]


class ScriptedCollector:
    """A tiny collector implementing ``monitor.wire`` with scriptable answers.

    GETs get their scripted answer only (an empty 200 when unscripted).

    Unscripted requests get the real collector's behaviour: records are deduplicated by id
    (``accepted``/``duplicate``) and stored with ``request_id`` defaulting to the id, labels
    are accepted, heartbeats answer 204, a body that is not JSON answers 400
    ``malformed_json``.
    """

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.records: dict[str, dict[str, Any]] = {}  # stored records by id
        self.labels: list[dict[str, Any]] = []
        self._scripts: dict[str, collections.deque[Script]] = collections.defaultdict(
            collections.deque
        )
        self._always: dict[str, Script] = {}
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes

            def do_POST(self) -> None:
                collector._handle(self)

            def do_GET(self) -> None:
                collector._handle(self)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients hanging up mid-answer (aborts, timeouts) are part of the tests

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    # -- scripting -------------------------------------------------------------------------

    def push(self, path: str, *replies: Script) -> None:
        """Answer the next requests to ``path`` with ``replies``, in order."""
        with self._lock:
            self._scripts[path].extend(replies)

    def always(self, path: str, reply: Script | None) -> None:
        """Answer every request to ``path`` with ``reply`` (after pushed ones); None resets."""
        with self._lock:
            if reply is None:
                self._always.pop(path, None)
            else:
                self._always[path] = reply

    # -- views -----------------------------------------------------------------------------

    def to(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def received_records(self) -> list[dict[str, Any]]:
        """Every record in every request to /v1/records, duplicates included."""
        return [rec for r in self.to(wire.RECORDS_PATH) for rec in r.body["records"]]

    # -- serving ---------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        raw = h.rfile.read(int(h.headers.get("Content-Length", "0")))
        headers = {k.lower(): v for k, v in h.headers.items()}
        data = gzip.decompress(raw) if headers.get("content-encoding") == "gzip" else raw
        try:
            decoded = json.loads(data)
        except ValueError:
            decoded = None
        req = Request(h.path, headers, raw, decoded, h.client_address[1], time.monotonic())
        with self._lock:
            self.requests.append(req)
            queue = self._scripts.get(h.path)
            script = queue.popleft() if queue else self._always.get(h.path)
        reply = script(req) if callable(script) else script
        if reply is None:
            reply = Reply()
        if reply.hang:
            time.sleep(reply.hang)
        if reply.drop:
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        body = reply.body
        if body is None and h.command == "GET":
            body = b"" if reply.status < 400 else None
        if body is None and 200 <= reply.status < 300 and req.body is None:
            # What the real collector answers to a body that is not JSON.
            reply = Reply(400, reply.headers)
            body = {"error": {"code": "malformed_json", "message": "not JSON", "details": {}}}
        elif body is None and 200 <= reply.status < 300:
            body = self._default_body(req)
        elif body is None:
            body = {"error": {"code": f"http_{reply.status}", "message": "scripted", "details": {}}}
        out = body if isinstance(body, bytes) else json.dumps(body).encode()
        status = 204 if h.path == wire.HEARTBEATS_PATH and reply.status == 200 else reply.status
        req.status = status
        h.send_response(status)
        for name, value in reply.headers.items():
            h.send_header(name, value)
        if status in (204, 304):
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(out)))
        h.end_headers()
        h.wfile.write(out)

    def _default_body(self, req: Request) -> Any:
        if req.path == wire.RECORDS_PATH:
            accepted = duplicate = 0
            with self._lock:
                for rec in req.body["records"]:
                    if rec["id"] in self.records:
                        duplicate += 1
                    else:
                        self.records[rec["id"]] = {
                            **rec,
                            "request_id": rec.get("request_id") or rec["id"],
                        }
                        accepted += 1
            return {"accepted": accepted, "duplicate": duplicate, "rejected": []}
        if req.path == wire.LABELS_PATH:
            with self._lock:
                self.labels.extend(req.body["labels"])
            return {"accepted": len(req.body["labels"])}
        return b""

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
