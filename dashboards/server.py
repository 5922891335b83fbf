"""Run the dashboard: Streamlit serving ``app.py`` as a child process on one database, and know
when it answers. ``edge-monitor dashboard`` and the demo start it here (this module imports
no Streamlit: the child does)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

APP = Path(__file__).with_name("app.py")


def command(host: str, port: int) -> list[str]:
    """The command line of the Streamlit server: headless, no usage statistics, no file
    watcher (an installed app does not change under it)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
        "--theme.base",
        "light",
        "--logger.level",
        "warning",
    ]


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be listened on now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str) -> int:
    """A port free on ``host`` now (the system's choice)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def address(host: str, port: int) -> str:
    """The URL a browser opens."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


@dataclass
class Dashboard:
    """A running dashboard process and its URL."""

    process: subprocess.Popen[bytes]
    url: str

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Return once the server answers its health check; RuntimeError when the process
        ended first or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        health = self.url + "_stcore/health"
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(f"the dashboard stopped as it started (exit {code})")
            try:
                with urllib.request.urlopen(health, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"the dashboard did not answer at {self.url} within {timeout:g} s")

    def stop(self, timeout: float = 10.0) -> None:
        """End the process: politely, then for good."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start(
    database_url: str,
    *,
    host: str,
    port: int,
    environ: Mapping[str, str] | None = None,
    stdout: int | IO[bytes] | None = subprocess.DEVNULL,
) -> Dashboard:
    """Start the dashboard on ``database_url`` (handed to the app as MONITOR_DATABASE_URL,
    with the rest of ``environ``, this process's environment by default). Streamlit's own
    banner goes to ``stdout`` (dropped by default: callers print the URL); its log to stderr."""
    env = dict(os.environ if environ is None else environ)
    env["MONITOR_DATABASE_URL"] = database_url
    process = subprocess.Popen(command(host, port), env=env, stdout=stdout)
    return Dashboard(process, address(host, port))
