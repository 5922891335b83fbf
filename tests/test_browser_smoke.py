"""The browser plumbing works: headless Chromium runs a page's script and screenshots it."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.browser import Chromium

# tests/browser.py provides the `chromium` fixture; loaded as a plugin so pytest rewrites its
# asserts (importing it directly first would prevent that).
pytest_plugins = ("tests.browser",)
pytestmark = pytest.mark.browser

# The text the test looks for is computed by the script, so it is in the DOM only if the
# script ran; a timer checks that the DOM is dumped after pending timers, not at first parse.
PAGE = b"""<!doctype html>
<html>
<head><meta charset="utf-8"><title>edge-monitor smoke</title></head>
<body style="background: #1b4f72; color: white; font: 32px sans-serif">
<p id="now">waiting for the script</p>
<p id="later">waiting for the timer</p>
<script>
  document.getElementById("now").textContent = ["rendered", "by", "script", 6 * 7].join("-");
  setTimeout(() => {
    document.getElementById("later").textContent = ["timer", "fired"].join("-");
  }, 200);
</script>
</body>
</html>
"""


class _PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output clean


@pytest.fixture
def page_url() -> Iterator[str]:
    """The smoke page, served on an ephemeral loopback port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_dumped_dom_contains_what_the_script_wrote(chromium: Chromium, page_url: str) -> None:
    dom = chromium.dump_dom(page_url)
    assert "<title>edge-monitor smoke</title>" in dom
    assert "rendered-by-script-42" in dom
    assert "timer-fired" in dom
    assert "waiting for" not in dom


def test_screenshot_is_a_png_of_the_window_size(
    chromium: Chromium, page_url: str, tmp_path: Path
) -> None:
    path = chromium.screenshot(page_url, tmp_path / "smoke.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    assert (width, height) == chromium.window_size
    assert len(data) > 1_000
