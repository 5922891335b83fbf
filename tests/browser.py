"""Headless Chromium for tests: find it, dump a page's DOM after its scripts ran, screenshot it.

Use it from a test module with ``pytest_plugins = ("tests.browser",)`` and the ``chromium`` fixture.
Without a Chromium the fixture skips with the reason, except under CI=true where it fails
(the policy of ``require_service`` in tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_service

#: Where to look, in order; MONITOR_TEST_CHROMIUM names another executable.
CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")

# Headless, offline and quiet: no sandbox (CI runs as root), no GPU, no first-run work, no
# background traffic to Google, small /dev/shm in containers tolerated.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
    "--hide-scrollbars",
)

#: With ``offline=True``: every host name but loopback resolves to nothing, so a page that
#: needs the internet (a CDN's script or style sheet) fails as it would on an offline machine.
OFFLINE_FLAGS = ("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",)


def find_chromium() -> str | None:
    """The path of a headless-capable Chromium, or None."""
    configured = os.environ.get("MONITOR_TEST_CHROMIUM")
    for candidate in (configured,) if configured else CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


class BrowserError(AssertionError):
    """Chromium failed or timed out; the message carries the end of its stderr."""


@dataclass(frozen=True)
class Chromium:
    """One Chromium executable; every call is a fresh browser with a throwaway profile."""

    executable: str
    timeout_s: float = 60.0
    window_size: tuple[int, int] = (1280, 800)

    def dump_dom(
        self, url: str, *, virtual_time_budget_ms: int = 5_000, offline: bool = False
    ) -> str:
        """The serialized DOM of ``url`` once its scripts ran (and timers within the budget);
        ``offline`` blocks every host but 127.0.0.1 (OFFLINE_FLAGS)."""
        return self._run(
            url,
            "--dump-dom",
            f"--virtual-time-budget={virtual_time_budget_ms}",
            *(OFFLINE_FLAGS if offline else ()),
        )

    def screenshot(self, url: str, path: Path, *, virtual_time_budget_ms: int = 5_000) -> Path:
        """A PNG of ``url`` at ``window_size``, written to ``path``."""
        width, height = self.window_size
        self._run(
            url,
            f"--screenshot={path}",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={virtual_time_budget_ms}",
        )
        if not path.is_file():
            raise BrowserError(f"chromium wrote no screenshot to {path}")
        return path

    def _run(self, url: str, *flags: str) -> str:
        with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
            command = [self.executable, *FLAGS, f"--user-data-dir={profile}", *flags, url]
            # A session of its own, so that a timeout kills the renderer and GPU children too.
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            try:
                stdout, stderr = process.communicate(timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                _, stderr = process.communicate()
                raise BrowserError(
                    f"chromium did not finish {url} within {self.timeout_s:.0f} s:\n{_tail(stderr)}"
                ) from None
        if process.returncode != 0:
            raise BrowserError(
                f"chromium exited with {process.returncode} on {url}:\n{_tail(stderr)}"
            )
        return stdout


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@pytest.fixture(scope="session")
def chromium(request: pytest.FixtureRequest) -> Chromium:
    """A headless Chromium; skips without one, fails without one under CI=true."""
    executable = find_chromium()
    configured = os.environ.get("MONITOR_TEST_CHROMIUM")
    looked_for = f"MONITOR_TEST_CHROMIUM={configured}" if configured else ", ".join(CANDIDATES)
    require_service(
        executable is not None,
        f"no headless Chromium found (looked for {looked_for}); "
        "on Debian: apt-get install chromium",
    )
    assert executable is not None
    return Chromium(executable)
