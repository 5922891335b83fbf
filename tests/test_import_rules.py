"""DESIGN.md's import rules, checked on the source of every module under monitor/."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

import monitor

PACKAGE_DIR = Path(monitor.__file__).resolve().parent
#: The dashboard lives at the top of the repository and ships as monitor.dashboards.
DASHBOARDS_DIR = PACKAGE_DIR.parent / "dashboards"
STDLIB = frozenset(sys.stdlib_module_names)


def module_name(path: Path, root: Path = PACKAGE_DIR) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(source: str, module: str, is_package: bool, known: Iterable[str]) -> set[str]:
    """Every module this source imports, anywhere in the file (lazy imports count too).

    ``from a import b`` yields ``a``, and also ``a.b`` when that is a module of ours.
    """
    known = set(known)
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            names.add(base)
            names.update(
                f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known
            )
    return names


def scan(root: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """Module name -> the modules it imports, for every .py file under ``root``."""
    paths = sorted(root.rglob("*.py"))
    known = {module_name(path, root) for path in paths}
    return {
        module_name(path, root): imported_names(
            path.read_text(encoding="utf-8"),
            module_name(path, root),
            path.name == "__init__.py",
            known,
        )
        for path in paths
    }


def scan_all() -> dict[str, set[str]]:
    """``scan`` of the package and of the dashboard, under the name it ships as."""
    dashboards = {"monitor." + module: names for module, names in scan(DASHBOARDS_DIR).items()}
    return {**scan(), **dashboards}


def within(name: str, *prefixes: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


@dataclass(frozen=True)
class Rule:
    """Modules under ``scope`` may not import a name that ``forbidden`` accepts."""

    text: str
    scope: Callable[[str], bool]
    forbidden: Callable[[str], bool]

    def violations(self, imports: dict[str, set[str]]) -> list[str]:
        return sorted(
            f"{module} imports {name}"
            for module, names in imports.items()
            if self.scope(module)
            for name in names
            if self.forbidden(name)
        )


def _not_stdlib_sdk_or_wire(name: str) -> bool:
    if within(name, "monitor"):
        # The bare package is loaded by any `monitor.x` import; its __init__ is stdlib-only.
        return name != "monitor" and not within(name, "monitor.sdk", "monitor.wire", "monitor.card")
    return name.split(".")[0] not in STDLIB


SQL_AND_HTTP = ("sqlalchemy", "alembic", "psycopg", "psycopg2", "sqlite3")
SQL_AND_HTTP += ("fastapi", "starlette", "uvicorn", "httpx", "requests", "urllib3")
SQL_AND_HTTP += ("http", "urllib.request")

RULES = {
    "sdk-and-wire-are-stdlib-only": Rule(
        "monitor.sdk, monitor.wire, monitor.card and monitor.dataschema import only the standard "
        "library and ours",
        lambda module: within(
            module, "monitor.sdk", "monitor.wire", "monitor.card", "monitor.dataschema"
        ),
        _not_stdlib_sdk_or_wire,
    ),
    "fleet-is-edge-side": Rule(
        "monitor.fleet (the simulated nodes) never imports storage, collector, jobs or analysis",
        lambda module: within(module, "monitor.fleet"),
        lambda name: within(
            name, "monitor.storage", "monitor.collector", "monitor.jobs", "monitor.analysis"
        ),
    ),
    "runtime-not-storage-or-collector": Rule(
        "monitor.runtime never imports monitor.storage or monitor.collector",
        lambda module: within(module, "monitor.runtime"),
        lambda name: within(name, "monitor.storage", "monitor.collector"),
    ),
    "storage-not-upper-layers": Rule(
        "monitor.storage never imports collector, jobs, analysis or dashboards",
        lambda module: within(module, "monitor.storage"),
        lambda name: within(
            name,
            "monitor.collector",
            "monitor.jobs",
            "monitor.analysis",
            "monitor.dashboards",
            "dashboards",
        ),
    ),
    "analysis-is-pure": Rule(
        "monitor.analysis imports no SQL, no HTTP, no storage or collector",
        lambda module: within(module, "monitor.analysis"),
        lambda name: within(name, "monitor.storage", "monitor.collector", *SQL_AND_HTTP),
    ),
    "jobs-not-collector": Rule(
        "monitor.jobs never imports monitor.collector",
        lambda module: within(module, "monitor.jobs"),
        lambda name: within(name, "monitor.collector"),
    ),
    "collector-not-jobs-analysis-sdk": Rule(
        "monitor.collector never imports jobs, analysis or sdk",
        lambda module: within(module, "monitor.collector"),
        lambda name: within(name, "monitor.jobs", "monitor.analysis", "monitor.sdk"),
    ),
    "commands-below-collector-jobs-and-cli": Rule(
        "monitor.commands (shared by the CLI and the admin API) imports storage, alerts, card, "
        "dataschema, wire, errors and config of ours; never collector, jobs, analysis, sdk or cli",
        lambda module: within(module, "monitor.commands"),
        lambda name: (
            within(name, "monitor")
            and name != "monitor"
            and not within(
                name,
                "monitor.commands",
                "monitor.storage",
                "monitor.alerts",
                "monitor.card",
                "monitor.dataschema",
                "monitor.wire",
                "monitor.errors",
                "monitor.config",
            )
        ),
    ),
    "alerts-hold-no-sql": Rule(
        "monitor.alerts (rules, evaluation, signing, payloads) never imports storage, "
        "collector, jobs, commands, retrain or SQL",
        lambda module: within(module, "monitor.alerts"),
        lambda name: within(
            name,
            "monitor.storage",
            "monitor.collector",
            "monitor.jobs",
            "monitor.commands",
            "monitor.retrain",
            "sqlalchemy",
            "alembic",
        ),
    ),
    "retrain-not-collector-or-jobs": Rule(
        "monitor.retrain never imports monitor.collector or monitor.jobs",
        lambda module: within(module, "monitor.retrain"),
        lambda name: within(name, "monitor.collector", "monitor.jobs"),
    ),
    "dashboards-read-only-through-storage": Rule(
        "monitor.dashboards (the Streamlit app) reads through storage and the readers above it; "
        "it never imports collector, sdk, runtime, fleet or SQL drivers",
        lambda module: within(module, "monitor.dashboards"),
        lambda name: within(
            name,
            "monitor.collector",
            "monitor.sdk",
            "monitor.runtime",
            "monitor.fleet",
            "alembic",
            "psycopg",
            "sqlite3",
        ),
    ),
    "dashboard-data-is-plain": Rule(
        "monitor.dashboards.data prepares plain data: it never imports streamlit",
        lambda module: within(module, "monitor.dashboards.data"),
        lambda name: within(name, "streamlit"),
    ),
    "only-analysis-imports-evidently": Rule(
        "only monitor.analysis imports evidently",
        lambda module: not within(module, "monitor.analysis"),
        lambda name: within(name, "evidently"),
    ),
}


@pytest.fixture(scope="module")
def imports() -> dict[str, set[str]]:
    return scan_all()


def test_the_scan_finds_the_packages_and_their_imports(imports: dict[str, set[str]]) -> None:
    # Guards against a scan that checks nothing and so passes every rule.
    for package in (
        "monitor.sdk",
        "monitor.wire",
        "monitor.storage",
        "monitor.collector",
        "monitor.commands",
        "monitor.dashboards.data",
        "monitor.dashboards.views",
    ):
        assert any(within(module, package) for module in imports), f"no modules in {package}"
    assert "sqlalchemy" in imports["monitor.storage.tables"]
    assert "monitor.storage.types" in imports["monitor.storage.tables"]


@pytest.mark.parametrize("rule", RULES.values(), ids=RULES.keys())
def test_import_rule(rule: Rule, imports: dict[str, set[str]]) -> None:
    assert rule.violations(imports) == [], rule.text


def test_each_rule_catches_a_violation(tmp_path: Path) -> None:
    # A made-up package that breaks every rule once, including via relative and lazy imports.
    files = {
        "sdk/__init__.py": "",
        "sdk/spool.py": "import json\nfrom .. import config\n",
        "wire.py": "def f():\n    import numpy\n",
        "card.py": "import pandas\n",
        "fleet/__init__.py": "from monitor.storage import nodes\n",
        "runtime/__init__.py": "from monitor.storage import tables\n",
        "storage/__init__.py": "",
        "storage/tables.py": "from monitor.collector.app import create_app\n",
        "analysis/__init__.py": "import sqlalchemy as sa\nimport evidently\n",
        "jobs/__init__.py": "from monitor import collector\n",
        "collector/__init__.py": "from ..sdk import spool\n",
        "config.py": "from evidently import Report\n",
        "cli.py": "",
        "commands/__init__.py": "",
        "commands/models.py": "from monitor.storage import registry\nfrom .. import cli\n",
        "alerts/__init__.py": "",
        "alerts/rules.py": "from monitor.storage import tables\n",
        "retrain/__init__.py": "def f():\n    from monitor.jobs import analysis\n",
        "dashboards/__init__.py": "",
        "dashboards/data/__init__.py": "",
        "dashboards/data/fleet.py": "import streamlit as st\nfrom monitor.collector import app\n",
    }
    root = tmp_path / "monitor"
    for relative, source in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(source)
    found = {key: rule.violations(scan(root)) for key, rule in RULES.items()}
    assert found == {
        "sdk-and-wire-are-stdlib-only": [
            "monitor.card imports pandas",
            "monitor.sdk.spool imports monitor.config",
            "monitor.wire imports numpy",
        ],
        "fleet-is-edge-side": ["monitor.fleet imports monitor.storage"],
        "runtime-not-storage-or-collector": [
            "monitor.runtime imports monitor.storage",
            "monitor.runtime imports monitor.storage.tables",
        ],
        "storage-not-upper-layers": ["monitor.storage.tables imports monitor.collector.app"],
        "analysis-is-pure": ["monitor.analysis imports sqlalchemy"],
        "jobs-not-collector": ["monitor.jobs imports monitor.collector"],
        "collector-not-jobs-analysis-sdk": [
            "monitor.collector imports monitor.sdk",
            "monitor.collector imports monitor.sdk.spool",
        ],
        "commands-below-collector-jobs-and-cli": ["monitor.commands.models imports monitor.cli"],
        "alerts-hold-no-sql": [
            "monitor.alerts.rules imports monitor.storage",
            "monitor.alerts.rules imports monitor.storage.tables",
        ],
        "dashboards-read-only-through-storage": [
            "monitor.dashboards.data.fleet imports monitor.collector"
        ],
        "dashboard-data-is-plain": ["monitor.dashboards.data.fleet imports streamlit"],
        "retrain-not-collector-or-jobs": ["monitor.retrain imports monitor.jobs"],
        "only-analysis-imports-evidently": ["monitor.config imports evidently"],
    }


def test_importing_the_sdk_and_wire_loads_no_third_party_module() -> None:
    # What an edge node without extras gets: only modules loaded by the import itself count
    # (site-packages .pth hooks run before it and are not ours).
    program = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "import monitor.sdk, monitor.wire\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(result.stdout)
    assert "monitor.sdk" in loaded and "monitor.wire" in loaded
    third_party = sorted(
        {name.split(".")[0] for name in loaded} - STDLIB - {"monitor"},
    )
    assert third_party == []
