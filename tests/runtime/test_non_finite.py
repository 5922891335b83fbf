"""No NaN is ever served: NaN or infinite probabilities are an error (422 when out-of-range
features caused them, 500 when the model alone is to blame), counted in the telemetry, and
the server answers every such request."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from monitor.runtime import EdgeRuntime, InferenceError, InvalidInput, ModelCard
from monitor.runtime.preprocess import FLOAT32_MAX
from monitor.runtime.server import make_server, serve_in_thread

#: A float32-finite rpm that the overflowing model turns into NaN probabilities.
HUGE_RPM = 3.0e38


def overflowing_model(card: ModelCard) -> bytes:
    """The demo card's input; probabilities = softmax([10 * rpm, 0]). Ordinary readings give a
    clean distribution, but an rpm over FLOAT32_MAX / 10 overflows the logit to infinity and
    softmax to NaN, as a real model's scaler or matrix product can."""
    weights = np.zeros((len(card.columns), 2), np.float32)
    weights[card.columns.index("rpm"), 0] = 10.0
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", [card.input_name, "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], [card.probabilities_output], axis=1),
        ],
        "overflowing",
        [helper.make_tensor_value_info(card.input_name, TensorProto.FLOAT, [None, None])],
        [helper.make_tensor_value_info(card.probabilities_output, TensorProto.FLOAT, [None, 2])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def card_for(card: ModelCard, *, rpm_range: bool) -> ModelCard:
    """The demo card without its label output, with or without a range for rpm."""
    data = card.to_dict()
    data["outputs"].pop("label", None)
    if not rpm_range:
        (rpm,) = (f for f in data["features"] if f["name"] == "rpm")
        rpm.pop("range")
    return ModelCard.from_dict(data)


@pytest.fixture
def ranged(card: ModelCard) -> Iterator[EdgeRuntime]:
    """The overflowing model with the card's rpm range [0, 6000]."""
    bounded = card_for(card, rpm_range=True)
    runtime = EdgeRuntime(overflowing_model(bounded), bounded)
    yield runtime
    runtime.close()


@pytest.fixture
def unranged(card: ModelCard) -> Iterator[EdgeRuntime]:
    """The overflowing model with no range for rpm: every finite float32 rpm is in range."""
    open_card = card_for(card, rpm_range=False)
    runtime = EdgeRuntime(overflowing_model(open_card), open_card)
    yield runtime
    runtime.close()


def test_the_overflowing_model_serves_ordinary_readings(
    ranged: EdgeRuntime, rows: list[dict[str, Any]]
) -> None:
    for row in rows[:50]:
        p = ranged.predict(row)
        assert all(np.isfinite(list(p.probabilities.values())))
    assert HUGE_RPM <= FLOAT32_MAX  # the input itself is a valid float32


def test_nan_from_an_out_of_range_feature_is_refused_naming_the_feature(
    ranged: EdgeRuntime, rows: list[dict[str, Any]]
) -> None:
    with pytest.raises(InvalidInput) as caught:
        ranged.predict({**rows[0], "rpm": HUGE_RPM})
    assert [(i.field, i.code) for i in caught.value.issues] == [
        ("features.rpm", "non_finite_output")
    ]
    with pytest.raises(InvalidInput) as caught:
        ranged.predict_batch([rows[0], {**rows[1], "rpm": HUGE_RPM}])
    assert [(i.field, i.code) for i in caught.value.issues] == [
        ("rows[1].rpm", "non_finite_output")
    ]
    t = ranged.telemetry()
    assert t["errors"] == {"non_finite_output": 2} and t["rows"] == 0
    assert ranged.predict(rows[0]).label in ("ok", "fail")


def test_nan_from_in_range_features_is_the_models_failure(
    unranged: EdgeRuntime, rows: list[dict[str, Any]]
) -> None:
    with pytest.raises(InferenceError) as caught:
        unranged.predict({**rows[0], "rpm": HUGE_RPM})
    assert caught.value.kind == "non_finite_output"
    with pytest.raises(InferenceError):
        unranged.predict_batch([{**rows[1], "rpm": HUGE_RPM}, rows[0]])
    assert unranged.telemetry()["errors"] == {"non_finite_output": 2}


def post(port: int, payload: Any) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/predict", body=json.dumps(payload).encode())
        resp = conn.getresponse()
        # parse_constant: any NaN or Infinity in an answer fails the test.
        return resp.status, json.loads(resp.read(), parse_constant=_no_constants)
    finally:
        conn.close()


def _no_constants(name: str) -> None:
    raise AssertionError(f"the answer holds {name}")


@pytest.mark.parametrize(
    ("which", "status", "code", "field", "detail"),
    [
        ("ranged", 422, "validation_failed", "features.rpm", "non_finite_output"),
        ("unranged", 500, "inference_failed", "model", "non_finite_output"),
    ],
)
def test_the_server_answers_nan_with_an_error_never_a_nan_prediction(
    which: str,
    status: int,
    code: str,
    field: str,
    detail: str,
    request: pytest.FixtureRequest,
    rows: list[dict[str, Any]],
) -> None:
    runtime: EdgeRuntime = request.getfixturevalue(which)
    server = make_server(runtime, "127.0.0.1", 0)
    thread = serve_in_thread(server)
    try:
        port = server.server_address[1]
        got, body = post(port, {"features": {**rows[0], "rpm": HUGE_RPM}})
        assert got == status
        assert body["error"]["code"] == code
        assert body["error"]["details"][0]["field"] == field
        assert body["error"]["details"][0]["code"] == detail
        assert post(port, {"features": rows[1]})[0] == 200
        assert runtime.telemetry()["errors"] == {"non_finite_output": 1}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
