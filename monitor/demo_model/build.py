"""Train, export, quantize and document the demo pump-failure model, deterministically.

The data come from ``monitor.fleet.machines`` (default site and machine mix, no drift); the
features are preprocessed by the runtime's own ``Preprocessor`` from the card, so training and
serving cannot disagree. The model is a scikit-learn ``StandardScaler + MLPClassifier``
pipeline: skl2onnx turns it into plain MatMul/Add/Relu ops, which
``onnxruntime.quantization.quantize_dynamic`` can turn into int8 (tree ensembles would stay
fp32). The decision threshold maximises F1 of ``fail`` on a validation split.

scikit-learn, skl2onnx, onnx and pyarrow (the ``train`` extra) are imported inside
``build()`` only: importing this module on an edge node costs nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monitor.card import FeatureSpec, ModelCard, canonical_columns
from monitor.demo_model import MODEL_NAME, DemoFiles, files_in
from monitor.fleet import machines
from monitor.runtime.preprocess import Preprocessor

logger = logging.getLogger(__name__)

MODEL_VERSION = "1"
INPUT_NAME = "input"
#: Rows per split; each split is its own draw over the same four weeks.
TRAIN_ROWS, VALIDATION_ROWS, TEST_ROWS, REFERENCE_ROWS = 20_000, 5_000, 5_000, 5_000
SPAN_HOURS = 24.0 * 28
HIDDEN_LAYERS = (64, 32)
#: The training recipe this module implements, as a card names it (``metrics.recipe``).
RECIPE = "demo-mlp"
#: Single-row inferences timed per model for the report's latency.
LATENCY_CALLS = 2_000


@dataclass
class BuildReport:
    """What ``build()`` made and how the fp32 and int8 models compare on held-out data."""

    out: Path
    seed: int
    files: DemoFiles
    seconds: float
    threshold: float
    positive_rate: float
    sizes: dict[str, int] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    latency_us: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    agreement: float = 0.0
    max_probability_diff: float = 0.0
    #: The fitted scikit-learn pipeline (not written anywhere; for comparisons and tests).
    pipeline: Any = None

    def lines(self) -> list[str]:
        """The report as text lines (the CLI prints them)."""
        fp, q = self.metrics["fp32"], self.metrics["int8"]
        rows = [
            ("file size (bytes)", f"{self.sizes['fp32']:,}", f"{self.sizes['int8']:,}"),
            (
                "latency, batch 1 (median us)",
                f"{self.latency_us['fp32']:.1f}",
                f"{self.latency_us['int8']:.1f}",
            ),
        ]
        rows += [(name, f"{fp[name]:.4f}", f"{q[name]:.4f}") for name in fp]
        width = max(len(r[0]) for r in rows)
        out = [
            f"built {MODEL_NAME} {MODEL_VERSION} in {self.out} (seed {self.seed}, "
            f"{self.seconds:.1f} s)",
            f"held-out set: {TEST_ROWS:,} rows, {self.positive_rate:.1%} failures; "
            f"threshold on P(fail): {self.threshold:.2f}",
            f"{'':{width}}  {'fp32':>10}  {'int8':>10}",
        ]
        out += [f"{name:{width}}  {a:>10}  {b:>10}" for name, a, b in rows]
        out.append(
            f"int8 vs fp32: same label on {self.agreement:.2%} of the held-out set, "
            f"max |P diff| {self.max_probability_diff:.4f}"
        )
        for name, path in (
            ("fp32", self.files.model),
            ("int8", self.files.model_int8),
            ("card", self.files.card),
            ("reference", self.files.reference),
        ):
            out.append(f"{name:9} {path.name:24} sha256 {self.sha256[name]}")
        return out


def draft_card(train: machines.Readings) -> ModelCard:
    """The card before training: features (fill = training medians), columns, classes."""
    features = []
    for f in machines.FEATURES:
        if f.categorical:
            categories = tuple(sorted(machines.DEFAULT_MIX))
            features.append(FeatureSpec(f.name, "categorical", f.unit, categories=categories))
        else:
            assert f.low is not None and f.high is not None
            median = round(float(np.nanmedian(train.features[f.name])), f.decimals)
            features.append(FeatureSpec(f.name, "numeric", f.unit, (f.low, f.high), median))
    return ModelCard(
        name=MODEL_NAME,
        version=MODEL_VERSION,
        description=(
            "Predicts whether an industrial machine fails within "
            f"{machines.LABEL_HORIZON_DAYS} days from one sensor reading (synthetic demo data)."
        ),
        features=tuple(features),
        input_name=INPUT_NAME,
        columns=canonical_columns(features),
        probabilities_output="probabilities",
        label_output="label",
        classes=(machines.FAIL, machines.OK),  # sorted, as scikit-learn orders classes_
        positive_class=machines.FAIL,
        threshold=0.5,
    )


def _metrics(y_fail: np.ndarray, p_fail: np.ndarray, threshold: float) -> dict[str, float]:
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    pred = p_fail >= threshold
    return {
        "accuracy": round(float(accuracy_score(y_fail, pred)), 6),
        "precision": round(float(precision_score(y_fail, pred, zero_division=0)), 6),
        "recall": round(float(recall_score(y_fail, pred)), 6),
        "f1": round(float(f1_score(y_fail, pred)), 6),
        "roc_auc": round(float(roc_auc_score(y_fail, p_fail)), 6),
    }


def _best_threshold(y_fail: np.ndarray, p_fail: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    scores = [f1_score(y_fail, p_fail >= t) for t in grid]
    return float(grid[int(np.argmax(scores))])  # first best: deterministic on ties


def _median_latency_us(session: Any, matrix: np.ndarray) -> float:
    name = session.get_inputs()[0].name
    rows = [matrix[i : i + 1] for i in range(min(len(matrix), 256))]
    for row in rows[:50]:
        session.run(["probabilities"], {name: row})
    times = []
    for i in range(LATENCY_CALLS):
        row = rows[i % len(rows)]
        start = time.perf_counter_ns()
        session.run(["probabilities"], {name: row})
        times.append(time.perf_counter_ns() - start)
    return float(np.median(times)) / 1000.0


def train_pipeline(seed: int) -> tuple[Any, ModelCard, dict[str, Any]]:
    """Generate the splits and fit the pipeline: (pipeline, draft card, data by split).

    ``data[split]`` is ``(readings, float32 matrix, y_fail bool array)`` for ``train``,
    ``validation``, ``test`` and ``reference``.
    """
    gen = machines.MachineFleetGenerator(seed)
    sizes = {
        "train": TRAIN_ROWS,
        "validation": VALIDATION_ROWS,
        "test": TEST_ROWS,
        "reference": REFERENCE_ROWS,
    }
    readings = {split: gen.readings(n, hours=SPAN_HOURS) for split, n in sizes.items()}
    card = draft_card(readings["train"])
    prep = Preprocessor(card)
    data = {
        split: (r, prep.matrix(r.rows()), np.asarray(r.failure, dtype=bool))
        for split, r in readings.items()
    }
    _, x_train, y_train = data["train"]
    pipeline = fit_pipeline(x_train, np.where(y_train, machines.FAIL, machines.OK), seed)
    assert tuple(pipeline.classes_) == card.classes
    return pipeline, card, data


def fit_pipeline(x: np.ndarray, y: np.ndarray, seed: int, *, max_iter: int = 300) -> Any:
    """The recipe (``RECIPE``): fit ``StandardScaler + MLPClassifier`` on the card's float32
    columns ``x`` and class labels ``y``; the reference retrainer fits its candidates here."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    pipeline = Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "mlp",
                MLPClassifier(
                    HIDDEN_LAYERS,
                    alpha=1e-3,
                    max_iter=max_iter,
                    early_stopping=True,
                    random_state=seed,
                ),
            ),
        ]
    )
    pipeline.fit(x, y)
    return pipeline


def export_onnx(pipeline: Any, width: int) -> bytes:
    """The pipeline as ONNX bytes: float32 input ``[N, width]``, outputs label/probabilities."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    model = to_onnx(
        pipeline,
        initial_types=[(INPUT_NAME, FloatTensorType([None, width]))],
        final_types=None,
        options={"zipmap": False},
        target_opset={"": 17, "ai.onnx.ml": 3},
        naming=MODEL_NAME.replace("-", "_") + "_",
    )
    # Tie the file to this project, not to the converter's per-run details.
    model.doc_string = ""
    model.graph.name = MODEL_NAME.replace("-", "_")
    renames = {}
    for output in model.graph.output:
        if output.name.endswith("label") or output.name == "output_label":
            renames[output.name] = "label"
        elif output.name.endswith("probability") or output.name == "output_probability":
            renames[output.name] = "probabilities"
    _rename(model, renames)
    return model.SerializeToString()


def _rename(model: Any, renames: dict[str, str]) -> None:
    for node in model.graph.node:
        node.output[:] = [renames.get(n, n) for n in node.output]
        node.input[:] = [renames.get(n, n) for n in node.input]
    for output in model.graph.output:
        output.name = renames.get(output.name, output.name)


def quantize_int8(fp32: bytes) -> bytes:
    """Dynamic int8 quantization of the MatMul weights (QInt8), activations quantized per call."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    # The quantizer advises (on the root logger) shape-inference pre-processing, which is for
    # static quantization of image models, and notes each activation it leaves to be quantized
    # per call, which is what dynamic quantization means; neither changes anything here.
    advice = _DropMessage(
        "Please consider to run pre-processing", "Quantization parameters for tensor"
    )
    root.addFilter(advice)
    try:
        with tempfile.TemporaryDirectory(prefix="edge-monitor-quant-") as tmp:
            src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            src.write_bytes(fp32)
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
            return dst.read_bytes()
    finally:
        root.removeFilter(advice)


class _DropMessage(logging.Filter):
    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def write_reference(path: Path, card: ModelCard, readings: machines.Readings, p: Any) -> None:
    """The reference dataset: features, prediction, per-class probabilities, label."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, Any] = {}
    for f in card.features:
        values = readings.features[f.name]
        if f.type == "categorical":
            columns[f.name] = pa.array(values.tolist(), pa.string())
        else:
            columns[f.name] = pa.array(values, pa.float64(), mask=np.isnan(values))
    positive = card.classes.index(card.positive_class)
    pred = np.where(
        p[:, positive] >= card.threshold, card.classes[positive], card.classes[1 - positive]
    )
    columns["prediction"] = pa.array(pred.tolist(), pa.string())
    for i, cls in enumerate(card.classes):
        columns[f"probability_{cls}"] = pa.array(np.round(p[:, i].astype(np.float64), 6))
    columns["label"] = pa.array(readings.labels(), pa.string())
    pq.write_table(pa.table(columns), path, compression="zstd", compression_level=9)


def build(out: str | os.PathLike[str], seed: int = 42) -> BuildReport:
    """Rebuild the demo files in ``out``: same seed, byte-identical ONNX and the same data."""
    import onnxruntime as ort

    from monitor.runtime.runtime import session_options

    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = files_in(out)
    pipeline, card, data = train_pipeline(seed)

    fp32 = export_onnx(pipeline, len(card.columns))
    int8 = quantize_int8(fp32)
    sessions = {
        name: ort.InferenceSession(blob, session_options(1), providers=["CPUExecutionProvider"])
        for name, blob in (("fp32", fp32), ("int8", int8))
    }

    def p_of(name: str, matrix: np.ndarray) -> np.ndarray:
        return sessions[name].run(["probabilities"], {INPUT_NAME: matrix})[0]

    positive = card.classes.index(card.positive_class)
    _, x_val, y_val = data["validation"]
    threshold = _best_threshold(y_val, p_of("fp32", x_val)[:, positive])
    _, x_test, y_test = data["test"]
    p_test = {name: p_of(name, x_test) for name in sessions}
    metrics = {name: _metrics(y_test, p[:, positive], threshold) for name, p in p_test.items()}
    card = ModelCard.from_dict(
        {
            **card.to_dict(),
            "threshold": threshold,
            "metrics": {
                "held_out_rows": TEST_ROWS,
                "held_out_failure_rate": round(float(y_test.mean()), 6),
                "train_rows": TRAIN_ROWS,
                "threshold_selection": "max F1 of 'fail' on a 5,000-row validation split",
                "seed": seed,
                **metrics["fp32"],
            },
        }
    )

    files.model.write_bytes(fp32)
    files.model_int8.write_bytes(int8)
    card.save(files.card)
    reference, x_ref, _ = data["reference"]
    write_reference(files.reference, card, reference, p_of("fp32", x_ref))

    labels = {name: p[:, positive] >= threshold for name, p in p_test.items()}
    report = BuildReport(
        out=out,
        seed=seed,
        files=files,
        seconds=0.0,
        threshold=threshold,
        positive_rate=float(y_test.mean()),
        sizes={"fp32": len(fp32), "int8": len(int8)},
        sha256={
            name: hashlib.sha256(path.read_bytes()).hexdigest()
            for name, path in (
                ("fp32", files.model),
                ("int8", files.model_int8),
                ("card", files.card),
                ("reference", files.reference),
            )
        },
        latency_us={name: _median_latency_us(s, x_test) for name, s in sessions.items()},
        metrics=metrics,
        agreement=float(np.mean(labels["fp32"] == labels["int8"])),
        max_probability_diff=float(np.max(np.abs(p_test["fp32"] - p_test["int8"]))),
        pipeline=pipeline,
    )
    report.seconds = time.perf_counter() - started
    return report
