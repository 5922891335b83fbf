"""The bundled reference retrainer: recent labelled records + the production reference, the
card's recipe, ONNX (and int8) out, registered as the next candidate version.

What it trains on: the model's labelled records of the last ``Plan.recent`` (at most the
newest ``Plan.max_rows``) up to its newest record. The newest 30% of them are split by record
bucket (``gate.bucket``, a fixed hash of each record): 40% held out for the promotion gate, 20%
to validate, 40% to train on, so that all three see the latest data. The records to train on
are those and every older one; several spans of them (all, the newest half, quarter, tenth)
are tried, each with the production version's labelled reference rows making up 20% of the
training set (the recent records are what changed, the reference keeps what did not), and the
span whose model is most accurate on the validation rows is kept: after a concept drift, the
records since the drift teach best. The decision threshold is chosen on the validation rows:
the best F1 of the positive class among the thresholds within half a point of the best
accuracy (the gate judges accuracy). The candidate's reference is its training data; its
metrics and the run's details hold the held-out figures.

Recipes (named by a card's ``metrics.recipe``; the demo model's is ``demo-mlp`` whatever its
card says): ``demo-mlp``, the demo model's ``StandardScaler + MLPClassifier``
(``monitor.demo_model.build``). scikit-learn and skl2onnx (the ``train`` extra) are imported
only when a model is trained.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from monitor.card import ModelCard
from monitor.errors import Conflict
from monitor.retrain import gate
from monitor.schema import TS, feature_column
from monitor.storage import models, registry
from monitor.storage.engine import begin_write
from monitor.storage.labelled import LABEL, labelled_records, latest_record_time
from monitor.storage.types import utcnow

logger = logging.getLogger(__name__)

#: Recipes this retrainer knows.
RECIPES = ("demo-mlp",)
#: How much validation accuracy a threshold may give up for a better F1 (see ``_threshold``).
ACCURACY_SLACK = 0.005
#: Most production reference rows read.
MAX_REFERENCE = 100_000


@dataclass(frozen=True, slots=True)
class Plan:
    """How much data the retrainer reads and how it splits it."""

    #: How far back from the newest record "recent" reaches.
    recent: timedelta = timedelta(days=7)
    #: The newest labelled records read, at most.
    max_rows: int = 50_000
    #: The newest share of them, split by record bucket (``gate.bucket``) into the held-out
    #: slice, the validation rows and rows to train on: all three are "now".
    newest_share: float = 0.3
    held_out_bucket: float = 0.4
    validation_bucket: float = 0.2
    #: Fewest labelled records worth retraining on.
    min_labelled: int = 1000
    #: Largest share of the training set taken from the production reference.
    reference_share: float = 0.2
    #: Shares of the records to train on (the newest) tried; the best on validation wins: after
    #: a concept drift the newest records alone teach the new concept best.
    spans: tuple[float, ...] = (1.0, 0.5, 0.25, 0.1)
    #: Fewest recent records a shorter span is tried with.
    min_span_rows: int = 300
    #: Optimiser iterations (the recipe's default; tests use fewer).
    max_iter: int = 300


def recipe_of(card: ModelCard) -> str | None:
    """The training recipe the card names, or None."""
    from monitor.demo_model import MODEL_NAME

    named = card.metrics.get("recipe")
    if isinstance(named, str):
        return named
    return "demo-mlp" if card.name == MODEL_NAME else None


def retrain(
    engine: Engine,
    model: str,
    *,
    run_id: int,
    say: Callable[[str], None],
    plan: Plan | None = None,
) -> str:
    """Train, export and register the next version of ``model`` as a candidate; its name."""
    plan = plan or Plan()
    with engine.connect() as conn:
        found = models.get_model(conn, model)
        production = registry.deployment(conn, found.id).production
        if production is None or production.card is None:
            raise Conflict(
                f"{model} has no production version with a model card to retrain",
                code="no_production",
            )
        card = ModelCard.from_dict(production.card)
        recipe = recipe_of(card)
        if recipe is None:
            raise Conflict(
                f"the card of {model} {production.version} names no training recipe "
                f"(metrics.recipe); the reference retrainer knows: {', '.join(RECIPES)}",
                code="no_recipe",
            )
        if recipe not in RECIPES:
            raise Conflict(
                f"unknown training recipe {recipe!r}; known: {', '.join(RECIPES)}",
                code="unknown_recipe",
            )
        latest = latest_record_time(conn, found.id)
        if latest is None:
            raise Conflict(f"{model} has no stored records to retrain on", code="no_records")
        end = latest + timedelta(microseconds=1)
        say(f"reading labelled records of {model} from the last {plan.recent}")
        recent = labelled_records(conn, found.id, end - plan.recent, end, limit=plan.max_rows)
        reference_blob = registry.reference(conn, production.id)
        names = [v.version for v in registry.versions(conn, found.id)]
    if len(recent) < plan.min_labelled:
        raise Conflict(
            f"{len(recent)} labelled records in the last {plan.recent}, fewer than "
            f"{plan.min_labelled}: not enough to retrain on",
            code="too_few_labels",
        )
    recent = recent.reset_index(drop=True)
    n_newest = math.ceil(len(recent) * plan.newest_share)
    newest = recent.iloc[len(recent) - n_newest :]
    place = gate.bucket(newest["row_key"].to_numpy())
    held_bound = plan.held_out_bucket
    val_bound = held_bound + plan.validation_bucket
    held = newest[place < held_bound]
    validation = newest[(place >= held_bound) & (place < val_bound)]
    pool = pd.concat([recent.iloc[: len(recent) - n_newest], newest[place >= val_bound]])
    held_out = gate.HeldOut(_moment(newest[TS].iloc[0]), end, held_bound)
    say(
        f"{len(recent)} labelled records: {len(held)} of the newest held out for the gate "
        f"(from {held_out.start.isoformat()}), {len(validation)} to validate, "
        f"{len(pool)} to train on"
    )

    older, older_labels = _learnable(pool, card)
    val_rows, val_labels = _learnable(validation, card)
    all_reference, all_reference_labels = _reference_rows(reference_blob, card)
    candidate = _next_version(names)
    best: tuple[_Trained, int, int] | None = None
    for fraction in plan.spans:
        n = math.ceil(len(older) * fraction)
        if fraction < 1.0 and n < plan.min_span_rows:
            continue
        n_ref = math.floor(n * plan.reference_share / (1 - plan.reference_share))
        picked = _spread(len(all_reference), n_ref)
        trained = _train(
            card,
            [all_reference[i] for i in picked] + older[len(older) - n :],
            [all_reference_labels[i] for i in picked] + older_labels[len(older) - n :],
            val_rows,
            val_labels,
            run_id,
            plan,
        )
        say(
            f"trained {recipe} on the newest {n} records + {len(picked)} reference rows: "
            f"validation accuracy {trained.val_accuracy:.4f} at threshold {trained.threshold:.2f}"
        )
        if best is None or trained.val_accuracy > best[0].val_accuracy + 1e-9:
            best = (trained, n, len(picked))
    assert best is not None  # the whole span is always tried
    trained, n_recent, n_reference = best
    picked = _spread(len(all_reference), n_reference)
    reference_rows = [all_reference[i] for i in picked]
    reference_labels = [all_reference_labels[i] for i in picked]
    features = older[len(older) - n_recent :]
    labels = older_labels[len(older_labels) - n_recent :]
    say(f"kept the newest {n_recent} records + {n_reference} reference rows")

    say(f"evaluating {candidate} and {production.version} on the held-out records")
    draft = replace(card, version=candidate, threshold=trained.threshold)
    with engine.connect() as conn:
        production_artifact = registry.artifact(conn, production.id)
    compared = gate.compare(held, (trained.fp32, draft), (production_artifact, card))
    figures = {
        "held_out": held_out.to_dict(),
        "held_out_rows": compared.rows,
        "candidate_accuracy": compared.candidate,
        "production_accuracy": compared.production,
        "production": production.version,
    }
    say(
        f"held-out accuracy: {candidate} {compared.candidate} vs {production.version} "
        f"{compared.production} on {compared.rows} records"
    )
    new_card = replace(
        draft,
        metrics={
            "recipe": recipe,
            "retrained_from": production.version,
            "run_id": run_id,
            "trained_at": utcnow().isoformat(),
            "train_rows": len(reference_rows) + len(features),
            "recent_rows": len(features),
            "reference_rows": len(reference_rows),
            "int8": trained.int8,
            **figures,
        },
    )
    reference = _reference_parquet(
        new_card, reference_rows + features, reference_labels + labels, trained
    )
    say(f"exported ONNX ({len(trained.fp32):,} bytes) and int8 ({trained.int8['bytes']:,} bytes)")

    from monitor.commands.models import register_version

    register_version(
        engine,
        model,
        artifact=trained.fp32,
        card=new_card.to_dict(),
        reference=reference,
        version=candidate,
    )
    _save_figures(engine, run_id, {"version": candidate, **figures})
    say(f"registered {model} {candidate} as a candidate")
    return candidate


@dataclass(frozen=True, slots=True)
class _Trained:
    fp32: bytes
    threshold: float
    val_accuracy: float
    int8: dict[str, Any]
    session: Any


def _train(
    card: ModelCard,
    rows: list[dict[str, Any]],
    labels: list[str],
    val_rows: list[dict[str, Any]],
    val_labels: list[str],
    seed: int,
    plan: Plan,
) -> _Trained:
    """Fit the recipe, export, pick the threshold, quantize and compare int8 with fp32."""
    import onnxruntime as ort

    from monitor.demo_model import build
    from monitor.runtime.preprocess import Preprocessor
    from monitor.runtime.runtime import session_options

    prep = Preprocessor(card)
    class_of = {str(c): c for c in card.classes}
    missing = sorted(set(class_of) - set(labels))
    if missing:
        raise Conflict(
            f"no training record is labelled {', '.join(missing)}: every class is needed",
            code="missing_class",
        )
    y = np.asarray([class_of[label] for label in labels])
    pipeline = build.fit_pipeline(prep.matrix(rows), y, seed, max_iter=plan.max_iter)
    if tuple(pipeline.classes_.tolist()) != tuple(card.classes):
        # The recipe's probabilities come in sorted class order; the card must list them so.
        raise Conflict("the card's classes are not in sorted order", code="bad_classes")
    fp32 = build.export_onnx(pipeline, len(card.columns))
    int8 = build.quantize_int8(fp32)
    sessions = {
        name: ort.InferenceSession(blob, session_options(1), providers=["CPUExecutionProvider"])
        for name, blob in (("fp32", fp32), ("int8", int8))
    }
    threshold = card.threshold
    if card.positive_class is not None and len(card.classes) == 2 and val_rows:
        positive = card.classes.index(card.positive_class)
        y_val = np.array(val_labels) == str(card.positive_class)
        session = sessions["fp32"]
        p = session.run([card.probabilities_output], {card.input_name: prep.matrix(val_rows)})[0]
        if y_val.any():
            threshold = _threshold(y_val, p[:, positive])
    tuned = replace(card, threshold=threshold)
    # Judged as served: through the runtime, at the chosen threshold.
    predicted = gate.predict(fp32, tuned, val_rows)
    quantized = gate.predict(int8, tuned, val_rows)
    figures: dict[str, Any] = {
        "bytes": len(int8),
        "agreement": round(gate.accuracy_of(predicted, quantized), 6),
        "validation_accuracy": round(gate.accuracy_of(quantized, val_labels), 6),  # of int8
    }
    return _Trained(
        fp32, threshold, gate.accuracy_of(predicted, val_labels), figures, sessions["fp32"]
    )


def _threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The best F1 of the positive class among the thresholds whose accuracy is within
    ``ACCURACY_SLACK`` of the best accuracy: the gate and the accuracy alerts judge accuracy, and
    among nearly-as-accurate thresholds the one that finds the most positives is worth more."""
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    predicted = p[None, :] >= grid[:, None]
    accuracy = (predicted == y[None, :]).mean(axis=1)
    tp = (predicted & y[None, :]).sum(axis=1)
    f1 = 2 * tp / np.maximum(predicted.sum(axis=1) + y.sum(), 1)
    near = accuracy >= accuracy.max() - ACCURACY_SLACK
    return float(grid[int(np.argmax(np.where(near, f1, -1.0)))])  # first best: deterministic


def _reference_rows(blob: bytes | None, card: ModelCard) -> tuple[list[dict[str, Any]], list[str]]:
    """The labelled rows of the production reference, as features (up to ``MAX_REFERENCE``,
    evenly spread)."""
    if blob is None:
        return [], []
    frame = pd.read_parquet(io.BytesIO(blob))
    if LABEL not in frame.columns or not set(card.feature_names) <= set(frame.columns):
        return [], []
    frame = frame[frame[LABEL].notna()]
    frame = frame.iloc[_spread(len(frame), MAX_REFERENCE)]
    renamed = frame.rename(columns={n: feature_column(n) for n in card.feature_names})
    rows, valid = gate.feature_rows(renamed, [card])
    valid &= _known_labels(frame, card)
    kept = [r for r, ok in zip(rows, valid.tolist(), strict=True) if ok]
    return kept, [str(x) for x in frame[LABEL].to_numpy()[valid].tolist()]


def _spread(total: int, most: int) -> list[int]:
    """Up to ``most`` of ``range(total)``, evenly spread (all of them when there are fewer)."""
    if most >= total:
        return list(range(total))
    if most <= 0:
        return []
    return np.linspace(0, total - 1, most).astype(int).tolist()


def _learnable(frame: pd.DataFrame, card: ModelCard) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows the card accepts that are labelled with one of its classes: features, labels."""
    rows, valid = gate.feature_rows(frame, [card])
    valid &= _known_labels(frame, card)
    kept = [r for r, ok in zip(rows, valid.tolist(), strict=True) if ok]
    return kept, [str(x) for x in frame[LABEL].to_numpy()[valid].tolist()]


def _known_labels(frame: pd.DataFrame, card: ModelCard) -> np.ndarray:
    """Which rows are labelled with one of the card's classes (others cannot be learnt)."""
    known = {str(c) for c in card.classes}
    return np.array([str(x) in known for x in frame[LABEL].tolist()], dtype=bool)


def _reference_parquet(
    card: ModelCard, rows: list[dict[str, Any]], labels: list[str], trained: _Trained
) -> bytes:
    """The training data as reference (the demo's format): features, the candidate's
    prediction and class probabilities, the label."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from monitor.runtime.preprocess import Preprocessor

    p = trained.session.run(
        [card.probabilities_output], {card.input_name: Preprocessor(card).matrix(rows)}
    )[0]
    columns: dict[str, Any] = {}
    for f in card.features:
        values = [r.get(f.name) for r in rows]
        if f.type == "categorical":
            columns[f.name] = pa.array(values, pa.string())
        else:
            columns[f.name] = pa.array(values, pa.float64())
    if card.positive_class is not None and len(card.classes) == 2:
        positive = card.classes.index(card.positive_class)
        prediction = np.where(
            p[:, positive] >= trained.threshold, card.classes[positive], card.classes[1 - positive]
        )
    else:
        prediction = np.asarray(card.classes, dtype=object)[np.argmax(p, axis=1)]
    class_of = {str(c): c for c in card.classes}
    # Predictions and labels as the card's classes (text, or integers), as records carry them.
    columns["prediction"] = pa.array([class_of[str(x)] for x in prediction.tolist()])
    for i, cls in enumerate(card.classes):
        columns[f"probability_{cls}"] = pa.array(np.round(p[:, i].astype(np.float64), 6))
    columns[LABEL] = pa.array([class_of[label] for label in labels])
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink, compression="zstd")
    return sink.getvalue()


def _next_version(names: list[str]) -> str:
    """The next free version name: one more than the largest numeric one, else ``r<n>``."""
    taken = set(names)
    numbers = [int(n) for n in names if n.isdigit()]
    n = max(numbers) + 1 if numbers else 1
    name = str(n) if numbers else f"r{n}"
    while name in taken:
        n += 1
        name = str(n) if numbers else f"r{n}"
    return name


def _save_figures(engine: Engine, run_id: int, figures: dict[str, Any]) -> None:
    """The held-out figures in the run's details (the version's metrics hold them too)."""
    from monitor.storage import retrains

    with begin_write(engine) as conn:
        if retrains.find_run(conn, run_id) is None:
            return  # trained outside a recorded run
        # The status stays what it is (a run that timed out meanwhile stays timed out).
        status = retrains.lock_run(conn, run_id).status
        retrains.set_run(conn, run_id, status=status, now=utcnow(), details={"trained": figures})


def _moment(value: Any) -> datetime:
    stamp = pd.Timestamp(value)
    return stamp.to_pydatetime() if stamp.tzinfo else stamp.tz_localize("UTC").to_pydatetime()
