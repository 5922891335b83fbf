"""EdgeRuntime: predictions, validation errors and warnings, telemetry, logging, thread safety."""

from __future__ import annotations

import json
import math
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from monitor.runtime import (
    EdgeRuntime,
    InvalidInput,
    ModelCard,
    ModelError,
    Prediction,
    find_card,
)
from monitor.runtime.preprocess import MAX_ISSUES, Preprocessor
from monitor.sdk import Monitor

from .conftest import RecordingMonitor


def direct(demo: Any, card: ModelCard, rows: list[dict[str, Any]]) -> np.ndarray:
    """P(class) straight from onnxruntime on the card's preprocessing."""
    session = ort.InferenceSession(str(demo.model), providers=["CPUExecutionProvider"])
    x = Preprocessor(card).matrix(rows)
    return session.run(["probabilities"], {"input": x})[0]


def test_predict_serves_the_model_through_its_card(
    runtime: EdgeRuntime, demo: Any, card: ModelCard, rows: list[dict[str, Any]]
) -> None:
    expected = direct(demo, card, rows[:200])
    for row, p in zip(rows[:200], expected, strict=True):
        got = runtime.predict(row)
        assert isinstance(got, Prediction)
        assert got.model_version == "1" and got.warnings == ()
        assert got.probabilities == pytest.approx({"fail": p[0], "ok": p[1]}, abs=1e-6)
        assert got.label == ("fail" if p[0] >= card.threshold else "ok")
        assert len(got.request_id) == 32 and got.latency_ms > 0
    labels = {runtime.predict(r).label for r in rows}
    assert labels == {"fail", "ok"}


def test_predict_batch_equals_predict(runtime: EdgeRuntime, rows: list[dict[str, Any]]) -> None:
    batch = runtime.predict_batch(rows[:300], request_ids=[f"r{i}" for i in range(300)])
    assert [b.request_id for b in batch] == [f"r{i}" for i in range(300)]
    for b, row in zip(batch, rows[:300], strict=True):
        single = runtime.predict(row)
        assert b.label == single.label
        assert b.probabilities == pytest.approx(single.probabilities, abs=1e-6)
    assert runtime.predict_batch([]) == []
    assert runtime.telemetry()["rows"] == 600


def with_(row: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(row)
    for key, value in changes.items():
        if value is KeyError:
            del out[key]
        else:
            out[key] = value
    return out


BAD_INPUTS: dict[str, tuple[Callable[[dict[str, Any]], Any], str, str]] = {
    "not an object": (lambda r: [r], "features", "not_an_object"),
    "missing feature": (lambda r: with_(r, rpm=KeyError), "features.rpm", "missing_feature"),
    "unknown feature": (lambda r: with_(r, colour="red"), "features.colour", "unknown_feature"),
    "string number": (lambda r: with_(r, rpm="1450"), "features.rpm", "invalid_type"),
    "bool number": (lambda r: with_(r, load_pct=True), "features.load_pct", "invalid_type"),
    "number category": (
        lambda r: with_(r, machine_type=3),
        "features.machine_type",
        "invalid_type",
    ),
    "infinite": (lambda r: with_(r, rpm=math.inf), "features.rpm", "invalid_value"),
    "list value": (lambda r: with_(r, rpm=[1.0]), "features.rpm", "invalid_type"),
    # Numbers the model's float32 input cannot hold (they would be served as NaN).
    "beyond float32": (lambda r: with_(r, rpm=1e308), "features.rpm", "invalid_value"),
    "just beyond float32": (lambda r: with_(r, rpm=3.5e38), "features.rpm", "invalid_value"),
    "far below float32": (lambda r: with_(r, load_pct=-1e39), "features.load_pct", "invalid_value"),
    "integer beyond any float": (lambda r: with_(r, rpm=10**400), "features.rpm", "invalid_value"),
    "numpy beyond float32": (
        lambda r: with_(r, rpm=np.float64(1e300)),
        "features.rpm",
        "invalid_value",
    ),
    # Unknown categories are served and logged: they must be strings the wire can carry.
    "category with NUL": (
        lambda r: with_(r, machine_type="pump\x00"),
        "features.machine_type",
        "invalid_value",
    ),
    "category with a lone surrogate": (
        lambda r: with_(r, machine_type="pump\udc80"),
        "features.machine_type",
        "invalid_value",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_is_refused_with_its_field(
    case: str, runtime: EdgeRuntime, rows: list[dict[str, Any]]
) -> None:
    make, field, code = BAD_INPUTS[case]
    with pytest.raises(InvalidInput) as caught:
        runtime.predict(make(rows[0]))
    assert (caught.value.issues[0].field, caught.value.issues[0].code) == (field, code)
    assert field in str(caught.value)
    t = runtime.telemetry()
    assert t["errors"] == {code: 1} and t["calls"] == 1 and t["rows"] == 0
    assert runtime.predict(rows[0]).label in ("ok", "fail")  # and it keeps serving


BAD_REQUEST_IDS = {
    "not a str": (17, "invalid_type"),
    "empty": ("", "invalid_value"),
    "too long": ("x" * 129, "invalid_value"),
    "NUL": ("evil\x00id", "invalid_value"),
    "lone surrogate": ("evil\ud800id", "invalid_value"),
}


@pytest.mark.parametrize("case", BAD_REQUEST_IDS, ids=list(BAD_REQUEST_IDS))
def test_a_request_id_the_wire_cannot_carry_is_refused_before_it_is_logged(
    case: str,
    demo: Any,
    rows: list[dict[str, Any]],
    recording_factory: tuple[Callable[..., RecordingMonitor], list[RecordingMonitor]],
) -> None:
    factory, made = recording_factory
    runtime = EdgeRuntime(demo.model, monitor=factory)
    request_id, code = BAD_REQUEST_IDS[case]
    with pytest.raises(InvalidInput) as caught:
        runtime.predict(rows[0], request_id=request_id)
    assert [(i.field, i.code) for i in caught.value.issues] == [("request_id", code)]
    with pytest.raises(InvalidInput) as caught:
        runtime.predict_batch(rows[:2], request_ids=["fine", request_id])
    assert [(i.field, i.code) for i in caught.value.issues] == [("request_ids[1]", code)]
    assert made[0].logged == []  # nothing reached the SDK
    assert runtime.telemetry()["errors"] == {code: 2}
    assert runtime.predict(rows[0], request_id="x" * 128).request_id == "x" * 128
    runtime.close()


def test_every_problem_of_a_request_is_listed(runtime: EdgeRuntime, rows: list[Any]) -> None:
    bad = with_(rows[0], rpm=KeyError, colour="red", load_pct="high")
    with pytest.raises(InvalidInput) as caught:
        runtime.predict(bad)
    assert [(i.field, i.code) for i in caught.value.issues] == [
        ("features.rpm", "missing_feature"),
        ("features.colour", "unknown_feature"),
        ("features.load_pct", "invalid_type"),
    ]
    with pytest.raises(InvalidInput) as caught:
        runtime.predict(rows[0], request_id=17)  # type: ignore[arg-type]
    assert caught.value.issues[0].field == "request_id"
    with pytest.raises(InvalidInput) as caught:
        runtime.predict_batch([rows[0], with_(rows[1], rpm="x")])
    assert caught.value.issues[0].field == "rows[1].rpm"


def test_integers_the_wire_refuses_are_refused_even_without_a_range(
    demo: Any, card: ModelCard, rows: list[dict[str, Any]]
) -> None:
    # Features are logged as they came: an integer beyond +-2**53 would be served, then its
    # record dropped by the SDK (wire.number_ok). Without a range, it takes the fast path.
    data = card.to_dict()
    (rpm,) = (f for f in data["features"] if f["name"] == "rpm")
    del rpm["range"]
    runtime = EdgeRuntime(demo.model, ModelCard.from_dict(data))
    assert runtime.predict(with_(rows[0], rpm=2**53)).warnings == ()
    assert runtime.predict(with_(rows[0], rpm=-(2**53))).warnings == ()
    for value in (2**53 + 1, -(2**53) - 1, np.int64(2**62), 10**400):
        with pytest.raises(InvalidInput) as caught:
            runtime.predict(with_(rows[0], rpm=value))
        assert [(i.field, i.code) for i in caught.value.issues] == [
            ("features.rpm", "invalid_value")
        ]
    assert runtime.predict(with_(rows[0], rpm=float(2**60))).warnings == ()  # a float travels


def test_a_request_with_thousands_of_problems_lists_the_first_fifty(
    runtime: EdgeRuntime, rows: list[Any]
) -> None:
    bad = {**rows[0], **{f"colour{i}": "red" for i in range(80_000)}}
    with pytest.raises(InvalidInput) as caught:
        runtime.predict(bad)
    issues = caught.value.issues
    assert len(issues) == MAX_ISSUES + 1
    assert {i.code for i in issues[:MAX_ISSUES]} == {"unknown_feature"}
    assert (issues[-1].field, issues[-1].code) == ("features", "too_many_issues")
    assert issues[-1].message == f"{80_000 - MAX_ISSUES} more not listed"
    assert runtime.telemetry()["errors"] == {"unknown_feature": 1}


def test_doubtful_values_are_served_with_warnings_and_counted(
    runtime: EdgeRuntime, demo: Any, card: ModelCard, rows: list[dict[str, Any]]
) -> None:
    fills = {f.name: f.fill for f in card.features}
    row = rows[0]
    hot = runtime.predict(with_(row, temperature_c=500.0))  # past the sensor's range
    assert [(w.field, w.code) for w in hot.warnings] == [("features.temperature_c", "out_of_range")]
    raw = direct(demo, card, [with_(row, temperature_c=500.0)])[0]
    assert hot.probabilities["fail"] == pytest.approx(raw[0], abs=1e-6)  # served as is

    missing = runtime.predict(with_(row, rpm=None, vibration_mm_s=float("nan")))
    assert {w.code for w in missing.warnings} == {"missing_value"}
    filled = runtime.predict(with_(row, rpm=fills["rpm"], vibration_mm_s=fills["vibration_mm_s"]))
    assert missing.probabilities == filled.probabilities

    unknown = runtime.predict(with_(row, machine_type="conveyor"))
    blank = runtime.predict(with_(row, machine_type=None))
    assert [w.code for w in unknown.warnings] == ["unknown_category"]
    assert [w.code for w in blank.warnings] == ["missing_value"]
    assert unknown.probabilities == blank.probabilities  # both: no category at all

    t = runtime.telemetry()
    assert t["warnings"] == {
        "out_of_range": {"temperature_c": 1},
        "missing_value": {"rpm": 1, "vibration_mm_s": 1, "machine_type": 1},
        "unknown_category": {"machine_type": 1},
    }
    assert t["errors_total"] == 0


def test_null_without_a_fill_value_is_an_error(demo: Any, card: ModelCard, rows: list) -> None:
    data = card.to_dict()
    data["features"][3]["fill"] = None  # rpm
    runtime = EdgeRuntime(demo.model, ModelCard.from_dict(data))
    with pytest.raises(InvalidInput) as caught:
        runtime.predict(with_(rows[0], rpm=None))
    assert (caught.value.issues[0].field, caught.value.issues[0].code) == (
        "features.rpm",
        "invalid_value",
    )


def test_numpy_scalars_and_other_mappings_are_accepted(
    runtime: EdgeRuntime, rows: list[dict[str, Any]]
) -> None:
    row = rows[5]
    as_numpy = {k: (np.float64(v) if isinstance(v, float) else v) for k, v in row.items()}
    as_numpy["operating_hours"] = np.int64(int(row["operating_hours"]))
    expected = runtime.predict(row).probabilities
    assert runtime.predict(as_numpy).probabilities == pytest.approx(expected, abs=1e-6)
    proxy = types.MappingProxyType(row)
    assert runtime.predict(proxy).probabilities == expected


def test_telemetry_latency_window_and_json(demo: Any, rows: list[dict[str, Any]]) -> None:
    runtime = EdgeRuntime(demo.model, window=50)
    assert runtime.telemetry()["latency_ms"] == {"window": 0}
    for row in rows[:120]:
        runtime.predict(row)
    t = runtime.telemetry()
    json.dumps(t, allow_nan=False)
    lat = t["latency_ms"]
    assert lat["window"] == 50
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert (t["calls"], t["rows"], t["model_version"], t["threads"]) == (120, 120, "1", 1)
    assert t["model_sha256"] == runtime.sha256 and len(runtime.sha256) == 64
    assert t["swap"]["swaps"] == 0 and t["swap"]["last_error"] is None


def test_every_served_call_is_logged_through_the_monitor(
    demo: Any, rows: list[dict[str, Any]], recording_factory: Any
) -> None:
    factory, made = recording_factory
    runtime = EdgeRuntime(demo.model, monitor=factory)
    (monitor,) = made
    assert monitor.model_version == "1" and monitor.telemetry == runtime.telemetry
    first = runtime.predict(rows[0], request_id="abc")
    second = runtime.predict(rows[1])
    with pytest.raises(InvalidInput):
        runtime.predict({"rpm": 1})
    batch = runtime.predict_batch(rows[2:5])
    assert first.request_id == "abc"
    assert len(monitor.logged) == 5  # the refused call is not a prediction
    made_ids = [second.request_id] + [b.request_id for b in batch]
    # Without an id from the caller the Monitor's record id is the request id: one id a record.
    assert [log["request_id"] for log in monitor.logged[1:]] == [None] * 4
    assert made_ids == ["1-2", "1-3", "1-4", "1-5"]
    unmonitored = [EdgeRuntime(demo.model).predict(r).request_id for r in rows[:2]]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in unmonitored)
    assert unmonitored[0][:12] <= unmonitored[1][:12]  # time-ordered, like the SDK record ids
    log = monitor.logged[0]
    assert log["features"] is rows[0]
    assert log["prediction"] == first.label
    assert log["probabilities"] == first.probabilities
    assert log["latency_ms"] == first.latency_ms
    runtime.log_label("abc", "fail")
    assert monitor.labels == [("abc", "fail")]
    runtime.close()
    assert monitor.closed.is_set()  # the runtime made it, the runtime closes it


def test_a_single_monitor_must_match_the_card_and_is_not_closed_by_the_runtime(
    demo: Any, card: ModelCard, dead_url: str, rows: list[dict[str, Any]]
) -> None:
    options = {"spool_dir": False, "heartbeat_interval": None}
    wrong = Monitor(dead_url, "emn_x", "pump-failure", "2", **options)
    with pytest.raises(ValueError, match="Monitor logs pump-failure 2"):
        EdgeRuntime(demo.model, monitor=wrong)
    wrong.close(0.1)
    mon = Monitor(dead_url, "emn_x", "pump-failure", "1", **options)
    runtime = EdgeRuntime(demo.model, monitor=mon)
    runtime.predict(rows[0])
    assert mon.stats()["logged"] == 1
    # One Monitor is bound to one version: a swap to another version is refused.
    with pytest.raises(ModelError) as caught:
        runtime.swap(Path(demo.model_int8).read_bytes(), card.with_version("2"))
    assert caught.value.code == "fixed_monitor"
    assert runtime.telemetry()["swap"]["last_error"]["code"] == "fixed_monitor"
    runtime.close()
    assert mon.stats()["logged"] == 1
    mon.log(rows[1], "ok")
    assert mon.stats()["enqueued"] == 2  # still open: the caller owns it
    mon.close(0.1)


def test_concurrent_calls_are_consistent(runtime: EdgeRuntime, rows: list[dict[str, Any]]) -> None:
    expected = [runtime.predict(r).probabilities for r in rows[:400]]
    results: dict[int, list[dict[str, float]]] = {}

    def work(k: int) -> None:
        results[k] = [runtime.predict(r).probabilities for r in rows[:400]]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[k] == expected for k in range(4))
    assert runtime.telemetry()["calls"] == 2000


def test_label_without_positive_class_is_the_arg_max(
    demo: Any, card: ModelCard, rows: list
) -> None:
    data = card.to_dict()
    data["positive_class"] = None
    runtime = EdgeRuntime(demo.model, ModelCard.from_dict(data))
    for row in rows[:300]:
        p = runtime.predict(row)
        assert p.label == max(p.probabilities, key=p.probabilities.__getitem__)


def test_models_that_do_not_fit_their_card_are_refused(demo: Any, card: ModelCard) -> None:
    data = Path(demo.model).read_bytes()
    with pytest.raises(ModelError) as caught:
        EdgeRuntime(b"not an onnx model", card)
    assert caught.value.code == "invalid_model"
    renamed = card.to_dict()
    renamed["input"]["name"] = "X"
    with pytest.raises(ModelError, match="graph inputs") as caught:
        EdgeRuntime(data, ModelCard.from_dict(renamed))
    assert caught.value.code == "card_mismatch"
    three = card.to_dict()
    three["classes"] = ["fail", "ok", "unknown"]
    with pytest.raises(ModelError, match="shape") as caught:
        EdgeRuntime(data, ModelCard.from_dict(three))
    assert caught.value.code == "card_mismatch"
    fewer = card.to_dict()
    fewer["features"][0]["categories"].pop()
    fewer["input"]["columns"].pop()
    with pytest.raises(ModelError, match="columns") as caught:
        EdgeRuntime(data, ModelCard.from_dict(fewer))
    assert caught.value.code == "card_mismatch"
    with pytest.raises(ValueError, match="needs its card"):
        EdgeRuntime(data)


def test_find_card_prefers_the_models_own_card(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    assert find_card(model) == tmp_path / "card.json"
    (tmp_path / "m.card.json").write_text("{}")
    assert find_card(model) == tmp_path / "m.card.json"


def test_the_int8_model_serves_with_the_same_card(demo: Any, rows: list[dict[str, Any]]) -> None:
    fp32 = EdgeRuntime(demo.model)
    int8 = EdgeRuntime(demo.model_int8, demo.card)
    agree = sum(fp32.predict(r).label == int8.predict(r).label for r in rows)
    assert agree / len(rows) >= 0.98


def test_recording_monitor_is_a_faithful_stand_in() -> None:
    # The fake used above must fail loudly if the runtime logs after closing it.
    mon = RecordingMonitor("pump-failure", "1")
    mon.close()
    with pytest.raises(AssertionError):
        mon.log({}, "ok")
