"""/docs works on a machine without internet: Swagger UI comes from the collector's own files.

A collector served as an operator serves it (``edge-monitor serve``) is opened in headless
Chromium with every host but 127.0.0.1 unresolvable; Swagger UI must render the operations of
/openapi.json. The same page from FastAPI's defaults (scripts on a CDN) stays blank there, which
shows that the block holds.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi.openapi.docs import get_swagger_ui_html

from monitor.storage import migrations
from tests.collector.conftest import ADMIN_TOKEN
from tests.collector.served import ServedCollector

if TYPE_CHECKING:
    from tests.browser import Chromium

pytest_plugins = ("tests.browser",)
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedCollector]:
    """One collector for the module (the pages do not depend on the database's backend)."""
    folder = tmp_path_factory.mktemp("docs")
    url = f"sqlite:///{folder / 'edge-monitor.db'}"
    migrations.upgrade(url)
    env = {"MONITOR_ADMIN_TOKEN": ADMIN_TOKEN}
    with ServedCollector(url, folder / "collector.log", env=env) as collector:
        yield collector


def _operations(dom: str) -> set[str]:
    """The operation paths Swagger UI rendered (each in an ``opblock`` summary)."""
    return set(re.findall(r'data-path="([^"]+)"', dom))


def test_docs_render_every_operation_with_the_network_blocked(
    chromium: Chromium, served: ServedCollector
) -> None:
    dom = chromium.dump_dom(f"{served.url}/docs", offline=True, virtual_time_budget_ms=10_000)

    assert 'class="swagger-ui' in dom
    assert "Unable to render this definition" not in dom
    documented = set(httpx.get(f"{served.url}/openapi.json").json()["paths"])
    assert _operations(dom) == documented
    assert {"/v1/records", "/v1/labels", "/v1/heartbeats", "/v1/admin/nodes"} <= documented
    assert "edge-monitor collector" in dom
    assert "authorize" in dom  # the bearer schemes' button
    # Everything the page loads is the collector's own.
    html = httpx.get(f"{served.url}/docs").text
    assert re.findall(r'(?:src|href)="(https?:)?//', html) == []
    assert "/docs/assets/swagger-ui-bundle.js" in html


def test_the_assets_are_served_by_the_collector(served: ServedCollector) -> None:
    for name, kind in (
        ("swagger-ui-bundle.js", "javascript"),
        ("swagger-ui.css", "text/css"),
        ("favicon-32x32.png", "image/png"),
    ):
        response = httpx.get(f"{served.url}/docs/assets/{name}")
        assert response.status_code == 200, name
        assert kind in response.headers["content-type"]
        assert len(response.content) > 500


def test_there_is_no_redoc_page(served: ServedCollector) -> None:
    # ReDoc's script comes only from a CDN: no page rather than a blank one offline.
    assert httpx.get(f"{served.url}/redoc").status_code == 404


@pytest.fixture
def cdn_docs_url(served: ServedCollector) -> Iterator[str]:
    """FastAPI's default Swagger UI page (scripts from a CDN) for the served collector."""
    page = get_swagger_ui_html(openapi_url=f"{served.url}/openapi.json", title="cdn").body

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_page_that_needs_a_cdn_stays_blank_when_blocked(
    chromium: Chromium, cdn_docs_url: str
) -> None:
    dom = chromium.dump_dom(cdn_docs_url, offline=True)

    assert re.search(r'<div id="swagger-ui">\s*</div>', dom), "Swagger UI rendered from a CDN"
    assert _operations(dom) == set()
