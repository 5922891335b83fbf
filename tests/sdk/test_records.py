"""Record and label building: what log() accepts, converts and refuses."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest

from monitor.sdk.records import (
    InvalidValue,
    build_label,
    build_record,
    features_value,
    new_id,
    new_id_pair,
    prediction_value,
    probabilities_value,
)
from monitor.wire import MAX_FEATURES


class FakeScalar:
    """Stands in for a numpy scalar: not a Python number, but has ``item()``."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def item(self) -> Any:
        return self.value


class FakeArray:
    def __init__(self, values: list[float]) -> None:
        self.values = values

    def tolist(self) -> list[float]:
        return list(self.values)


def test_ids_are_uuid4_hex() -> None:
    for value in (new_id(), *new_id_pair()):
        parsed = uuid.UUID(value)
        assert parsed.hex == value
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    a, b = new_id_pair()
    assert a != b


def test_plain_features_are_copied() -> None:
    features = {"t": 71.5, "kind": "press", "on": True, "n": 3, "missing": None}
    out = features_value(features)
    assert out == features
    features["t"] = 0.0
    assert out["t"] == 71.5


def test_non_finite_feature_values_become_null() -> None:
    out = features_value({"a": math.nan, "b": math.inf, "c": -math.inf, "d": 1.0})
    assert out == {"a": None, "b": None, "c": None, "d": 1.0}


def test_numpy_like_scalars_are_converted() -> None:
    out = features_value({"a": FakeScalar(2), "b": FakeScalar(True), "c": FakeScalar(math.nan)})
    assert out == {"a": 2, "b": True, "c": None}
    assert type(out["b"]) is bool
    assert prediction_value(FakeScalar("ok")) == "ok"
    assert probabilities_value(FakeArray([0.25, 0.75])) == [0.25, 0.75]


@pytest.mark.parametrize(
    "features",
    [None, [1, 2], "text", {1: 2.0}, {"a": object()}, {"a": [1, 2]}, {"a": {"b": 1}}],
)
def test_bad_features_are_invalid(features: Any) -> None:
    with pytest.raises(InvalidValue):
        features_value(features)


def test_too_many_features_are_invalid() -> None:
    with pytest.raises(InvalidValue):
        features_value({f"f{i}": i for i in range(MAX_FEATURES + 1)})


@pytest.mark.parametrize("prediction", [None, math.nan, math.inf, object(), [1], {"a": 1}])
def test_bad_predictions_are_invalid(prediction: Any) -> None:
    with pytest.raises(InvalidValue):
        prediction_value(prediction)


def test_probabilities() -> None:
    assert probabilities_value(None) is None
    assert probabilities_value({"ok": 0.9, "fail": 0.1}) == {"ok": 0.9, "fail": 0.1}
    assert probabilities_value({0: 0.9, 1: 0.1}) == {"0": 0.9, "1": 0.1}
    assert probabilities_value((0.5, 0.5)) == [0.5, 0.5]
    for bad in ("x", [math.nan], {"a": "b"}, {None: 0.1}, 3.0):
        with pytest.raises(InvalidValue):
            probabilities_value(bad)


def test_build_record_shape() -> None:
    rec = build_record("r1", "q1", 10.5, {"a": 1}, "ok", [0.1, 0.9], 1.5)
    assert rec == {
        "id": "r1",
        "ts": 10.5,
        "request_id": "q1",
        "features": {"a": 1},
        "prediction": "ok",
        "probabilities": [0.1, 0.9],
        "latency_ms": 1.5,
    }
    with pytest.raises(InvalidValue):
        build_record("r1", "q1", 10.5, {"a": 1}, "ok", None, "slow")


def test_build_label_shape() -> None:
    assert build_label("q1", "fail", 3.0) == {"request_id": "q1", "label": "fail", "ts": 3.0}
    with pytest.raises(InvalidValue):
        build_label("q1", None, 3.0)
