"""The promotion gate: a candidate must beat production on recent labelled records it never saw.

Both versions' ONNX artifacts are run on the held-out slice with the runtime itself (the
card's preprocessing and threshold), so the figures are the accuracy each version would have
had serving those records. The candidate passes when its accuracy is at least production's
plus ``settings.retrain_promotion_margin``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from monitor.card import ModelCard
from monitor.errors import Conflict
from monitor.schema import feature_column
from monitor.storage import models, registry
from monitor.storage.labelled import LABEL, labelled_records, latest_record_time
from monitor.storage.registry import Version

logger = logging.getLogger(__name__)

#: Fewest held-out records the gate judges on: below, it fails (nothing proven).
MIN_HELD_OUT = 100
#: Without a held-out slice named by the candidate (an external hook's version): the newest
#: labelled records of this span, at most this many.
DEFAULT_SPAN = timedelta(days=1)
DEFAULT_ROWS = 5_000
#: Rows per inference call.
_CHUNK = 4_096


@dataclass(frozen=True, slots=True)
class HeldOut:
    """The slice the gate judges on: the labelled records with ``start <= ts < end`` whose
    ``bucket`` is below ``share`` (the retrainer trains on the others of that span)."""

    start: datetime
    end: datetime
    share: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "share": self.share}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HeldOut:
        return cls(
            datetime.fromisoformat(data["start"]),
            datetime.fromisoformat(data["end"]),
            float(data.get("share", 1.0)),
        )

    def select(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The slice's rows of labelled records read for ``[start, end)``."""
        if self.share >= 1.0:
            return frame
        return frame[bucket(frame["row_key"].to_numpy()) < self.share].reset_index(drop=True)


def bucket(row_keys: np.ndarray) -> np.ndarray:
    """Each record's fixed place in [0, 1), from its row key (Fibonacci hashing): a split by
    bucket is the same split whenever the records are read again, and it interleaves in time."""
    mixed = row_keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return (mixed >> np.uint64(11)).astype(np.float64) / float(2**53)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The gate's figures and its decision."""

    candidate: str
    production: str | None
    rows: int
    #: Held-out rows the cards refuse (invalid input): left out for both versions.
    skipped: int
    candidate_accuracy: float | None
    production_accuracy: float | None
    margin: float
    passed: bool
    reason: str
    held_out: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    engine: Engine,
    model: str,
    candidate: str,
    *,
    margin: float,
    held_out: HeldOut | None = None,
) -> Verdict:
    """Judge ``candidate`` against the production version on the held-out slice: the one the
    candidate's metrics name (``held_out``), else ``held_out``, else the newest labelled
    records. Never raises for a failed comparison: the verdict says why it failed."""
    with engine.connect() as conn:
        found = models.get_model(conn, model)
        version = registry.get_version(conn, found.id, candidate)
        production = registry.deployment(conn, found.id).production
        named = (version.metrics or {}).get("held_out")
        if isinstance(named, Mapping) and {"start", "end"} <= set(named):
            held_out = HeldOut.from_dict(named)
        if held_out is None:
            latest = latest_record_time(conn, found.id)
            end = (latest or datetime.now().astimezone()) + timedelta(microseconds=1)
            held_out = HeldOut(end - DEFAULT_SPAN, end)
            frame = labelled_records(
                conn, found.id, held_out.start, held_out.end, limit=DEFAULT_ROWS
            )
        else:
            frame = held_out.select(labelled_records(conn, found.id, held_out.start, held_out.end))
        artifacts = {v.id: registry.artifact(conn, v.id) for v in (version, production) if v}
    slice_ = held_out.to_dict()

    def fail(reason: str, **figures: Any) -> Verdict:
        base: dict[str, Any] = {
            "rows": len(frame),
            "skipped": 0,
            "candidate_accuracy": None,
            "production_accuracy": None,
        }
        base.update(figures)
        return Verdict(
            candidate,
            production.version if production else None,
            margin=margin,
            passed=False,
            reason=reason,
            held_out=slice_,
            **base,
        )

    if production is None or not production.deployable:
        return fail("no production version with an artifact to compare with")
    if production.id == version.id:
        return fail("the candidate is the production version")
    compared = compare(
        frame,
        (artifacts[version.id], _card(version)),
        (artifacts[production.id], _card(production)),
    )
    if compared.rows < MIN_HELD_OUT:
        return fail(
            f"{compared.rows} held-out labelled records, fewer than {MIN_HELD_OUT}",
            skipped=compared.skipped,
        )
    assert compared.candidate is not None and compared.production is not None
    ours, theirs = compared.candidate, compared.production
    passed = ours >= theirs + margin - 1e-12
    reason = (
        f"accuracy {ours:.4f} vs production {theirs:.4f}: "
        + ("beats it by the margin" if passed else "does not beat it by the margin")
        + f" {margin:.4f}"
    )
    return Verdict(
        candidate,
        production.version,
        rows=compared.rows,
        skipped=compared.skipped,
        candidate_accuracy=ours,
        production_accuracy=theirs,
        margin=margin,
        passed=passed,
        reason=reason,
        held_out=slice_,
    )


@dataclass(frozen=True, slots=True)
class Compared:
    """Both versions' accuracy on the same held-out rows (None without any row)."""

    rows: int
    skipped: int
    candidate: float | None
    production: float | None


def compare(
    frame: pd.DataFrame,
    candidate: tuple[bytes, ModelCard],
    production: tuple[bytes, ModelCard],
) -> Compared:
    """Run both versions (artifact, card) on the labelled rows that both cards accept."""
    rows, valid = feature_rows(frame, [candidate[1], production[1]])
    skipped = int((~valid).sum())
    kept = [r for r, ok in zip(rows, valid.tolist(), strict=True) if ok]
    if not kept:
        return Compared(0, skipped, None, None)
    truth = [str(x) for x in frame[LABEL].to_numpy()[valid].tolist()]
    ours, theirs = (accuracy_of(predict(a, c, kept), truth) for a, c in (candidate, production))
    return Compared(len(kept), skipped, round(ours, 6), round(theirs, 6))


def feature_rows(frame: pd.DataFrame, cards: Sequence[ModelCard]) -> tuple[list[dict], np.ndarray]:
    """The frame's rows as request features (as the runtime takes them) for the first card's
    features, and which rows every card accepts (invalid input is left out, not guessed)."""
    from monitor.runtime.preprocess import InvalidInput, Preprocessor

    names = cards[0].feature_names
    columns = []
    for name in names:
        column = feature_column(name)
        values = frame[column].tolist() if column in frame.columns else [None] * len(frame)
        columns.append([_plain(v) for v in values])
    rows = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    valid = np.ones(len(rows), dtype=bool)
    for card in cards:
        prep = Preprocessor(card)
        for i, row in enumerate(rows):
            if valid[i]:
                try:
                    prep.row(row)
                except InvalidInput:
                    valid[i] = False
    return rows, valid


def predict(artifact: bytes, card: ModelCard, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The labels one version gives these rows, through the runtime (as text)."""
    from monitor.runtime.runtime import EdgeRuntime

    runtime = EdgeRuntime(artifact, card)
    try:
        out: list[str] = []
        for start in range(0, len(rows), _CHUNK):
            out += [str(p.label) for p in runtime.predict_batch(rows[start : start + _CHUNK])]
        return out
    finally:
        runtime.close()


def accuracy_of(predicted: Sequence[str], truth: Sequence[str]) -> float:
    """Share of predictions equal to the label."""
    return float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))


def record(verdict: Verdict) -> None:
    """One log line per gate decision."""
    logger.info(
        "gate %s %s: %s (%d held-out rows)",
        verdict.candidate,
        "passed" if verdict.passed else "failed",
        verdict.reason,
        verdict.rows,
    )


def _card(version: Version) -> ModelCard:
    if version.card is None:
        raise Conflict(f"version {version.version!r} has no model card", code="no_card")
    return ModelCard.from_dict(version.card)


def _plain(value: Any) -> Any:
    """A frame value as the runtime takes it: NaN and missing as None, numpy as Python."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value
