"""``import monitor.sdk`` loads nothing outside the standard library (and monitor.sdk/wire)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
before = set(sys.modules)
import monitor.sdk
from monitor.sdk import Monitor
m = Monitor("http://127.0.0.1:1", "t", "pump", "3", spool_dir=False, heartbeat_interval=None)
m.log({"a": 1}, "ok")
m.close(0.1)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_importing_and_using_the_sdk_loads_only_the_standard_library() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        timeout=60,
    ).stdout
    loaded = json.loads(out.splitlines()[-1])
    assert "monitor.sdk" in loaded
    stdlib = set(sys.stdlib_module_names)
    foreign = [
        name
        for name in loaded
        if name.split(".")[0] not in stdlib
        and name not in ("monitor", "monitor.wire")
        and not name.startswith("monitor.sdk")
    ]
    assert foreign == []
