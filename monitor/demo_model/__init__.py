"""The shipped demo model: pump-failure ONNX (fp32 and int8), its card and reference data.

``paths()`` finds the files installed with the package. ``monitor.demo_model.build`` (needing
the ``train`` extra) rebuilds them deterministically: ``edge-monitor models build-demo``.

The reference dataset (``reference.parquet``) has one row per reading of the training
distribution: one column per feature (named as in the card; numeric float64, ``machine_type``
string), ``prediction`` (the fp32 model's label at the card's threshold), one
``probability_<class>`` column per class, and ``label`` (the true outcome, ``fail``/``ok``).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

MODEL_NAME = "pump-failure"
MODEL_FILE = "pump-failure.onnx"
MODEL_INT8_FILE = "pump-failure.int8.onnx"
CARD_FILE = "card.json"
REFERENCE_FILE = "reference.parquet"


@dataclass(frozen=True)
class DemoFiles:
    """Where the demo model's files are."""

    model: Path
    model_int8: Path
    card: Path
    reference: Path


def files_in(directory: str | Path) -> DemoFiles:
    """The demo file names inside ``directory`` (as written by the builder)."""
    base = Path(directory)
    return DemoFiles(
        base / MODEL_FILE, base / MODEL_INT8_FILE, base / CARD_FILE, base / REFERENCE_FILE
    )


def paths() -> DemoFiles:
    """The shipped files (package data; the package must be installed on a file system)."""
    return files_in(Path(str(resources.files(__name__) / "data")))
