"""The built wheel is a working service: installed with the server extra into a fresh virtual
environment, outside the checkout, it creates its database, serves, stores a batch and is ready.

Building and installing take a minute or two (the server extra pulls Evidently, pandas, SciPy),
so the wheel is built and installed once per run and shared by both backends. Without a package
index the install cannot happen: the test then skips with pip's reason, except under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from monitor import wire
from tests.conftest import require_service

ROOT = Path(__file__).resolve().parent.parent
#: What the source tree holds that is not part of a build (and may be large or in use).
NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.db*", "results")


def test_every_package_of_the_source_tree_is_listed_for_the_wheel() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "monitor").rglob("__init__.py")
    } | {
        ".".join(("monitor", *init.parent.relative_to(ROOT).parts))
        for top in ("migrations", "dashboards")
        for init in (ROOT / top).rglob("__init__.py")
    }

    assert found == listed, f"pyproject.toml lists {sorted(listed)}, the tree has {sorted(found)}"


@dataclass(frozen=True)
class Installed:
    """edge-monitor installed from its wheel into a virtual environment of its own."""

    venv: Path

    @property
    def cli(self) -> str:
        return str(self.venv / "bin" / "edge-monitor")

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    # Build from a copy, so that the checkout gets no build/ or egg-info of this run.
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    _run(
        sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work), str(source),
        cwd=work,
    )  # fmt: skip
    (wheel,) = work.glob("edge_monitor-*.whl")
    venv = work / "venv"
    _run(sys.executable, "-m", "venv", str(venv), cwd=work)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-compile", f"{wheel}[server]"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    errors = [line for line in install.stderr.splitlines() if "WARNING" not in line]
    require_service(
        install.returncode == 0,
        f"pip could not install the wheel's dependencies: {' '.join(errors)[-500:]}",
    )
    return Installed(venv)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_env(data_dir: Path) -> dict[str, str]:
    """The environment of a user's shell: no settings of this test run, no source tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "PYTHON"))}
    return {**env, "MONITOR_DATA_DIR": str(data_dir), "HOME": str(data_dir)}


@pytest.fixture
def served(installed: Installed, db_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A collector of the installed wheel on ``db_url``: its URL and a node's token."""
    env = _clean_env(tmp_path)
    cli = (installed.cli, "--database-url", db_url)
    _run(*cli, "db", "upgrade", cwd=tmp_path, env=env)
    _run(*cli, "models", "add", "pump-failure", cwd=tmp_path, env=env)
    token = _run(*cli, "nodes", "add", "press-01", cwd=tmp_path, env=env).strip()
    port = _free_port()
    log = tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    # The log goes to a file: a pipe nobody reads would block the server once full.
    with (
        log.open("w") as sink,
        subprocess.Popen(
            [*cli, "serve", "--port", str(port)], cwd=tmp_path, env=env, stdout=sink, stderr=sink
        ) as server,
    ):
        try:
            deadline = time.monotonic() + 60
            while True:
                if server.poll() is not None:
                    raise AssertionError(f"serve exited {server.returncode}: {log.read_text()}")
                try:
                    httpx.get(f"{url}/healthz", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise AssertionError("serve did not listen within 60 s") from None
                    time.sleep(0.2)
            yield url, token
        finally:
            server.terminate()
            server.wait(timeout=30)


def test_the_wheel_carries_its_own_code_migrations_and_dashboard(installed: Installed) -> None:
    where = _run(
        installed.python,
        "-c",
        "import monitor, monitor.migrations, monitor.dashboards.server as s; "
        "print(monitor.__file__); print(monitor.migrations.__file__); print(s.APP); "
        "print(*sorted(p.name for p in (s.APP.parent / 'views').glob('*.py')))",
        cwd=installed.venv,
    ).split()

    assert all(path.startswith(str(installed.venv)) for path in where[:3]), where
    assert where[2].endswith("app.py")
    assert where[3:] == ["__init__.py", "alerts.py", "fleet.py", "model.py", "models.py", "node.py"]


def test_the_installed_wheel_creates_its_database_serves_and_stores(
    served: tuple[str, str],
) -> None:
    url, token = served
    uid = uuid.uuid4().hex
    batch = {
        "batch_id": uuid.uuid4().hex,
        "model": "pump-failure",
        "model_version": "1",
        "records": [
            {
                "id": uid,
                "request_id": uid,
                "ts": time.time(),
                "features": {"temperature_c": 71.5, "site_kind": "press"},
                "prediction": "ok",
            }
        ],
    }
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    stored = httpx.post(f"{url}{wire.RECORDS_PATH}", content=json.dumps(batch), headers=headers)
    again = httpx.post(f"{url}{wire.RECORDS_PATH}", content=json.dumps(batch), headers=headers)
    ready = httpx.get(f"{url}/readyz")

    assert stored.status_code == 200, stored.text
    assert stored.json() == {"accepted": 1, "duplicate": 0, "rejected": []}
    assert again.json() == {"accepted": 0, "duplicate": 1, "rejected": []}
    assert ready.status_code == 200, ready.text
