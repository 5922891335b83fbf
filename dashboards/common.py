"""What every dashboard page shares: the database, the cached reads, the time range, the model
picker, links between pages, empty states and the error boundary.

Pages read through :func:`read`: it calls a ``monitor.dashboards.data`` function with an engine
on the configured database and keeps the answer for ``MONITOR_DASHBOARD_CACHE_SECONDS``, shared
by every viewer, so a room full of open dashboards costs the database one query per period.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from typing import Any, TypeVar
from urllib.parse import urlencode

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from monitor.config import Settings, hide_password, load_settings, sqlite_file
from monitor.errors import MonitorError
from monitor.storage import migrations, models
from monitor.storage.engine import make_engine

log = logging.getLogger("monitor.dashboards")

T = TypeVar("T")


def _cache_seconds() -> int:
    # Read once, when the app starts: st.cache_data takes its time to live at decoration.
    try:
        return load_settings().dashboard_cache_seconds
    except Exception:  # a bad setting is reported by the page's settings() call, in words
        return 10


CACHE_SECONDS = _cache_seconds()


# --- The database ---------------------------------------------------------------------------


def settings() -> Settings:
    """The settings of this run (the environment and MONITOR_CONFIG, as the CLI reads them)."""
    return load_settings()


@st.cache_resource(show_spinner=False)
def _engine(url: str, busy_timeout_ms: int) -> Engine:
    return make_engine(url, sqlite_busy_timeout_ms=busy_timeout_ms)


def engine() -> Engine:
    """The engine of the configured database, one per process and URL."""
    current = settings()
    return _engine(current.resolved_database_url, current.sqlite_busy_timeout_ms)


class NoDatabase(MonitorError):
    """The configured database does not exist or is not at the schema head."""

    status_code = 503
    code = "no_database"


def check_database() -> None:
    """NoDatabase, saying which command fixes it, unless the database is there and current.

    A missing SQLite file is reported without connecting (connecting would create it)."""
    current = settings()
    url = current.resolved_database_url
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise NoDatabase(f"no database at {path}: create it with `edge-monitor db upgrade`")
    _check_schema(url, current.sqlite_busy_timeout_ms)


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def _check_schema(url: str, busy_timeout_ms: int) -> None:
    try:
        migrations.ensure_at_head(_engine(url, busy_timeout_ms))
    except MonitorError as exc:  # SchemaOutOfDate: its message says what to run
        raise NoDatabase(exc.message) from exc


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def _read(url: str, busy_timeout_ms: int, module: str, name: str, args: tuple[Any, ...]) -> Any:
    function = getattr(importlib.import_module(module), name)
    return function(_engine(url, busy_timeout_ms), *args)


def read(function: Callable[..., T], *args: Any) -> T:
    """``function(engine, *args)`` through the shared cache: ``function`` is a module-level
    function of ``monitor.dashboards.data`` (named, so the cache knows it across reruns), its
    arguments hashable values (names, datetimes, numbers), its answer picklable."""
    current = settings()
    answer: T = _read(
        current.resolved_database_url,
        current.sqlite_busy_timeout_ms,
        function.__module__,
        function.__qualname__,
        args,
    )
    return answer


# --- The time range -------------------------------------------------------------------------

#: The sidebar's ranges, by label; None: everything stored.
RANGES: dict[str, timedelta | None] = {
    "Last hour": timedelta(hours=1),
    "Last 24 hours": timedelta(hours=24),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
    "Everything": None,
    "Custom": None,
}
DEFAULT_RANGE = "Last 24 hours"


@dataclass(frozen=True)
class TimeRange:
    """The period a page shows: windows that end after ``start`` (None: from the first) and
    start before ``end``."""

    label: str
    start: datetime | None
    end: datetime

    def holds(self, moment: datetime) -> bool:
        return (self.start is None or moment >= self.start) and moment < self.end


def now() -> datetime:
    """Now, rounded down to the cache period, so reads within one period share their answer."""
    step = max(CACHE_SECONDS, 1)
    return datetime.fromtimestamp(time.time() // step * step, UTC)


def time_range() -> TimeRange:
    """The range chosen in the sidebar (the default before the sidebar ran)."""
    label = st.session_state.get("range", DEFAULT_RANGE)
    end = now() + timedelta(seconds=max(CACHE_SECONDS, 1))
    if label == "Custom":
        days = st.session_state.get("custom_days")
        if isinstance(days, tuple | list) and len(days) == 2:
            first, last = days
            return TimeRange(label, _midnight(first), _midnight(last) + timedelta(days=1))
        return TimeRange(label, None, end)
    span = RANGES.get(label)
    return TimeRange(label, None if span is None else end - span, end)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, clock(0), UTC)


# --- The sidebar ----------------------------------------------------------------------------


def sidebar() -> None:
    """The time range, the refresh and where the data comes from, on every page."""
    st.session_state["drawn_at"] = time.monotonic()
    with st.sidebar:
        st.selectbox(
            "Time range", list(RANGES), index=list(RANGES).index(DEFAULT_RANGE), key="range"
        )
        if st.session_state.get("range") == "Custom":
            today = datetime.now(UTC).date()
            st.date_input("Days (UTC)", value=(today - timedelta(days=7), today), key="custom_days")
        try:
            current = settings()
        except Exception as exc:  # a bad setting: the page says which, in words
            st.caption(f"settings: {exc}")
            return
        every = current.dashboard_refresh_seconds
        if every > 0:
            st.toggle(f"Refresh every {every} s", value=True, key="auto_refresh")
            if st.session_state.get("auto_refresh", True):
                _refresher(every)
        if st.button("Refresh now", icon=":material/refresh:"):
            st.cache_data.clear()
            st.rerun()
        st.caption(f"Database: `{hide_password(current.resolved_database_url)}`")
        st.caption(f"Drawn at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")


def _refresher(seconds: int) -> None:
    # A fragment with a timer: it runs with every full draw (and does nothing then) and again
    # every `seconds`, when it redraws the whole app if the last full draw is that old.
    @st.fragment(run_every=timedelta(seconds=seconds))
    def tick() -> None:
        drawn = st.session_state.get("drawn_at", 0.0)
        if time.monotonic() - drawn >= seconds * 0.9:
            st.rerun(scope="app")

    tick()


# --- Models, links ---------------------------------------------------------------------------


def model_names(engine: Engine) -> list[str]:
    """Every model's name (a ``read`` function)."""
    with engine.connect() as conn:
        return [m.name for m in models.list_models(conn)]


def pick_model(names: list[str]) -> str:
    """The model a page shows: from the URL (``?model=``), else the one picked, else the first.
    Call only with at least one name."""
    wanted = st.query_params.get("model")
    index = names.index(wanted) if wanted in names else 0
    chosen: str = st.selectbox("Model", names, index=index, key="model_picker")
    if st.query_params.get("model") != chosen:
        st.query_params["model"] = chosen
    return chosen


#: The page Streamlit serves at the root (and only there: /fleet is "page not found").
DEFAULT_PAGE = "fleet"


def page_url(page: str, **params: str) -> str:
    """A link to another page of the app with its query (``node``, ``model``, ...)."""
    # Names keep their ":" and "@" readable in the address bar.
    query = urlencode({k: v for k, v in params.items() if v is not None}, safe=":@")
    path = "/" if page == DEFAULT_PAGE else f"/{page}"
    return path + (f"?{query}" if query else "")


# --- Long tables -----------------------------------------------------------------------------

#: Rows per page of a long table.
PAGE_ROWS = 50


def paged(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """The rows to show of a table: a search box and a page picker once it is long (1,000
    nodes stay readable)."""
    if len(frame) <= PAGE_ROWS:
        return frame
    left, right = st.columns([3, 1])
    text = left.text_input("Search", key=f"{key}_search", placeholder="any column contains...")
    if text:
        cells = frame.astype(str)
        hit = cells.apply(lambda c: c.str.contains(text, case=False, regex=False)).any(axis=1)
        frame = frame[hit]
    pages = max(1, math.ceil(len(frame) / PAGE_ROWS))
    number = int(right.number_input(f"Page of {pages}", 1, pages, 1, key=f"{key}_page"))
    number = min(number, pages)
    st.caption(f"{len(frame)} rows; page {number} of {pages}")
    return frame.iloc[(number - 1) * PAGE_ROWS : number * PAGE_ROWS]


# --- Empty states and errors -----------------------------------------------------------------


def empty_state(title: str, advice: str, command: str | None = None) -> None:
    """What a new user sees where there is nothing to show yet: what is missing, and what to
    do next (the command to run, as a block they can copy)."""
    st.info(f"**{title}**\n\n{advice}", icon=":material/lightbulb:")
    if command:
        st.code(command, language="bash")


@contextlib.contextmanager
def guarded(page: str) -> Iterator[None]:
    """Draw a page's body; a failure shows one readable message, never a traceback (which
    goes to the log). A missing, unreachable or outdated database says so (and which command
    fixes it) instead of the body."""
    try:
        check_database()
    except Exception as exc:
        _explain(page, exc)
        st.stop()  # the body is not drawn (a context manager cannot skip it otherwise)
    try:
        yield
    except Exception as exc:
        _explain(page, exc)


def _explain(page: str, exc: Exception) -> None:
    # Called while ``exc`` is being handled, so that the log has its traceback.
    if isinstance(exc, NoDatabase):
        empty_state("No database yet", exc.message)
    elif isinstance(exc, MonitorError):
        st.error(f"The {page} page cannot be drawn: {exc.message}", icon=":material/error:")
    else:
        log.exception("the %s page failed", page)
        st.error(
            f"The {page} page cannot be drawn: {type(exc).__name__}: {exc}. The dashboard's log "
            "has the details.",
            icon=":material/error:",
        )
