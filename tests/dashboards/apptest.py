"""One dashboard page drawn by Streamlit's AppTest on a database, as the page tests need it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"


def draw(
    url: str,
    page: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    query: dict[str, str] | None = None,
    state: dict[str, Any] | None = None,
) -> AppTest:
    """``views/<page>.py`` drawn once on the database at ``url`` through the app, with this
    query and session state (the sidebar's time range): no exception, no error shown."""
    monkeypatch.setenv("MONITOR_DATABASE_URL", url)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.switch_page(f"views/{page}.py")
    for key, value in (query or {}).items():
        at.query_params[key] = value
    for key, value in (state or {}).items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == []
    return at
