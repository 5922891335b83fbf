"""Draw a dashboard page without a browser and read what it says: the demo checks its Fleet
page this way (Streamlit's AppTest runs the page script in this process, on one database)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from monitor.dashboards.server import APP

# The page reads its database from the environment, which is the process's: one draw at a time.
_LOCK = threading.Lock()

#: The elements whose text a reader sees, by AppTest's element lists.
_TEXT = ("title", "header", "subheader", "markdown", "caption", "info", "warning", "success")


@dataclass(frozen=True)
class PageText:
    """What a drawn page says: its text, its tables' cells, and any error it shows."""

    text: str
    errors: tuple[str, ...]


def read_page(
    database_url: str, page: str, *, query: dict[str, str] | None = None, timeout: float = 60
) -> PageText:
    """Draw ``views/<page>.py`` of the app on ``database_url`` and return what it shows."""
    from streamlit.testing.v1 import AppTest

    with _LOCK, _logging_kept():
        before = os.environ.get("MONITOR_DATABASE_URL")
        os.environ["MONITOR_DATABASE_URL"] = database_url
        try:
            app = AppTest.from_file(str(APP), default_timeout=timeout)
            app.switch_page(f"views/{page}.py")
            for key, value in (query or {}).items():
                app.query_params[key] = value
            app.run()
        finally:
            if before is None:
                os.environ.pop("MONITOR_DATABASE_URL", None)
            else:
                os.environ["MONITOR_DATABASE_URL"] = before
    parts: list[str] = []
    for kind in _TEXT:
        parts.extend(str(element.value) for element in getattr(app, kind))
    for metric in app.metric:
        parts.append(f"{metric.label}: {metric.value}")
    for table in app.dataframe:
        parts.append(_cells(table.value))
    errors = [str(e.value) for e in app.error] + [str(e.value) for e in app.exception]
    return PageText("\n".join(parts), tuple(errors))


@contextlib.contextmanager
def _logging_kept() -> Iterator[None]:
    """Leave this process's logging as it was: a page drawn here configures uvicorn's loggers
    for Streamlit's server (the demo's collector, in the same process, would start printing
    every request)."""
    loggers = [
        logging.getLogger(),
        *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict)),
    ]
    kept = [(lg, lg.level, list(lg.handlers), lg.propagate, lg.disabled) for lg in loggers]
    try:
        yield
    finally:
        for lg, level, handlers, propagate, disabled in kept:
            lg.setLevel(level)
            lg.handlers[:] = handlers
            lg.propagate = propagate
            lg.disabled = disabled


def _cells(frame: Any) -> str:
    try:
        return str(frame.to_string(index=False))
    except AttributeError:  # a Styler
        return str(frame.data.to_string(index=False))
