"""A version's data schema: its JSON form round-trips, bad JSON is refused with every field
path, and a card implies the schema the bundled runtime's windows have."""

from __future__ import annotations

import json
from typing import Any

import pytest

from monitor.dataschema import DataSchema, SchemaError, version_schema
from monitor.demo_model import paths

SCHEMA = DataSchema(
    features=(("machine", "categorical"), ("error_code", "categorical"), ("temp", "numerical")),
    prediction="prediction",
    label="label",
    probabilities={"fail": "proba:fail", "ok": "proba:ok"},
    task="classification",
    classes=("fail", "ok"),
    positive_class="fail",
)


def test_a_schema_round_trips_through_json() -> None:
    text = json.dumps(SCHEMA.to_json())

    assert DataSchema.from_json(json.loads(text)) == SCHEMA
    assert SCHEMA.kinds == {
        "machine": "categorical",
        "error_code": "categorical",
        "temp": "numerical",
    }


def test_a_minimal_schema_file_needs_only_its_features() -> None:
    schema = DataSchema.from_json({"features": [{"name": "x", "kind": "numerical"}]})

    assert schema == DataSchema(features=(("x", "numerical"),))
    assert (schema.task, schema.prediction, dict(schema.probabilities)) == (
        "classification",
        None,
        {},
    )


def test_columns_lists_each_named_column_with_its_role() -> None:
    assert SCHEMA.columns() == [
        ("machine", "feature", "categorical"),
        ("error_code", "feature", "categorical"),
        ("temp", "feature", "numerical"),
        ("prediction", "prediction", None),
        ("proba:fail", "probability", None),
        ("proba:ok", "probability", None),
        ("label", "label", None),
    ]


BAD = {
    "not an object": ([1], [("schema", "must be an object")]),
    "an unknown key": (
        {"features": [{"name": "x", "kind": "numerical"}], "treshold": 1},
        [("schema.treshold", "unknown key")],
    ),
    "a bad kind and a name that is not text": (
        {"features": [{"name": "x", "kind": "numeric"}, {"name": 3, "kind": "categorical"}]},
        [
            ("schema.features[0].kind", "must be one of numerical, categorical"),
            ("schema.features[1].name", "must be a string"),
        ],
    ),
    "no features": ({"features": []}, [("schema.features", "must name at least one feature")]),
    "a feature listed twice": (
        {"features": [{"name": "x", "kind": "numerical"}, {"name": "x", "kind": "categorical"}]},
        [("schema.features[1].name", "'x' is listed twice")],
    ),
    "the prediction is also a feature": (
        {"features": [{"name": "x", "kind": "numerical"}], "prediction": "x"},
        [("schema.prediction", "column 'x' is already the feature")],
    ),
    "an unknown task": (
        {"features": [{"name": "x", "kind": "numerical"}], "task": "ranking"},
        [("schema.task", "must be one of classification, regression")],
    ),
    "a positive class outside the classes": (
        {"features": [{"name": "x", "kind": "numerical"}], "classes": [0, 1], "positive_class": 2},
        [("schema.positive_class", "must be one of classes, or null")],
    ),
    "a regression with class probabilities": (
        {
            "features": [{"name": "x", "kind": "numerical"}],
            "task": "regression",
            "probabilities": {"a": "p_a"},
        },
        [("schema.task", "a regression has no classes or class probabilities")],
    ),
}


@pytest.mark.parametrize(("data", "errors"), BAD.values(), ids=BAD.keys())
def test_a_bad_schema_names_every_field_at_fault(data: Any, errors: list[tuple[str, str]]) -> None:
    with pytest.raises(SchemaError) as caught:
        DataSchema.from_json(data)

    assert caught.value.errors == errors


def test_the_card_gives_the_features_kinds_classes_and_the_reference_s_column_names() -> None:
    card = json.loads(paths().card.read_text())
    columns = ["machine_type", "rpm", "prediction", "probability_fail", "proba:ok", "label"]

    schema = DataSchema.from_card(card, columns)

    assert schema.kinds["machine_type"] == "categorical"
    assert schema.kinds["rpm"] == "numerical"
    assert schema.feature_names == tuple(f["name"] for f in card["features"])
    assert dict(schema.probabilities) == {"fail": "probability_fail", "ok": "proba:ok"}
    assert (schema.prediction, schema.label) == ("prediction", "label")
    assert (schema.task, schema.classes, schema.positive_class) == (
        "classification",
        ("fail", "ok"),
        "fail",
    )


def test_a_version_without_a_stored_schema_has_its_card_s() -> None:
    card = json.loads(paths().card.read_text())

    assert version_schema(SCHEMA.to_json(), card) == SCHEMA
    assert version_schema(None, card) == DataSchema.from_card(card)
    assert version_schema(None, None) is None
