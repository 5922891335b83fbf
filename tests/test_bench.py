"""The benchmarks under bench/ stay runnable: each parses its options and imports what it
measures (their figures are recorded in BENCHMARKS.md; tests never time anything)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.name != "common.py")


def test_there_are_benchmarks() -> None:
    assert {
        "p1_log_cost.py",
        "p3_ingest.py",
        "p7_window_load.py",
        "import_history.py",
        "analyse_period.py",
        "pooled_detection.py",
        "p6_fleet_page.py",
        "p8_estimation.py",
    } <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_a_benchmark_starts(script: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert "--quick" in result.stdout
