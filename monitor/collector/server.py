"""Running the collector: in the foreground (``edge-monitor serve``), or inside the current
process on a background thread."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from monitor.collector.app import create_app
from monitor.collector.metrics import MULTIPROC_DIR_ENV
from monitor.collector.protocol import http_protocol
from monitor.config import Settings

#: Seconds an idle keep-alive connection stays open between requests.
KEEP_ALIVE_SECONDS = 5
#: Seconds a stopping collector gives requests in progress before closing their connections.
GRACEFUL_SHUTDOWN_SECONDS = 10


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn options of every way to serve the collector (``edge-monitor serve`` and
    ``BackgroundCollector``): the protocol with header/body deadlines and a header cap, the
    concurrency limit, keep-alive and shutdown grace."""
    return {
        "http": http_protocol(settings),
        "limit_concurrency": settings.max_concurrency,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
    }


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    log_config: dict[str, Any] | None = None,
) -> None:
    """Serve the collector in the foreground (``edge-monitor serve``) until interrupted; with
    ``workers`` > 1, uvicorn starts that many processes, each building its app from the
    environment (``MONITOR_*``), and their metrics meet in a fresh multi-process directory
    (removed when the collector stops)."""
    metrics_dir = _multiprocess_metrics_dir() if workers > 1 else None
    try:
        uvicorn.run(
            "monitor.collector.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=settings.log_level.lower(),
            # uvicorn's own logging setup unless the caller brings one.
            log_config=LOGGING_CONFIG if log_config is None else log_config,
            **uvicorn_options(settings),
        )
    finally:
        if metrics_dir is not None:
            os.environ.pop(MULTIPROC_DIR_ENV, None)
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _multiprocess_metrics_dir() -> str:
    """A new, empty directory for the workers' metrics, named in the environment they inherit.

    Fresh for every ``serve``: files of an earlier run's processes would count again
    (prometheus_client asks for the directory to be wiped between runs); an inherited
    ``PROMETHEUS_MULTIPROC_DIR`` is replaced rather than wiped, as it may not be ours."""
    directory = tempfile.mkdtemp(prefix="edge-monitor-metrics-")
    os.environ[MULTIPROC_DIR_ENV] = directory
    return directory


class BackgroundCollector:
    """A collector served by uvicorn on a thread; ``url`` is known once it listens."""

    def __init__(self, settings: Settings, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = create_app(settings)
        config = uvicorn.Config(
            self._app,
            host=host,
            port=port,
            log_level="warning",
            # Never a line per request, whatever else in the process configures uvicorn's
            # loggers (the demo draws a dashboard page, which does).
            access_log=False,
            lifespan="off",
            **uvicorn_options(settings),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="collector", daemon=True)
        self.url = ""

    def start(self, timeout: float = 10.0) -> BackgroundCollector:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the collector did not start")
            time.sleep(0.02)
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        # The app made its engine for this collector: close the pooled connections now rather
        # than leave them open to the garbage collector.
        self._app.state.collector.engine.dispose()

    def __enter__(self) -> BackgroundCollector:
        return self.start()

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()
