"""A version registered by its reference data alone (a model that runs outside the bundled
runtime): its schema is inferred, printed and overridable, it is stored with the version, and
the CLI and the admin API take and refuse the same inputs."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine

from monitor.commands import models
from monitor.commands.datasets import SchemaChoice, infer_schema
from monitor.dataschema import DataSchema
from monitor.errors import Conflict, ValidationFailed
from monitor.storage import models as stored_models
from monitor.storage import registry
from monitor.storage.engine import begin_write
from tests.commands.conftest import CARD, CLI_ERROR, MODEL, Both

COLUMNS = "machine,error_code,shift,temp,prediction,label,proba:fail,proba:ok,request_id"


def reference_frame(rows: int = 60) -> pd.DataFrame:
    """A reference of a model that runs elsewhere: text, a 30-value integer code, a small
    integer code, a float, its prediction, label, class probabilities and a record id."""
    return pd.DataFrame(
        {
            "machine": [("pump", "fan", "press")[i % 3] for i in range(rows)],
            "error_code": [i % 30 for i in range(rows)],
            "shift": [i % 3 for i in range(rows)],
            "temp": [70.0 + (i % 17) * 0.5 for i in range(rows)],
            "prediction": [("fail", "ok")[i % 2] for i in range(rows)],
            "label": [("fail", "ok")[(i // 2) % 2] for i in range(rows)],
            "proba:fail": [0.8 if i % 2 == 0 else 0.3 for i in range(rows)],
            "proba:ok": [0.2 if i % 2 == 0 else 0.7 for i in range(rows)],
            "request_id": [f"r{i}" for i in range(rows)],
        }
    )


def csv_bytes(frame: pd.DataFrame | None = None) -> bytes:
    return (reference_frame() if frame is None else frame).to_csv(index=False).encode()


def parquet_bytes(frame: pd.DataFrame | None = None) -> bytes:
    buffer = io.BytesIO()
    (reference_frame() if frame is None else frame).to_parquet(buffer, index=False)
    return buffer.getvalue()


def register_args(both: Both, reference: bytes, *extra: str, version: str = "1") -> list[str]:
    (both.files / "reference.data").write_bytes(reference)
    return [
        "models",
        "register",
        MODEL,
        "--version",
        version,
        "--reference",
        str(both.files / "reference.data"),
        *extra,
    ]


def printed_schema(out: str) -> dict[str, tuple[str, str]]:
    """The printed schema table: column -> (role, kind)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split() == ["COLUMN", "ROLE", "KIND"])
    table = {}
    for line in lines[start + 1 :]:
        column, role, kind = line.split()
        table[column] = (role, kind)
    return table


EXPECTED_INFERRED = {
    "machine": ("feature", "categorical"),
    # 30 distinct codes: past the code limit, a number unless declared categorical.
    "error_code": ("feature", "numerical"),
    "shift": ("feature", "categorical"),
    "temp": ("feature", "numerical"),
    "prediction": ("prediction", "-"),
    "proba:fail": ("probability", "-"),
    "proba:ok": ("probability", "-"),
    "label": ("label", "-"),
    "request_id": ("ignored", "-"),
}


@pytest.mark.parametrize("reference", [csv_bytes(), parquet_bytes()], ids=["csv", "parquet"])
def test_a_reference_alone_registers_a_version_and_prints_its_schema(
    both: Both, engine: Engine, reference: bytes
) -> None:
    models.add_model(engine, MODEL)

    assert both.cli(*register_args(both, reference)) == 0
    out = both.capsys.readouterr().out

    assert f"{MODEL} 1 registered as a candidate with reference data only (60 rows" in out
    assert "task: classification, classes: fail, ok" in out
    assert printed_schema(out) == EXPECTED_INFERRED
    version = models.model_versions(engine, MODEL).versions[0]
    assert (version.sha256, version.size, version.card, version.deployable) == (
        None,
        None,
        None,
        False,
    )
    assert version.reference_rows == 60
    assert version.schema is not None
    assert DataSchema.from_json(version.schema).kinds == {
        "machine": "categorical",
        "error_code": "numerical",
        "shift": "categorical",
        "temp": "numerical",
    }


def test_overrides_change_kinds_and_roles(both: Both, engine: Engine) -> None:
    models.add_model(engine, MODEL)
    args = ["--categorical", "error_code", "--numerical", "shift", "--ignore", "machine"]
    args += ["--label", "label", "--probability", "fail=proba:fail", "--positive-class", "fail"]

    assert both.cli(*register_args(both, csv_bytes(), *args)) == 0
    out = both.capsys.readouterr().out

    shown = printed_schema(out)
    assert shown["error_code"] == ("feature", "categorical")
    assert shown["shift"] == ("feature", "numerical")
    assert shown["machine"] == ("ignored", "-")
    # Only the probability named is one; the other is no feature either (a float, numerical).
    assert shown["proba:fail"] == ("probability", "-")
    assert shown["proba:ok"] == ("feature", "numerical")
    schema = DataSchema.from_json(models.model_versions(engine, MODEL).versions[0].schema)
    assert (schema.classes, schema.positive_class) == (("fail",), "fail")


def test_the_categorical_flag_takes_several_columns_and_repeats(engine: Engine) -> None:
    frame = reference_frame()
    choice = SchemaChoice(categorical=("error_code", "temp"), task="regression")

    inferred = infer_schema(frame, choice)

    assert inferred.schema.kinds["error_code"] == inferred.schema.kinds["temp"] == "categorical"
    assert inferred.schema.task == "regression"
    assert dict(inferred.schema.probabilities) == {} and inferred.schema.classes == ()


def test_a_regression_and_a_classification_are_told_by_the_prediction() -> None:
    frame = pd.DataFrame({"x": [1.5, 2.5, 3.5], "prediction": [10.2, 11.7, 9.1]})
    classes = pd.DataFrame({"x": [1.5, 2.5, 3.5], "prediction": [0, 1, 1], "label": [1, 1, 0]})

    assert infer_schema(frame).schema.task == "regression"
    assert infer_schema(classes).schema.task == "classification"
    assert infer_schema(classes).schema.classes == (0, 1)


def test_a_schema_file_is_used_as_given(both: Both, engine: Engine) -> None:
    models.add_model(engine, MODEL)
    schema = {
        "features": [
            {"name": "error_code", "kind": "categorical"},
            {"name": "temp", "kind": "numerical"},
        ],
        "prediction": "prediction",
        "probabilities": {"fail": "proba:fail", "ok": "proba:ok"},
        "classes": ["fail", "ok"],
        "positive_class": "fail",
    }
    (both.files / "schema.json").write_text(json.dumps(schema))

    code = both.cli(*register_args(both, csv_bytes(), "--schema", str(both.files / "schema.json")))

    assert code == 0
    shown = printed_schema(both.capsys.readouterr().out)
    assert shown["error_code"] == ("feature", "categorical")
    assert shown["machine"] == shown["label"] == ("ignored", "-")
    stored = models.model_versions(engine, MODEL).versions[0].schema
    assert DataSchema.from_json(stored) == DataSchema.from_json(schema)


def usage_error(both: Both, args: list[str]) -> str:
    """The one line the CLI prints for a usage error (exit 2), without its prefix."""
    assert both.cli(*args) == 2
    lines = both.capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(CLI_ERROR), lines[0]
    return lines[0].removeprefix(CLI_ERROR)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--categorical", "error_cod"], "--categorical: the reference has no column 'error_cod'"),
        (["--numerical", "temp", "tmp"], "--numerical: the reference has no column 'tmp'"),
        (["--prediction", "pred"], "--prediction: the reference has no column 'pred'"),
        (["--probability", "fail=p_fail"], "--probability: the reference has no column 'p_fail'"),
    ],
)
def test_an_override_naming_an_unknown_column_is_a_usage_error_listing_the_columns(
    both: Both, engine: Engine, flags: list[str], named: str
) -> None:
    models.add_model(engine, MODEL)

    said = usage_error(both, register_args(both, csv_bytes(), *flags))

    assert said == f"{named} (its columns: {COLUMNS.replace(',', ', ')})"
    assert models.model_versions(engine, MODEL).versions == []


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (
            ["--onnx", "model.onnx"],
            "--onnx and --card go together (a reference alone needs neither)",
        ),
        (
            ["--card", "card.json"],
            "--onnx and --card go together (a reference alone needs neither)",
        ),
        (
            ["--probability", "fail"],
            "--probability must look like CLASS=COLUMN, got 'fail'",
        ),
    ],
)
def test_flags_that_do_not_go_together_are_usage_errors(
    both: Both, engine: Engine, flags: list[str], said: str
) -> None:
    models.add_model(engine, MODEL)

    assert usage_error(both, register_args(both, csv_bytes(), *flags)) == said


def test_a_reference_alone_needs_a_version(both: Both, engine: Engine) -> None:
    models.add_model(engine, MODEL)
    (both.files / "ref.csv").write_bytes(csv_bytes())

    said = usage_error(
        both, ["models", "register", MODEL, "--reference", str(both.files / "ref.csv")]
    )

    assert said == "a reference without a card needs --version"


def test_a_text_column_cannot_be_numerical(both: Both, engine: Engine) -> None:
    models.add_model(engine, MODEL)

    said = both.cli_error(*register_args(both, csv_bytes(), "--numerical", "machine"))

    assert said == "column 'machine' holds object values, not numbers: it cannot be numerical"


def test_a_version_nodes_reported_gets_its_reference_and_a_second_one_is_a_conflict(
    engine: Engine,
) -> None:
    models.add_model(engine, MODEL)
    with begin_write(engine) as conn:
        model_id = stored_models.get_model(conn, MODEL).id
        reported = stored_models.version_id(conn, model_id, "7")

    registered = models.register_reference(engine, MODEL, "7", parquet_bytes())

    assert registered.version.id == reported
    assert registered.version.reference_rows == 60
    assert registered.ignored == ("request_id",)
    with pytest.raises(Conflict) as again:
        models.register_reference(engine, MODEL, "7", csv_bytes())
    assert again.value.code == "version_exists"


def test_a_reference_only_version_is_never_rolled_out(engine: Engine) -> None:
    models.add_model(engine, MODEL)
    models.register_reference(engine, MODEL, "1", csv_bytes())

    with pytest.raises(Conflict) as refused:
        models.promote(engine, MODEL, "1")

    assert refused.value.code == "not_registered"
    with engine.connect() as conn:
        model_id = stored_models.get_model(conn, MODEL).id
        assert registry.deployment(conn, model_id).production is None


def test_a_card_registration_stores_the_card_s_schema(engine: Engine) -> None:
    models.add_model(engine, MODEL)
    reference = (
        b"temperature_c,rpm,prediction,probability_fail,probability_ok\n70,1450,ok,0.1,0.9\n"
    )

    version = models.register_version(engine, MODEL, artifact=b"a", card=CARD, reference=reference)

    assert version.schema is not None
    schema = DataSchema.from_json(version.schema)
    assert schema.feature_names == tuple(f["name"] for f in CARD["features"])
    assert dict(schema.probabilities) == {"fail": "probability_fail", "ok": "probability_ok"}


def body(reference: bytes, **extra: Any) -> dict[str, Any]:
    return {"version": "1", "reference_base64": base64.b64encode(reference).decode(), **extra}


def test_the_api_registers_a_reference_alone_with_the_same_schema_as_the_cli(
    both: Both, engine: Engine
) -> None:
    models.add_model(engine, MODEL)
    assert both.cli(*register_args(both, csv_bytes(), "--categorical", "error_code")) == 0

    created = both.api(
        "POST",
        f"/models/{MODEL}/versions",
        body(parquet_bytes(), version="2", categorical=["error_code"]),
    )

    assert created.status_code == 201, created.text
    answer = created.json()
    assert (answer["version"], answer["sha256"], answer["reference_rows"]) == ("2", None, 60)
    by_cli = models.model_versions(engine, MODEL).versions[0].schema
    assert answer["schema"] == by_cli


REFUSED_BODIES = {
    "an override naming an unknown column": (
        {"categorical": ["error_cod"]},
        (422, "validation_failed", "categorical"),
    ),
    "a whole schema with a bad kind": (
        {"schema": {"features": [{"name": "temp", "kind": "numeric"}]}},
        (422, "validation_failed", "schema.features[0].kind"),
    ),
    "a whole schema and an override": (
        {"schema": {"features": [{"name": "temp", "kind": "numerical"}]}, "task": "regression"},
        (422, "validation_failed", "schema"),
    ),
    "no version": ({"version": None}, (422, "validation_failed", "version")),
    "an artifact without its card": (
        {"artifact_base64": "b25ueA=="},
        (422, "validation_failed", "card"),
    ),
    "a card with schema overrides": (
        {"artifact_base64": "b25ueA==", "card": {}, "categorical": ["temp"]},
        (422, "validation_failed", "categorical"),
    ),
}


@pytest.mark.parametrize(("extra", "expected"), REFUSED_BODIES.values(), ids=REFUSED_BODIES.keys())
def test_the_api_refuses_a_bad_reference_registration_with_the_field(
    both: Both, engine: Engine, extra: dict[str, Any], expected: tuple[int, str, str]
) -> None:
    models.add_model(engine, MODEL)

    refusal = both.api_refusal("POST", f"/models/{MODEL}/versions", body(csv_bytes(), **extra))

    assert (refusal.status, refusal.code, refusal.field) == expected
    assert models.model_versions(engine, MODEL).versions == []


REFUSED_REFERENCES = {
    "a header without rows": (
        b"machine,temp\n",
        "the reference is neither Parquet nor CSV with a header row and data rows",
    ),
    "no feature column": (
        b"ts,request_id,prediction\n1,a,ok\n",
        "the reference has no feature column (its columns: ts, request_id, prediction); "
        "name one with categorical or numerical",
    ),
    "a column name with a NUL": (
        parquet_bytes(pd.DataFrame({"te\x00mp": [1.0, 2.0]})),
        "the reference has a column name that is not text: 'te\\x00mp'",
    ),
}


@pytest.mark.parametrize(
    ("reference", "message"), REFUSED_REFERENCES.values(), ids=REFUSED_REFERENCES.keys()
)
def test_a_reference_that_cannot_be_used_is_refused(
    engine: Engine, reference: bytes, message: str
) -> None:
    models.add_model(engine, MODEL)

    with pytest.raises(ValidationFailed) as refused:
        models.register_reference(engine, MODEL, "1", reference)

    assert refused.value.details[0]["field"] == "reference"
    assert refused.value.message == message
    assert models.model_versions(engine, MODEL).versions == []
