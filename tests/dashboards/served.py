"""The dashboard as a user runs it, driven by a real browser: ``edge-monitor dashboard`` started
on a free loopback port, and headless Chromium (Debian's, through Playwright) kept off every
host but loopback.

``serve(url)`` starts the command and waits for its "dashboard: open" line; leaving the block
sends Ctrl-C (SIGINT) and checks that it stopped as interrupted (exit 130). ``Browser.open``
loads a page and waits until Streamlit finished drawing it; ``Browser.problems`` says what a
person would read as an error on it.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from playwright.sync_api import Page

#: How the command says it is ready, and where.
OPEN_LINE = re.compile(r"dashboard: open (http://\S+?)/? ")
#: The exit code of a command stopped with Ctrl-C.
INTERRUPTED = 130
#: A page has finished drawing when Streamlit's script is no longer running, a title is shown,
#: nothing is still a loading placeholder, and every chart and table has drawn itself.
DRAWN = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (!document.querySelector('[data-testid="stMain"] h1')) return false;
  if (document.querySelector('[data-testid="stSkeleton"]')) return false;
  // Charts and tables in a closed tab or expander draw when opened: only the shown ones count.
  const shown = id => [...document.querySelectorAll(`[data-testid="${id}"]`)]
    .filter(e => e.getClientRects().length > 0);
  return shown('stPlotlyChart').every(c => c.querySelector('.main-svg'))
    && shown('stDataFrame').every(t => t.querySelector('canvas'));
}"""
#: Text that means a page failed: a traceback, an exception's name, the error boundary's words,
#: Streamlit's own dialogs (an unknown page, a lost server).
ERROR_TEXT = re.compile(
    r"Traceback|\b\w*(Error|Exception):|cannot be drawn|Internal Server Error|"
    r"Page not found|does not seem to exist|Connection error|Is Streamlit still running"
)
#: Chromium without a sandbox (CI runs as root), a GPU or a big /dev/shm (containers).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
#: Every host name but loopback resolves to nothing: the dashboard must work offline.
OFFLINE_ARGS = ["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
#: The viewport of every page (and screenshot).
VIEWPORT = {"width": 1400, "height": 900}
#: The tallest full-page screenshot kept (a long page is cut there).
MAX_SHOT_HEIGHT = 3200


def command() -> list[str]:
    """``edge-monitor`` as installed beside this Python (the console script a user runs)."""
    script = Path(sys.executable).with_name("edge-monitor")
    if script.is_file():
        return [str(script)]
    found = shutil.which("edge-monitor")
    return [found] if found else [sys.executable, "-m", "monitor"]


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Served:
    """A running ``edge-monitor dashboard``: its URL and what it printed so far."""

    process: subprocess.Popen[str]
    url: str
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def page_url(self, path: str) -> str:
        return f"{self.url}/{path.lstrip('/')}"

    def log(self) -> str:
        """Everything it wrote to stderr (its log), so far."""
        return "".join(self.stderr)


def _drain(stream: Any, into: list[str], lines: queue.Queue[str] | None) -> None:
    for line in stream:
        into.append(line)
        if lines is not None:
            lines.put(line)
    if lines is not None:
        lines.put("")


@contextmanager
def serve(
    database_url: str, *, environ: Mapping[str, str] | None = None, timeout: float = 90.0
) -> Iterator[Served]:
    """Run ``edge-monitor --database-url URL dashboard --port P`` on a free loopback port until
    the block ends, then stop it with Ctrl-C; AssertionError when it does not start, or does
    not stop as interrupted."""
    port = free_port()
    env = dict(os.environ if environ is None else environ)
    env.pop("MONITOR_DATABASE_URL", None)
    env["PYTHONUNBUFFERED"] = "1"
    argv = [*command(), "--database-url", database_url, "dashboard", "--port", str(port)]
    # A session of its own: Ctrl-C goes to the command alone, which stops its Streamlit child.
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    served = Served(process, url="")
    lines: queue.Queue[str] = queue.Queue()
    readers = [
        threading.Thread(target=_drain, args=(process.stdout, served.stdout, lines), daemon=True),
        threading.Thread(target=_drain, args=(process.stderr, served.stderr, None), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        served.url = _wait_open(served, lines, timeout)
        yield served
    finally:
        code = _stop(process)
        for reader in readers:
            reader.join(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    assert code == INTERRUPTED, (
        f"edge-monitor dashboard exited {code} on Ctrl-C, not {INTERRUPTED}:\n"
        + served.log()[-3000:]
    )


def _wait_open(served: Served, lines: queue.Queue[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
        except queue.Empty:
            continue
        if line == "":
            break  # stdout closed: the command ended
        found = OPEN_LINE.search(line)
        if found:
            url = found.group(1).rstrip("/")
            host = urlsplit(url).hostname
            assert host in LOOPBACK, f"the dashboard opened on {url}, not on loopback"
            return url
    _stop(served.process)
    raise AssertionError(
        f"edge-monitor dashboard did not say 'dashboard: open' within {timeout:g} s "
        f"(exit {served.process.poll()}):\n{''.join(served.stdout)}{served.log()[-3000:]}"
    )


def _stop(process: subprocess.Popen[str]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return int(process.returncode)


@dataclass
class Browser:
    """One headless Chromium page kept off every host but loopback; what it tried to reach
    elsewhere (``blocked``, every page since it opened) and the script errors it saw are
    collected."""

    page: Page
    blocked: list[str] = field(default_factory=list)
    script_errors: list[str] = field(default_factory=list)

    @classmethod
    def on(cls, page: Page) -> Browser:
        browser = cls(page)

        def route(request_route: Any) -> None:
            if urlsplit(request_route.request.url).hostname in LOOPBACK:
                request_route.continue_()
            else:
                browser.blocked.append(request_route.request.url)
                request_route.abort()

        page.route("**/*", route)
        page.on("pageerror", lambda error: browser.script_errors.append(str(error)))
        return browser

    def open(self, url: str, timeout_ms: float = 45_000) -> None:
        """Load ``url`` and wait until Streamlit has drawn the whole page."""
        self.page.goto(url, wait_until="domcontentloaded")
        self.drawn(timeout_ms)

    def drawn(self, timeout_ms: float = 45_000) -> None:
        """Wait until the page is drawn (see DRAWN), twice a moment apart: a widget that sets
        the URL's query reruns the script right after the first draw."""
        self.page.wait_for_function(DRAWN, timeout=timeout_ms)
        self.page.wait_for_timeout(200)
        self.page.wait_for_function(DRAWN, timeout=timeout_ms)

    def title(self) -> str:
        return self.page.locator('[data-testid="stMain"] h1').first.inner_text().strip()

    def main_text(self) -> str:
        """Every text of the main pane, charts' and tables' included."""
        return self.page.locator('[data-testid="stMain"]').text_content() or ""

    def problems(self) -> list[str]:
        """What a person would read as a failure on the page: exceptions shown, error text,
        script errors."""
        found = []
        exceptions = self.page.locator('[data-testid="stException"]')
        for i in range(exceptions.count()):
            found.append(f"exception shown: {exceptions.nth(i).inner_text()[:500]}")
        text = self.page.locator('[data-testid="stApp"]').inner_text()
        for line in text.splitlines():
            if ERROR_TEXT.search(line):
                found.append(f"error text: {line.strip()[:300]}")
        found += [f"script error: {e}" for e in self.script_errors]
        return found

    def error_boxes(self) -> list[str]:
        """The text of every error box (st.error) on the page."""
        boxes = self.page.locator('[data-testid="stAlertContentError"]')
        return [boxes.nth(i).inner_text() for i in range(boxes.count())]

    def screenshot(self, *paths: Path) -> None:
        """A PNG of the whole page (Streamlit scrolls inside its main pane, so the viewport
        grows to the content's height, up to MAX_SHOT_HEIGHT) written to the first of ``paths``
        as taken, to the others in 256 colours (kept in the repository: small)."""
        height = self.page.evaluate(
            """() => Math.max(...['stMain', 'stAppViewContainer', 'stSidebarContent']
                 .map(id => document.querySelector(`[data-testid="${id}"]`))
                 .filter(Boolean).map(e => e.scrollHeight), document.body.scrollHeight)"""
        )
        tall = min(max(int(height), VIEWPORT["height"]), MAX_SHOT_HEIGHT)
        self.page.set_viewport_size({"width": VIEWPORT["width"], "height": tall})
        try:
            self.page.wait_for_timeout(300)  # charts and tables redraw at the new size
            self.drawn()
            shot = self.page.screenshot(full_page=True, animations="disabled")
        finally:
            self.page.set_viewport_size(VIEWPORT)
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(shot if path is paths[0] else _small_png(shot))


def _small_png(png: bytes) -> bytes:
    """The screenshot in at most 256 colours (a dashboard has few; a third of the bytes)."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        out, format="PNG", optimize=True
    )
    return out.getvalue()
