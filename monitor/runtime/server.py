"""The local inference HTTP server of ``edge-monitor edge serve`` (stdlib, no web framework).

``POST /predict`` takes ``{"features": {...}, "request_id": "optional"}`` and answers
``{"request_id", "prediction", "probabilities", "model_version", "latency_ms"}`` (plus
``warnings`` when a value was served despite a problem: out of range, missing, unknown
category). ``GET /healthz`` answers ``{"status": "ok", "model", "model_version",
"telemetry"}``.

Errors use the API's one envelope ``{"error": {"code", "message", "details": [{"field",
"message", "code"}]}}`` and are counted in the runtime's telemetry by code:

==========================  ======  ========================================================
problem                     status  code
==========================  ======  ========================================================
body over 1 MiB             413     ``payload_too_large`` (the body is not read)
no Content-Length           411     ``length_required``
not JSON / not UTF-8        400     ``bad_request``
wrong shape or bad feature  422     ``validation_failed`` (details: field path and kind)
unknown path / method       404/405 ``not_found`` / ``method_not_allowed``
inference failure           500     ``inference_failed``
==========================  ======  ========================================================
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from monitor.card import ModelCard
from monitor.runtime.preprocess import InvalidInput, Issue
from monitor.runtime.runtime import EdgeRuntime, InferenceError, find_card

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
_REQUEST_KEYS = frozenset({"features", "request_id"})


#: An oversized body up to this size is read and discarded after the 413, so the client sees
#: the answer (closing a socket with unread data makes the kernel reset the connection).
MAX_DISCARD_BYTES = 16 * 1024 * 1024


class _HTTPError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, str]] | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.kind = kind or code  # what the telemetry counts it as


class PredictionServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one ``EdgeRuntime``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], runtime: EdgeRuntime) -> None:
        self.runtime = runtime
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        # What server_bind stored in server_address, which is typed for every socket family.
        host, port = self.socket.getsockname()[:2]
        return f"http://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: PredictionServer
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection per thread
    server_version = "edge-monitor-runtime/1"
    timeout = 30.0  # seconds a connection may stay silent, so idle clients free their thread

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two writes; without NODELAY, Nagle's algorithm holds the
        # body until the client's delayed ACK, ~40 ms per keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/healthz":
            runtime = self.server.runtime
            self._send(
                200,
                {
                    "status": "ok",
                    "model": runtime.model_name,
                    "model_version": runtime.model_version,
                    "telemetry": runtime.telemetry(),
                },
            )
        elif self.path.split("?", 1)[0] == "/predict":
            self._fail(_HTTPError(405, "method_not_allowed", "use POST /predict"))
        else:
            self._fail(_HTTPError(404, "not_found", f"no such path: {self.path}"))

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/predict":
            self._fail(_HTTPError(404, "not_found", f"no such path: {self.path}"))
            return
        runtime = self.server.runtime
        self._unread = 0
        try:
            body = self._read_body()
            features, request_id = self._parse(body)
            prediction = runtime.predict(features, request_id=request_id)
        except _HTTPError as exc:
            runtime.count_error(exc.kind)
            self._fail(exc)
            self._discard_body()
        except InvalidInput as exc:  # counted by the runtime, by kind
            self._fail(
                _HTTPError(
                    422,
                    "validation_failed",
                    str(exc),
                    [issue.to_dict() for issue in exc.issues],
                )
            )
        except InferenceError as exc:  # counted by the runtime
            self._fail(_HTTPError(500, "inference_failed", str(exc)))
        except Exception:
            logger.exception("edge-monitor runtime: /predict failed")
            runtime.count_error("internal")
            self._fail(_HTTPError(500, "internal_error", "internal error"))
        else:
            self._send(200, prediction.to_dict())

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise _HTTPError(411, "length_required", "send the body with a Content-Length")
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise _HTTPError(411, "length_required", "send the body with a Content-Length")
        try:
            length = int(raw)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise _HTTPError(400, "bad_request", "invalid Content-Length") from None
        if length > MAX_BODY_BYTES:
            # No new request on this connection: the body is only drained (or not at all).
            self.close_connection = True
            self._unread = length
            raise _HTTPError(
                413,
                "payload_too_large",
                f"body of {length} bytes exceeds {MAX_BODY_BYTES}",
                [{"field": "body", "code": "payload_too_large", "message": "over 1 MiB"}],
            )
        return self.rfile.read(length)

    @staticmethod
    def _parse(body: bytes) -> tuple[Any, str | None]:
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _HTTPError(
                400,
                "bad_request",
                f"the body is not JSON: {exc}",
                [{"field": "body", "code": "bad_request", "message": "not JSON"}],
            ) from None
        if not isinstance(data, dict):
            issues = [Issue("body", "not_an_object", "must be a JSON object")]
        else:
            issues = [
                Issue(str(key), "unknown_field", "not a field of a predict request")
                for key in data
                if key not in _REQUEST_KEYS
            ]
            if "features" not in data:
                issues.append(Issue("features", "missing_field", "required"))
        if issues:
            raise _HTTPError(
                422,
                "validation_failed",
                "; ".join(f"{i.field}: {i.message}" for i in issues),
                [i.to_dict() for i in issues],
                kind=issues[0].code,
            )
        return data["features"], data.get("request_id")

    def _discard_body(self) -> None:
        length = getattr(self, "_unread", 0)
        if 0 < length <= MAX_DISCARD_BYTES:
            try:
                self.connection.settimeout(2.0)
                while length > 0:
                    chunk = self.rfile.read(min(length, 65536))
                    if not chunk:
                        break
                    length -= len(chunk)
            except OSError:
                pass

    def _fail(self, exc: _HTTPError) -> None:
        self._send(
            exc.status,
            {"error": {"code": exc.code, "message": exc.message, "details": exc.details}},
        )

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, allow_nan=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


def make_server(
    runtime: EdgeRuntime, host: str = "127.0.0.1", port: int = 8760
) -> PredictionServer:
    """A bound server (port 0: any free port; see ``.url``); call ``serve_forever()``."""
    return PredictionServer((host, port), runtime)


def serve_in_thread(server: PredictionServer, poll_interval: float = 0.1) -> threading.Thread:
    """Run ``server.serve_forever`` in a daemon thread; ``shutdown()`` takes <= poll_interval."""
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": poll_interval},
        name="edge-serve",
        daemon=True,
    )
    thread.start()
    return thread


def run(
    model: str,
    card: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8760,
    collector: str | None = None,
    token: str | None = None,
    sample_rate: float = 1.0,
    poll_interval: float = 30.0,
    threads: int = 1,
    spool_dir: str | None = None,
    ready: Callable[[PredictionServer], None] | None = None,
) -> None:
    """``edge serve``: serve until SIGINT/SIGTERM, logging and hot-swapping via the collector.

    With ``collector`` and ``token``, records go through the SDK (one Monitor per model
    version, ``VersionedMonitors``), the runtime's telemetry rides on the heartbeats, and the
    assignment is polled every ``poll_interval`` seconds (0 disables polling).
    """
    factory = None
    if collector:
        from monitor.runtime.monitors import VersionedMonitors

        if not token:
            raise ValueError("--collector needs --token (the node token)")
        probe = ModelCard.load(card if card is not None else find_card(model))
        factory = VersionedMonitors(
            collector,
            token,
            probe.name,
            spool_root=spool_dir,
            sample_rate=sample_rate,
        )
    runtime = EdgeRuntime(model, card, monitor=factory, threads=threads)
    updater = None
    if collector and token and poll_interval > 0:
        from monitor.runtime.updates import ModelUpdater

        updater = ModelUpdater(runtime, collector, token, interval=poll_interval).start()
    server = make_server(runtime, host, port)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    thread = serve_in_thread(server)
    try:
        if ready is not None:
            ready(server)
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if updater is not None:
            updater.close()
        server.shutdown()
        thread.join(5.0)
        server.server_close()
        runtime.close()
