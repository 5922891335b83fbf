"""The dashboard in a real browser: ``edge-monitor dashboard`` started as a user starts it, on
loopback, and Debian's headless Chromium (Playwright, offline but for loopback) through every
page of the seeded database and every page of each empty state. No page shows an exception or
error text, each shows its title and what it is for (the drifting site on Fleet, the next
command on an empty database), the links and the sidebar lead where they say, and the app
logs nothing while it draws them.

Screenshots of every page go to the test's tmp_path; with MONITOR_TEST_SCREENSHOTS=docs the
seeded pages (SQLite), the Model page's Accuracy tab at the drifting site (an untrusted
estimate) and the empty Fleet page also go to docs/dashboard/ for the README.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import require_service
from tests.dashboards import seed
from tests.dashboards.seed import Seeded
from tests.dashboards.served import (
    CHROMIUM_ARGS,
    OFFLINE_ARGS,
    VIEWPORT,
    Browser,
    Served,
    serve,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser as Chromium

    from tests.browser import Chromium as FoundChromium

# tests/browser.py finds Chromium and skips (fails under CI=true) without one; loaded as a plugin
# so that pytest rewrites its asserts.
pytest_plugins = ("tests.browser",)
pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "dashboard"
#: Pages and the title each one shows, in the sidebar's order.
PAGES = {"fleet": "Fleet", "model": "Model", "node": "Node", "alerts": "Alerts", "models": "Models"}
#: Where each page is served: Fleet, the default page, at the root (Streamlit serves a default
#: page at "/" only: "/fleet" answers "Page not found").
PATHS = {page: "" if page == "fleet" else page for page in PAGES}
#: The empty states: the command each page tells a new user to run next (None: the page
#: shows no command there, only what to pick).
EMPTY_STATES: dict[str, dict[str, str | None]] = {
    "empty": {
        "fleet": "edge-monitor models",
        "model": "edge-monitor models",
        "node": "edge-monitor nodes add",
        "alerts": "edge-monitor models",
        "models": "edge-monitor models",
    },
    "no-reference": {
        "fleet": "edge-monitor models register",
        "model": "edge-monitor models register",
        "node": "edge-monitor nodes add",
        "alerts": "edge-monitor alerts apply",
        "models": "edge-monitor models register",
    },
    "no-window": {
        "fleet": "edge-monitor worker",
        "model": "edge-monitor worker",
        "node": None,
        "alerts": "edge-monitor alerts apply",
        "models": "edge-monitor models",
    },
}


def app_environ() -> dict[str, str]:
    """The dashboard's environment: this one, with the seed's offline threshold."""
    return {
        **os.environ,
        "MONITOR_HEALTH_OFFLINE_AFTER_SECONDS": str(int(seed.OFFLINE_AFTER.total_seconds())),
    }


def docs_screenshots() -> bool:
    """Whether this run writes the README's screenshots (MONITOR_TEST_SCREENSHOTS=docs)."""
    return os.environ.get("MONITOR_TEST_SCREENSHOTS", "") == "docs"


@dataclass
class App:
    """A running dashboard and a browser page on it; the part of its log already read."""

    served: Served
    browser: Browser
    database_url: str
    log_read: int = 0

    @property
    def on_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def open(self, path: str) -> Browser:
        """Load a path of the app (a page's, with its query) and wait until it is drawn."""
        self.browser.script_errors.clear()
        self.browser.open(self.served.page_url(path))
        return self.browser

    def new_log(self) -> str:
        """What the app logged since the last call."""
        log = self.served.log()
        new, self.log_read = log[self.log_read :], len(log)
        return new


@pytest.fixture(scope="module")
def chromium_browser(chromium: FoundChromium) -> Iterator[Chromium]:
    """Debian's Chromium under Playwright, every host but loopback unresolvable."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_service(False, "Playwright for Python is not installed: pip install -e '.[dev]'")
        raise
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium.executable, args=[*CHROMIUM_ARGS, *OFFLINE_ARGS]
        )
        yield browser
        browser.close()


@contextmanager
def running(url: str, chromium_browser: Chromium, *, first: str = "") -> Iterator[App]:
    """The dashboard on ``url`` with a browser page that opened ``first`` (the root: the URL
    the command prints)."""
    with serve(url, environ=app_environ()) as served:
        context = chromium_browser.new_context(viewport=VIEWPORT)
        try:
            app = App(served, Browser.on(context.new_page()), url)
            app.open(first)
            yield app
        finally:
            context.close()


@pytest.fixture(scope="module")
def seeded_app(seeded: Seeded, chromium_browser: Chromium) -> Iterator[App]:
    """The dashboard on the seeded database of one backend (one process for every page)."""
    with running(seeded.url, chromium_browser) as app:
        yield app


def page_faults(app: App, page: str) -> list[str]:
    """What is wrong with the page just opened: a wrong title, anything a person would read as
    an error, a sidebar without the app's pages, anything in the app's log."""
    browser = app.browser
    faults = []
    if browser.title() != PAGES[page]:
        faults.append(f"its title is {browser.title()!r}, not {PAGES[page]!r}")
    faults += browser.problems()
    if sidebar_pages(browser) != list(PAGES.values()):
        faults.append(f"the sidebar lists {sidebar_pages(browser)}")
    # Streamlit logs at warning level: a quiet page writes nothing (a deprecation, a pandas
    # FutureWarning or a caught exception's traceback would).
    faults += [f"the dashboard logged: {line}" for line in app.new_log().splitlines() if line]
    return [f"/{PATHS[page]} ({page}): {fault}" for fault in faults]


def sidebar_pages(browser: Browser) -> list[str]:
    """The pages the sidebar links to, by the title shown (after the icon's name)."""
    links = browser.page.locator('[data-testid="stSidebarNav"] a')
    return [last_line(text) for text in links.all_inner_texts()]


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1].strip() if text.strip() else ""


def code_blocks(browser: Browser) -> list[str]:
    blocks = browser.page.locator('[data-testid="stMain"] [data-testid="stCode"]')
    return [blocks.nth(i).inner_text() for i in range(blocks.count())]


def charts(browser: Browser) -> int:
    return browser.page.locator('[data-testid="stMain"] [data-testid="stPlotlyChart"]').count()


def screenshot(browser: Browser, tmp_path: Path, name: str, docs_name: str | None) -> None:
    """Into tmp_path always; as ``docs_name`` into docs/dashboard/ too when this run writes
    the README's screenshots."""
    paths = [tmp_path / f"{name}.png"]
    if docs_name and docs_screenshots():
        paths.append(DOCS / f"{docs_name}.png")
    browser.screenshot(*paths)
    assert paths[0].stat().st_size > 10_000


# --- The seeded database ------------------------------------------------------------------


def seeded_path(seeded: Seeded, page: str) -> str:
    """Where a user lands on each page: a drifting node in the canary, the model by name, as
    the Fleet page links them."""
    if page == "node":
        return f"node?node={shown_node(seeded)}&model={seeded.model}"
    if page in ("model", "models"):
        return f"{page}?model={seeded.model}"
    return PATHS[page]


def shown_node(seeded: Seeded) -> str:
    sites = {p.name: p.site for p in seed.plan_fleet(seed.NODES, sites=seed.SITES)}
    return next(n for n in seeded.canary_nodes if sites[n] == seeded.drifting_site)


def expected_on_seeded(seeded: Seeded, page: str) -> list[str]:
    """Words each seeded page must show beyond its title (charts' and tables' text included)."""
    return {
        "fleet": [seeded.drifting_site],
        "model": ["temperature_c", "vibration_mm_s"],
        "node": [shown_node(seeded)],
        "alerts": ["site drift", "node offline", "clock skew"],
        "models": ["canary", "production"],
    }[page]


def test_every_page_of_the_seeded_database_draws_its_figures_offline_without_an_error(
    seeded_app: App, seeded: Seeded, tmp_path: Path
) -> None:
    faults = []
    for page in PAGES:
        browser = seeded_app.open(seeded_path(seeded, page))
        faults += page_faults(seeded_app, page)
        text = browser.main_text().lower()
        missing = [w for w in expected_on_seeded(seeded, page) if w.lower() not in text]
        faults += [f"/{page} does not show {words!r}" for words in missing]
        if page in ("fleet", "model", "node") and not charts(browser):
            faults.append(f"/{page} shows no chart")
        screenshot(browser, tmp_path, page, page if seeded_app.on_sqlite else None)
    assert faults == []
    # The dashboard runs where the fleet is, often without the internet: every script, style,
    # font and icon it needs comes from its own server.
    assert sorted(set(seeded_app.browser.blocked)) == []


def test_an_untrusted_estimate_is_drawn_as_a_warning_on_the_model_pages_accuracy_tab(
    seeded_app: App, seeded: Seeded, tmp_path: Path
) -> None:
    site = seeded.drifting_site
    browser = seeded_app.open(f"model?model={seeded.model}&scope=site:{site}&tab=Accuracy")

    assert page_faults(seeded_app, "model") == []
    assert charts(browser) == 1
    warning = browser.page.locator('[data-testid="stMain"] [data-testid="stAlertContentWarning"]')
    assert warning.count() == 1
    text = warning.inner_text()
    assert "Latest estimate" in text
    assert f"not trusted: calibration broke at site {site}" in text
    docs_name = "model-accuracy" if seeded_app.on_sqlite else None
    screenshot(browser, tmp_path, "model-accuracy", docs_name)


def test_the_fleet_node_tables_link_opens_that_nodes_page(seeded_app: App, seeded: Seeded) -> None:
    browser = seeded_app.open(PATHS["fleet"])
    grid = browser.page.locator('[data-testid="stMain"] [data-testid="stDataFrame"]').filter(
        has_text=f"/node?node={seeded.offline_node}"
    )
    target, url = link_in_first_row(browser, grid)

    with browser.page.context.expect_page() as opened:
        browser.page.mouse.click(*target)
    node_page = Browser.on(opened.value)
    try:
        node_page.drawn()
        assert node_page.page.url == seeded_app.served.page_url(url.lstrip("/"))
        assert node_page.title() == "Node"
        assert node_page.problems() == []
        name = url.split("node=")[1].split("&")[0]
        assert name in seeded.nodes and name in node_page.main_text()
    finally:
        node_page.page.close()


def link_in_first_row(browser: Browser, grid: Any) -> tuple[tuple[float, float], str]:
    """Where to click the first row's link of a table (the pointer shows over it: the table is
    drawn on a canvas), and the link's address (from the table's accessible copy)."""
    grid.scroll_into_view_if_needed()
    canvas = grid.locator('[data-testid="data-grid-canvas"]')
    box = canvas.bounding_box()
    assert box is not None
    # Streamlit's tables: a 35 px header, then rows of 35 px.
    y = box["y"] + 35 + 35 / 2
    pointer = """([x, y]) => getComputedStyle(document.elementFromPoint(x, y)).cursor"""
    for x in range(int(box["x"]) + 2, int(box["x"] + box["width"]), 6):
        browser.page.mouse.move(x, y)
        if browser.page.evaluate(pointer, [x, y]) == "pointer":
            break
    else:
        raise AssertionError("no link in the table's first row")
    cells = canvas.locator('td[id^="glide-cell-"][id$="-0"]')
    links = [c for c in cells.all_inner_texts() if c.startswith("/")]
    assert len(links) == 1, f"the first row's links: {links}"
    return (x + 6, y), links[0]


def test_the_sidebar_leads_to_every_page(seeded_app: App) -> None:
    browser = seeded_app.open(PATHS["fleet"])
    for title in [*list(PAGES.values())[1:], "Fleet"]:
        links = browser.page.locator('[data-testid="stSidebarNav"] a')
        [index] = [i for i, text in enumerate(links.all_inner_texts()) if last_line(text) == title]
        links.nth(index).click()
        browser.drawn()
        assert browser.title() == title
        assert browser.problems() == [], f"{title}: {browser.problems()}"


# --- Empty states -------------------------------------------------------------------------


def empty_state_faults(app: App, state: str, tmp_path: Path) -> list[str]:
    """Every page of a database in an empty state: drawn cleanly, telling a new user the
    command to run next (EMPTY_STATES)."""
    faults = []
    for page in PAGES:
        browser = app.open(PATHS[page])
        faults += page_faults(app, page)
        command = EMPTY_STATES[state][page]
        if command is None:
            picker = browser.page.locator('[data-testid="stMain"] [data-testid="stSelectbox"]')
            if not picker.count():
                faults.append(f"/{page} offers nothing to pick")
        elif not any(block.startswith(command) for block in code_blocks(browser)):
            faults.append(f"/{page} shows no {command!r} command: {code_blocks(browser)}")
        if state == "empty" and page == "fleet":  # the README shows what a new user sees
            screenshot(browser, tmp_path, "fleet-empty", "fleet-empty" if app.on_sqlite else None)
    return faults


@pytest.mark.parametrize(
    ("state", "build"),
    [
        ("empty", seed.build_empty),
        ("no-reference", seed.build_no_reference),
        ("no-window", seed.build_no_window),
    ],
)
def test_every_page_of_each_empty_state_says_what_to_run(
    state: str, build: Any, chromium_browser: Chromium, tmp_path: Path
) -> None:
    # On SQLite: the page tests (AppTest) check each empty state on both databases; what the
    # browser adds (the app served, drawn, offline, without errors) does not depend on it.
    url = f"sqlite:///{tmp_path / 'edge-monitor.db'}"
    build(url)
    with running(url, chromium_browser) as app:
        assert empty_state_faults(app, state, tmp_path) == []


# --- Starting the app ---------------------------------------------------------------------


def test_a_page_opened_first_by_its_own_url_is_drawn_inside_the_app(
    chromium_browser: Chromium, tmp_path: Path
) -> None:
    # A bookmarked page is often the first URL a browser asks for after the dashboard starts;
    # the app's navigation does not depend on the database (SQLite only).
    url = f"sqlite:///{tmp_path / 'edge-monitor.db'}"
    seed.build_empty(url)
    with running(url, chromium_browser, first=PATHS["alerts"]) as app:
        browser = app.browser
        assert browser.title() == "Alerts"
        assert sidebar_pages(browser) == list(PAGES.values())
        sidebar = browser.page.locator('[data-testid="stSidebarUserContent"]').inner_text()
        assert "Time range" in sidebar
