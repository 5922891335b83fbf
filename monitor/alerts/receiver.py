"""The built-in webhook receiver: verifies each signed message, deduplicates by webhook-id."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from monitor.alerts import signing

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True)
class Received:
    """One verified message, as received the first time."""

    message_id: str
    timestamp: int
    body: bytes
    payload: Any = field(default=None)
    #: The request's headers, names in lower case.
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def event_type(self) -> str:
        """The payload's ``type`` (``alert.fired``, ``webhook.test``...), or ``?``."""
        if isinstance(self.payload, dict):
            return str(self.payload.get("type", "?"))
        return "?"

    @property
    def summary(self) -> str:
        """The payload's Slack-style ``text`` (or its type when it has none)."""
        if isinstance(self.payload, dict) and isinstance(self.payload.get("text"), str):
            return str(self.payload["text"])
        return self.event_type

    def line(self) -> str:
        """The one line printed for this message."""
        return (
            f"webhook received and verified: {self.event_type} "
            f"{json.dumps(self.summary)} ({self.message_id})"
        )


class Receiver:
    """A threaded HTTP server on ``host:port`` that answers 204 to each verified message.

    A bad or missing signature gets 401; a message id seen before is acknowledged (204) without
    being reported again, as a receiver that deduplicates by ``webhook-id`` should. ``down``
    makes it answer 503 (a receiver that is there but failing); ``close`` stops it altogether.
    Tests set ``status`` and ``answer_headers`` to answer otherwise (a verified message answered
    with a non-2xx status is not counted as received), and ``stall_seconds`` to answer late.
    """

    def __init__(
        self,
        secret: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_message: Callable[[Received], None] | None = None,
        tolerance: int = signing.DEFAULT_TOLERANCE_SECONDS,
        status: int = 204,
    ) -> None:
        signing.secret_key(secret)  # a malformed secret fails here, not on the first message
        self.secret = secret
        self.on_message = on_message
        self.tolerance = tolerance
        self.status = status
        self.answer_headers: dict[str, str] = {}
        self.stall_seconds = 0.0
        self._release = threading.Event()
        self.down = False
        self.received: list[Received] = []
        self.requests = 0  # every POST that arrived, answered or not yet
        self.deliveries = 0  # every verified POST, duplicates included
        self.rejected = 0
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the one chosen by the system when 0 was asked)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Where to send messages."""
        host = str(self._server.server_address[0])
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}/"

    def start(self) -> Receiver:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (the CLI's ``webhooks receive``)."""
        self._server.serve_forever()

    def close(self) -> None:
        """Stop serving and free the port (a stalled answer is let go first)."""
        self._release.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def accept(self, headers: dict[str, str], body: bytes) -> int:
        """Judge one POST: the status to answer (204, 401, or 503 when down)."""
        if self.down:
            return 503
        try:
            message_id = signing.verify(self.secret, headers, body, tolerance=self.tolerance)
        except signing.SignatureError as exc:
            with self._lock:
                self.rejected += 1
            log.warning("webhook rejected: %s", exc)
            return 401
        if not 200 <= self.status < 300:
            return self.status
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = None
        message = Received(
            message_id=message_id,
            timestamp=int(headers.get("webhook-timestamp", "0")),
            body=body,
            payload=payload,
            headers=dict(headers),
        )
        with self._lock:
            self.deliveries += 1
            first = message_id not in self._seen
            if first:
                self._seen.add(message_id)
                self.received.append(message)
        if first and self.on_message is not None:
            self.on_message(message)
        return self.status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length > MAX_BODY_BYTES:
                    self._answer(413)
                    return
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests += 1
                headers = {k.lower(): v for k, v in self.headers.items()}
                if receiver.stall_seconds > 0:
                    receiver._release.wait(receiver.stall_seconds)
                self._answer(receiver.accept(headers, body))

            def _answer(self, status: int) -> None:
                self.send_response(status)
                if not 200 <= status < 300:
                    for name, value in receiver.answer_headers.items():
                        self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("receiver: " + format, *args)

        return Handler
