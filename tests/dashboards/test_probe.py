"""Reading a page without a browser (what the demo does): the drawn page's text and tables,
its errors, and this process's logging left as it was."""

from __future__ import annotations

import logging

from monitor.dashboards import probe
from tests.dashboards.seed import Seeded


def test_the_fleet_page_read_names_the_drifting_site_and_shows_no_error(seeded: Seeded) -> None:
    page = probe.read_page(seeded.url, "fleet")

    assert page.errors == ()
    headline = [line for line in page.text.splitlines() if "Drifting:" in line]
    assert headline and f"site {seeded.drifting_site} " in headline[0]
    assert all(node in page.text for node in seeded.nodes)  # the node table's cells


def test_a_page_of_a_database_that_does_not_exist_says_how_to_create_it(tmp_path) -> None:
    page = probe.read_page(f"sqlite:///{tmp_path / 'none.db'}", "fleet")

    assert page.errors == ()
    assert "No database yet" in page.text
    assert "edge-monitor db upgrade" in page.text
    assert not (tmp_path / "none.db").exists()


def test_reading_a_page_leaves_this_process_s_logging_as_it_was(seeded: Seeded) -> None:
    access = logging.getLogger("uvicorn.access")
    access.setLevel(logging.WARNING)
    before = (access.level, list(access.handlers), access.propagate)

    probe.read_page(seeded.url, "fleet")

    assert (access.level, list(access.handlers), access.propagate) == before


def test_a_database_that_cannot_be_reached_is_one_readable_error_not_a_traceback() -> None:
    page = probe.read_page("postgresql+psycopg://postgres@127.0.0.1:1/none", "fleet")

    assert len(page.errors) == 1
    assert page.errors[0].startswith("The Fleet page cannot be drawn: OperationalError: ")
    assert "Traceback" not in page.errors[0]
