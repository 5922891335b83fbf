"""The columnar batch payload: values round-trip, kinds are stable across batches."""

from __future__ import annotations

import pyarrow as pa
import pytest

from monitor.storage import payload


def rows(**features: list) -> list[dict]:
    count = len(next(iter(features.values())))
    return [
        {
            "id": f"r{i}",
            "ts": 1_700_000_000.5 + i,
            "features": {name: values[i] for name, values in features.items()},
            "prediction": "ok",
            "probabilities": {"ok": 0.75, "fail": 0.25},
            "latency_ms": 2.0,
        }
        for i in range(count)
    ]


def roundtrip(records: list[dict]) -> pa.Table:
    return payload.decode(payload.serialise(payload.build_table(records)))


def test_values_and_meta_columns_round_trip() -> None:
    table = roundtrip(rows(temperature=[70.5, 71.0], machine=["press", "lathe"], on=[True, False]))

    assert table.column_names == [
        "ts",
        "latency_ms",
        "prediction",
        "feature:temperature",
        "feature:machine",
        "feature:on",
        "proba:ok",
        "proba:fail",
    ]
    assert table.column("feature:temperature").to_pylist() == [70.5, 71.0]
    assert table.column("feature:machine").to_pylist() == ["press", "lathe"]
    assert table.column("feature:on").to_pylist() == [True, False]
    assert table.column("ts").type == pa.timestamp("us", tz="UTC")
    assert table.column("ts")[0].value == 1_700_000_000_500_000


def test_integers_are_stored_as_floats_so_batches_line_up() -> None:
    table = roundtrip(rows(rpm=[1450, 1500]))

    assert table.schema.field("feature:rpm").type == pa.float64()


def test_a_feature_mixing_text_and_numbers_in_a_batch_is_text() -> None:
    table = roundtrip(rows(code=[1, "E7", None]))

    assert table.column("feature:code").to_pylist() == ["1", "E7", None]


def test_missing_features_and_list_probabilities_take_the_careful_path() -> None:
    records = rows(a=[1.0, 2.0])
    del records[1]["features"]["a"]
    records[1]["features"]["b"] = "x"
    records[0]["probabilities"] = [0.1, 0.9]
    records[1]["probabilities"] = None

    table = roundtrip(records)

    assert table.column("feature:a").to_pylist() == [1.0, None]
    assert table.column("feature:b").to_pylist() == [None, "x"]
    assert table.column("proba:1").to_pylist() == [0.9, None]


def test_concat_fills_missing_columns_and_turns_conflicts_into_text() -> None:
    first = roundtrip(rows(code=[1.0, 2.0]))
    second = roundtrip(rows(code=["E7", "E8"], extra=[1.0, 2.0]))

    table = payload.concat([first, second])

    assert table.column("feature:code").to_pylist() == ["1", "2", "E7", "E8"]
    assert table.column("feature:extra").to_pylist() == [None, None, 1.0, 2.0]


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_every_compression_setting_round_trips(compression: str) -> None:
    records = rows(t=[float(i) for i in range(100)])

    table = payload.decode(payload.serialise(payload.build_table(records), compression))

    assert table.column("feature:t").to_pylist() == [float(i) for i in range(100)]


@pytest.mark.parametrize("careful", [False, True], ids=["fast", "careful"])
def test_device_times_are_a_float_column_only_where_a_record_had_one(careful: bool) -> None:
    records = rows(temperature=[70.5, 71.0, 72.0])
    records[1]["device_ts"] = 0.5  # its clock said 1970: ts is when it arrived
    records[2]["device_ts"] = 2**53
    if careful:
        records[0]["probabilities"] = [0.5, 0.5]  # lists take the careful path

    table = roundtrip(records)

    assert table.column_names[:4] == ["ts", "latency_ms", "prediction", payload.DEVICE_TS]
    assert table.schema.field(payload.DEVICE_TS).type == pa.float64()
    assert table.column(payload.DEVICE_TS).to_pylist() == [None, 0.5, 2.0**53]
    assert payload.DEVICE_TS not in roundtrip(rows(temperature=[1.0])).column_names
