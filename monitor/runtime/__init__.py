"""Reference edge inference runtime: an ONNX model and its card, logged, hot-swappable."""

from __future__ import annotations

from monitor.card import CardError, FeatureSpec, ModelCard, canonical_columns
from monitor.runtime.monitors import VersionedMonitors
from monitor.runtime.preprocess import InvalidInput, Issue
from monitor.runtime.runtime import (
    EdgeRuntime,
    InferenceError,
    ModelError,
    MonitorFactory,
    Prediction,
    find_card,
)
from monitor.runtime.updates import ModelUpdater

__all__ = [
    "CardError",
    "EdgeRuntime",
    "FeatureSpec",
    "InferenceError",
    "InvalidInput",
    "Issue",
    "ModelCard",
    "ModelError",
    "ModelUpdater",
    "MonitorFactory",
    "Prediction",
    "VersionedMonitors",
    "canonical_columns",
    "find_card",
]
