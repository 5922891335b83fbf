"""The collector's HTTP protocol: uvicorn's, plus deadlines for headers and bodies and a bound
on header size, so slow or endless requests cannot hold connections and memory.

uvicorn closes idle keep-alive connections but has no deadline for a request that is still
arriving: a connection may take minutes over its headers (or never send a byte), drip its body,
and httptools buffers headers without limit. This protocol keeps one timer per connection:
complete headers are due ``header_timeout`` after the connection opens or the next request's
first byte, and the complete body ``body_timeout`` after the headers. A late request is answered
408 and its connection closed; headers beyond ``max_header_bytes`` are answered 431.
"""

from __future__ import annotations

import asyncio
import functools
import http
import json
import logging
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from monitor.collector.metrics import HEADERS_ROUTE, Metrics
from monitor.config import Settings
from monitor.errors import envelope

log = logging.getLogger(__name__)

#: Scope key set when the body deadline passed: the app's disconnect counts as a 408.
BODY_TIMED_OUT = "edge_monitor.body_timed_out"


def http_protocol(settings: Settings) -> type[asyncio.Protocol]:
    """The protocol factory to give uvicorn as ``http=`` (picklable, for worker processes)."""
    factory = functools.partial(
        CollectorHttpProtocol,
        header_timeout=settings.header_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
        max_header_bytes=settings.max_header_bytes,
    )
    # uvicorn calls it with (config=, server_state=, app_state=, _loop=) like a class.
    return cast(type[asyncio.Protocol], factory)


class CollectorHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline, a body deadline and a header cap."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        header_timeout: float,
        body_timeout: float,
        max_header_bytes: int,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_header_bytes = max_header_bytes
        self._deadline: asyncio.TimerHandle | None = None
        self._in_headers = False
        self._header_bytes = 0
        self._began_in_chunk = False
        self._metrics = _metrics_of(self.app)

    # --- connection events ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that never sends a byte is held to the header deadline too.
        self._arm(self.header_timeout, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._began_in_chunk = False
        super().data_received(data)
        # The chunk a request began in is not counted (its start may be the previous body):
        # the bound is max_header_bytes plus one read, at most 256 KiB in asyncio.
        if self._in_headers and not self._began_in_chunk and not self.transport.is_closing():
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes:
                self._refuse(
                    431, "headers_too_large", f"headers larger than {self.max_header_bytes} bytes"
                )

    # --- parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0
        self._began_in_chunk = True
        if self._deadline is None:
            self._arm(self.header_timeout, self._headers_late)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm()
        super().on_headers_complete()
        self._arm(self.body_timeout, self._body_late)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    # --- deadlines --------------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._in_headers:
            self._refuse(408, "request_timeout", f"headers not complete in {self.header_timeout} s")
        elif self.cycle is None:
            log.debug("closing a connection that sent nothing in %s s", self.header_timeout)
            self.transport.close()

    def _body_late(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None:
            return
        if cycle.response_started:
            # Answered already (e.g. 401 before the body): stop reading what is left of it.
            self.transport.close()
            return
        # The app sees a disconnect from now on; the scope mark has it count a 408.
        cycle.scope[BODY_TIMED_OUT] = True  # type: ignore[literal-required]
        self._write_error(408, "request_timeout", f"body not complete in {self.body_timeout} s")
        cycle.disconnected = True
        cycle.message_event.set()
        self.transport.close()

    def _refuse(self, status: int, code: str, message: str) -> None:
        log.debug("refused a request before its headers were complete: %s", message)
        if self._metrics is not None:
            self._metrics.request(HEADERS_ROUTE, status)
        self._write_error(status, code, message)
        self._disarm()
        self.transport.close()

    def _write_error(self, status: int, code: str, message: str) -> None:
        body = json.dumps(envelope(code, message)).encode()
        head = (
            f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode("ascii") + body)


def _metrics_of(app: Any) -> Metrics | None:
    """The collector's metrics under uvicorn's middleware wrappers (none for other apps)."""
    for _ in range(8):
        state = getattr(getattr(app, "state", None), "collector", None)
        if state is not None:
            return cast(Metrics, state.metrics)
        app = getattr(app, "app", None)
        if app is None:
            break
    return None
