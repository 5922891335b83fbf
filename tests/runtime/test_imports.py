"""What an edge node loads: the runtime needs only onnxruntime, numpy, prometheus_client (its
/metrics) and the SDK."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import monitor

PACKAGE = Path(monitor.__file__).resolve().parent
ALLOWED_THIRD_PARTY = {"numpy", "onnxruntime", "prometheus_client"}
ALLOWED_OURS = ("monitor.sdk", "monitor.wire", "monitor.card", "monitor.runtime")


def test_runtime_sources_import_only_the_runtime_extra_and_the_sdk() -> None:
    stdlib = set(sys.stdlib_module_names)
    bad = []
    for path in sorted((PACKAGE / "runtime").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "monitor":
                    ok = name == "monitor" or name.startswith(ALLOWED_OURS)
                else:
                    ok = top in stdlib or top in ALLOWED_THIRD_PARTY or top == "__future__"
                if not ok:
                    bad.append(f"{path.name} imports {name}")
    assert bad == []


PROBE = """
import json, sys
before = set(sys.modules)
import monitor.runtime, monitor.runtime.server, monitor.demo_model, monitor.demo_model.build
from monitor.demo_model import paths
from monitor.runtime import EdgeRuntime
runtime = EdgeRuntime(paths().model)
print(json.dumps(sorted({m.split(".")[0] for m in set(sys.modules) - before})))
"""


def test_serving_the_demo_model_loads_no_training_or_server_stack() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    loaded = set(json.loads(out.splitlines()[-1]))
    forbidden = {
        "sklearn",
        "skl2onnx",
        "onnx",
        "pandas",
        "pyarrow",
        "sqlalchemy",
        "fastapi",
        "pydantic",
        "httpx",
        "requests",
    }
    assert loaded & forbidden == set()
    assert {"onnxruntime", "numpy"} <= loaded
