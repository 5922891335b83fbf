"""The local inference HTTP server of ``edge-monitor edge serve`` (stdlib, no web framework).

``POST /predict`` takes ``{"features": {...}, "request_id": "optional"}`` and answers
``{"request_id", "prediction", "probabilities", "model_version", "latency_ms"}`` (plus
``warnings`` when a value was served despite a problem: out of range, missing, unknown
category). ``GET /healthz`` answers ``{"status": "ok", "model", "model_version",
"telemetry"}``. ``GET /metrics`` answers Prometheus text (``monitor.runtime.metrics``).

Every request gets an answer, in the API's one envelope ``{"error": {"code", "message",
"details": [{"field", "message", "code"}]}}`` when it fails, counted in the runtime's
telemetry by the first detail's code:

================================  ======  ==================================================
problem                           status  code
================================  ======  ==================================================
body over 1 MiB                   413     ``payload_too_large`` (the body is not read)
no Content-Length                 411     ``length_required``
not JSON, not UTF-8, nested too   400     ``bad_request``
deep, a number of > 4300 digits
body shorter than its             400     ``bad_request`` (``incomplete_body``: the client
Content-Length                            closed its side)
request not in within             408     ``request_timeout`` (a slow or stalled client;
``request_timeout`` of its first          the connection is closed)
byte
wrong shape or bad feature        422     ``validation_failed`` (details: field path and
                                          kind, e.g. ``invalid_value`` for a number beyond
                                          float32 or a request id with a NUL character)
NaN/infinite probabilities        422     ``validation_failed``, ``non_finite_output`` on
from out-of-range features                the out-of-range features
unknown path / method             404/405 ``not_found`` / ``method_not_allowed``
malformed request line, headers   400,    the stdlib's protocol errors, in the envelope
too large, unknown method         414,
                                  431,
                                  501
inference failure                 500     ``inference_failed`` (``non_finite_output`` when
                                          the model gave NaN on in-range features)
================================  ======  ==================================================

A connection waits ``_Handler.timeout`` (30 s) for its next request; once a request's first
byte has arrived, the whole request (line, headers, body) must arrive within the server's
``request_timeout`` (default 10 s), so a slow client holds a thread for a bounded time
however it paces its bytes.
"""

from __future__ import annotations

import io
import json
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from monitor.card import ModelCard
from monitor.runtime.metrics import CONTENT_TYPE, RuntimeMetrics
from monitor.runtime.preprocess import InvalidInput, Issue
from monitor.runtime.runtime import EdgeRuntime, InferenceError, find_card

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
#: Seconds a request may take to arrive once its first byte has (line, headers and body).
REQUEST_TIMEOUT = 10.0
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


class _DeadlineReader(io.RawIOBase):
    """The connection's reads, each bounded by what is left of the request's deadline.

    A socket timeout bounds one ``recv``: a client sending a byte just before each timeout
    would hold its thread forever. Here every read waits at most until ``deadline``.
    """

    def __init__(self, inner: io.BufferedIOBase, connection: socket.socket) -> None:
        super().__init__()
        self._inner = inner
        self._connection = connection
        self.deadline: float | None = None  # time.monotonic() by which the request is in
        self.shortened = False  # the socket's timeout was changed to meet the deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request did not arrive in time")
            self._connection.settimeout(left)
            self.shortened = True
        return self._inner.readinto1(buffer)

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()


class PredictionServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one ``EdgeRuntime``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        runtime: EdgeRuntime,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        if not request_timeout > 0:
            raise ValueError("request_timeout must be positive")
        self.runtime = runtime
        self.request_timeout = request_timeout
        self.metrics = RuntimeMetrics(runtime)
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The stdlib prints a traceback to stderr; a client that resets its connection is
        # routine, anything else is a bug worth its traceback in the log.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            logger.debug("edge-monitor runtime: connection from %s: %s", client_address, exc)
        else:
            logger.error(
                "edge-monitor runtime: request from %s failed", client_address, exc_info=exc
            )

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
        self._reader = _DeadlineReader(self.rfile, self.connection)
        self._buffered = self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        """The stdlib's, with a deadline on the request once its first byte is in, and a 408
        (instead of a silent close) when the request line or headers miss it."""
        reader = self._reader
        if reader.shortened:  # back to the idle timeout between requests
            self.connection.settimeout(self.timeout)
            reader.shortened = False
        reader.deadline = None
        self.command, self.requestline, self.request_version = "", "", "HTTP/1.1"
        self._answered = False
        try:
            if not self._buffered.peek(1):
                self.close_connection = True
                return
        except TimeoutError:  # an idle keep-alive connection: nothing to answer
            self.close_connection = True
            return
        reader.deadline = time.monotonic() + self.server.request_timeout
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.raw_requestline.endswith(b"\n"):  # the client closed mid-line
                self.close_connection = True
                return
            if not self.parse_request():
                return  # parse_request answered with send_error
            method = getattr(self, "do_" + self.command, None)
            if method is None:
                self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"unsupported method {self.command!r}")
                return
            method()
            self.wfile.flush()
        except TimeoutError:
            self.close_connection = True
            if not self._answered:  # (a write that timed out leaves nothing to say)
                self.connection.settimeout(self.timeout)  # the answer gets the usual time
                self.server.runtime.count_error("request_timeout")
                self._fail(self._timed_out("request"))

    def _timed_out(self, part: str) -> _HTTPError:
        timeout = self.server.request_timeout
        return _HTTPError(
            408,
            "request_timeout",
            f"the {part} did not arrive within {timeout:g} s of its first byte",
            [{"field": part, "code": "request_timeout", "message": "too slow"}],
        )

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's protocol errors (bad request line, 414, 431, 501) in the envelope."""
        status = HTTPStatus(code)
        name = status.phrase.lower().replace("-", "_").replace(" ", "_")
        self.close_connection = True
        # A request line parse_request could not read leaves HTTP/0.9, which would make the
        # answer a bare body without its status line.
        self.request_version = "HTTP/1.1"
        self.server.runtime.count_error(name)
        self._fail(_HTTPError(code, name, message or status.phrase))

    def log_message(self, format: str, *args: Any) -> None:
        if logger.isEnabledFor(logging.DEBUG):  # called for every request: format lazily
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
        elif self.path.split("?", 1)[0] == "/metrics":
            self._send_bytes(200, self.server.metrics.render(), CONTENT_TYPE)
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
            detail = {"field": "model", "code": exc.kind, "message": str(exc)}
            self._fail(_HTTPError(500, "inference_failed", str(exc), [detail]))
        except Exception:
            logger.exception("edge-monitor runtime: /predict failed")
            runtime.count_error("internal")
            self._fail(_HTTPError(500, "internal_error", "internal error"))
        else:
            self.server.metrics.predicted(prediction.latency_ms / 1000.0)
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
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            self.connection.settimeout(self.timeout)  # the answer gets the usual time to go out
            raise self._timed_out("body") from None
        if len(body) < length:  # the client closed its side early
            self.close_connection = True
            raise _HTTPError(
                400,
                "bad_request",
                f"the body ended after {len(body)} of its {length} bytes (Content-Length)",
                [{"field": "body", "code": "incomplete_body", "message": "shorter than declared"}],
                kind="incomplete_body",
            )
        return body

    @staticmethod
    def _parse(body: bytes) -> tuple[Any, str | None]:
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _bad_body(f"the body is not JSON: {exc}", "not JSON") from None
        except RecursionError:
            raise _bad_body("the body is nested too deeply", "nested too deeply") from None
        except ValueError:  # Python refuses to read an integer of more than 4300 digits
            raise _bad_body("the body holds a number too long to read", "number too long") from None
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
            try:  # within the request's deadline, like any read
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
        self._answered = True
        try:
            body = json.dumps(payload, allow_nan=False).encode()
        except (TypeError, ValueError):  # a bug, but the client still gets an answer
            logger.exception("edge-monitor runtime: an answer could not be encoded")
            self.server.runtime.count_error("internal")
            status, body = 500, _INTERNAL_ERROR
        self._send_bytes(status, body, "application/json")

    def _send_bytes(self, status: int, body: bytes, content_type: str) -> None:
        self._answered = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


_INTERNAL_ERROR = json.dumps(
    {"error": {"code": "internal_error", "message": "internal error", "details": []}}
).encode()


def _bad_body(message: str, detail: str) -> _HTTPError:
    return _HTTPError(
        400, "bad_request", message, [{"field": "body", "code": "bad_request", "message": detail}]
    )


def make_server(
    runtime: EdgeRuntime,
    host: str = "127.0.0.1",
    port: int = 8760,
    *,
    request_timeout: float = REQUEST_TIMEOUT,
) -> PredictionServer:
    """A bound server (port 0: any free port; see ``.url``); call ``serve_forever()``."""
    return PredictionServer((host, port), runtime, request_timeout)


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

    With ``collector`` and ``token`` (the CLI reads it from ``--token-file`` or
    ``MONITOR_NODE_TOKEN``: see ``monitor.runtime.credentials``), records go through the SDK
    (one Monitor per model version, ``VersionedMonitors``), the runtime's telemetry rides on
    the heartbeats, and the assignment is polled every ``poll_interval`` seconds (0 disables
    polling).
    """
    factory = None
    if collector:
        from monitor.runtime.monitors import VersionedMonitors

        if not token:
            raise ValueError("a collector needs the node token")
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
