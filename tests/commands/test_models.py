"""Model commands: the CLI and the admin API refuse the same input with the same error, and
the commands register and roll out versions as both promise."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine

from monitor.commands import models
from monitor.errors import ValidationFailed
from monitor.storage import registry
from tests.commands.conftest import CARD, MODEL, Both, Refusal, parquet


@dataclass(frozen=True)
class Registration:
    """The inputs of one version registration, as both the CLI and the API take them."""

    card: Any = field(default_factory=lambda: {**CARD, "version": "7"})
    artifact: bytes = b"onnx-7"
    reference: bytes | None = None
    version: str | None = None
    model: str = MODEL


REFUSED_REGISTRATIONS = {
    "a card naming another model": (
        Registration(card={**CARD, "name": "other"}),
        (422, "validation_failed", "card.name"),
    ),
    "a card with an unknown key": (
        Registration(card={**CARD, "treshold": 0.5}),
        (422, "validation_failed", "card.treshold"),
    ),
    "a card that is not an object": (
        Registration(card=["not", "a", "card"]),
        (422, "validation_failed", "card"),
    ),
    "a reference that is neither Parquet nor CSV": (
        Registration(reference=b"\x00\xff\xfe binary \x00"),
        (422, "validation_failed", "reference_base64"),
    ),
    "a reference that starts like Parquet but is not": (
        Registration(reference=b"PAR1 and then nothing of the sort"),
        (422, "validation_failed", "reference_base64"),
    ),
    "a CSV reference with a header and no rows": (
        Registration(reference=b"temperature_c,rpm\n"),
        (422, "validation_failed", "reference_base64"),
    ),
    "a version name that cannot be in a URL": (
        Registration(version="seven/eight"),
        (422, "validation_failed", "version"),
    ),
    "a card version that cannot be in a URL (and no version given)": (
        Registration(card={**CARD, "version": "_7"}),
        (422, "validation_failed", "card.version"),
    ),
    "an empty artifact": (
        Registration(artifact=b""),
        (422, "validation_failed", "artifact_base64"),
    ),
    "an unknown model": (
        Registration(model="ghost", card={**CARD, "name": "ghost"}),
        (404, "unknown_model", None),
    ),
    "a version already registered": (
        Registration(version="1"),
        (409, "version_exists", None),
    ),
}


@pytest.mark.parametrize(
    ("registration", "expected"),
    REFUSED_REGISTRATIONS.values(),
    ids=REFUSED_REGISTRATIONS.keys(),
)
def test_a_bad_registration_is_refused_alike_by_the_cli_and_the_api(
    both: Both, pump: str, registration: Registration, expected: tuple[int, str, str | None]
) -> None:
    inputs = {
        "artifact": registration.artifact,
        "card": registration.card,
        "reference": registration.reference,
        "version": registration.version,
    }

    said = both.cli_error(*both.register_cli_args(registration.model, **inputs))
    answer = both.api_refusal(
        "POST", f"/models/{registration.model}/versions", both.register_body(**inputs)
    )

    assert (answer.status, answer.code, answer.field) == expected
    assert said == answer.message


REFUSED_ROLLOUTS: dict[str, tuple[list[str], tuple[str, str, dict[str, Any] | None], Any]] = {
    "a canary share above one": (
        ["models", "canary", MODEL, "2", "--share", "1.5"],
        ("POST", f"/models/{MODEL}/canary", {"version": "2", "share": 1.5}),
        (422, "validation_failed", "share"),
    ),
    "a canary share of zero": (
        ["models", "canary", MODEL, "2", "--share", "0"],
        ("POST", f"/models/{MODEL}/canary", {"version": "2", "share": 0}),
        (422, "validation_failed", "share"),
    ),
    "a negative canary share": (
        ["models", "canary", MODEL, "2", "--share=-0.1"],
        ("POST", f"/models/{MODEL}/canary", {"version": "2", "share": -0.1}),
        (422, "validation_failed", "share"),
    ),
    "a canary of the production version": (
        ["models", "canary", MODEL, "1", "--share", "0.5"],
        ("POST", f"/models/{MODEL}/canary", {"version": "1", "share": 0.5}),
        (409, "bad_stage", None),
    ),
    "stopping a canary that is not there": (
        ["models", "canary", MODEL, "--stop"],
        ("DELETE", f"/models/{MODEL}/canary", None),
        (409, "no_canary", None),
    ),
    "promoting an unknown version": (
        ["models", "promote", MODEL, "9"],
        ("POST", f"/models/{MODEL}/promote/9", None),
        (404, "unknown_version", None),
    ),
    "promoting the production version again": (
        ["models", "promote", MODEL, "1"],
        ("POST", f"/models/{MODEL}/promote/1", None),
        (409, "already_production", None),
    ),
    "promoting a version of an unknown model": (
        ["models", "promote", "ghost", "1"],
        ("POST", "/models/ghost/promote/1", None),
        (404, "unknown_model", None),
    ),
    "pinning an unknown version": (
        ["models", "pin", MODEL, "9", "--group", "line-a"],
        ("POST", f"/models/{MODEL}/pins", {"version": "9", "group": "line-a"}),
        (404, "unknown_version", None),
    ),
    "pinning a group with a name too long": (
        ["models", "pin", MODEL, "2", "--group", "g" * 129],
        ("POST", f"/models/{MODEL}/pins", {"version": "2", "group": "g" * 129}),
        (422, "validation_failed", "group"),
    ),
    "unpinning a group that is not pinned": (
        ["models", "unpin", MODEL, "--group", "line-a"],
        ("DELETE", f"/models/{MODEL}/pins/line-a", None),
        (404, "not_pinned", None),
    ),
    "rolling back with no earlier production": (
        ["models", "rollback", MODEL],
        ("POST", f"/models/{MODEL}/rollback", None),
        (409, "no_previous", None),
    ),
    "listing the versions of an unknown model": (
        ["models", "versions", "ghost"],
        ("GET", "/models/ghost/versions", None),
        (404, "unknown_model", None),
    ),
}


@pytest.mark.parametrize(
    ("cli_args", "request_", "expected"), REFUSED_ROLLOUTS.values(), ids=REFUSED_ROLLOUTS.keys()
)
def test_a_bad_rollout_change_is_refused_alike_by_the_cli_and_the_api(
    both: Both,
    pump: str,
    cli_args: list[str],
    request_: tuple[str, str, dict[str, Any] | None],
    expected: tuple[int, str, str | None],
) -> None:
    said = both.cli_error(*cli_args)
    answer = both.api_refusal(*request_)

    assert (answer.status, answer.code, answer.field) == expected
    assert said == answer.message


REFUSED_MODELS = {
    "a name that cannot be in a URL": ("bad name!", "", (422, "validation_failed", "name")),
    "a description too long": ("pump-2", "d" * 1001, (422, "validation_failed", "description")),
    "a name already taken": (MODEL, "", (409, "model_exists", None)),
}


@pytest.mark.parametrize(
    ("name", "description", "expected"), REFUSED_MODELS.values(), ids=REFUSED_MODELS.keys()
)
def test_a_bad_model_is_refused_alike_by_the_cli_and_the_api(
    both: Both, pump: str, name: str, description: str, expected: tuple[int, str, str | None]
) -> None:
    said = both.cli_error("models", "add", name, "--description", description)
    answer = both.api_refusal("POST", "/models", {"name": name, "description": description})

    assert (answer.status, answer.code, answer.field) == expected
    assert said == answer.message


def test_the_version_is_the_card_s_unless_given_and_metrics_default_to_the_card_s(
    engine: Engine,
) -> None:
    models.add_model(engine, MODEL)

    from_card = models.register_version(engine, MODEL, artifact=b"a", card={**CARD, "version": "5"})
    given = models.register_version(
        engine, MODEL, artifact=b"b", card={**CARD, "version": "5"}, version="6", metrics={}
    )

    assert (from_card.version, from_card.metrics) == ("5", CARD["metrics"])
    assert (given.version, given.metrics) == ("6", {})
    assert from_card.stage == given.stage == "candidate"


def test_a_csv_reference_is_stored_as_parquet_with_its_rows(engine: Engine) -> None:
    models.add_model(engine, MODEL)

    version = models.register_version(
        engine,
        MODEL,
        artifact=b"a",
        card=CARD,
        reference=b"temperature_c,rpm\n70.5,1450\n71,1500\n",
    )

    assert version.reference_rows == 2
    with engine.connect() as conn:
        stored = registry.reference(conn, version.id)
    assert stored is not None
    table = pq.read_table(io.BytesIO(stored))
    assert table.column_names == ["temperature_c", "rpm"]
    assert table.column("rpm").to_pylist() == [1450, 1500]


def test_a_parquet_reference_is_stored_as_given(engine: Engine) -> None:
    models.add_model(engine, MODEL)
    data = parquet(30)

    version = models.register_version(engine, MODEL, artifact=b"a", card=CARD, reference=data)

    assert version.reference_rows == 30
    with engine.connect() as conn:
        assert registry.reference(conn, version.id) == data


def test_a_refused_registration_leaves_no_version_behind(engine: Engine) -> None:
    models.add_model(engine, MODEL)

    with pytest.raises(ValidationFailed):
        models.register_version(engine, MODEL, artifact=b"a", card=CARD, reference=b"PAR1 no")

    assert models.model_versions(engine, MODEL).versions == []


def test_each_version_knows_its_part_in_the_rollout(engine: Engine, pump: str) -> None:
    models.register_version(engine, pump, artifact=b"3", card={**CARD, "version": "3"})
    models.start_canary(engine, pump, "2", 0.25)
    pinned = models.pin(engine, pump, "3", "line-a")
    models.pin(engine, pump, "1", "line-b")

    roles = {r.version.version: r for r in models.model_versions(engine, pump).roles()}

    assert (roles["1"].production, roles["1"].canary_share, roles["1"].pinned_groups) == (
        True,
        None,
        ("line-b",),
    )
    assert (roles["2"].production, roles["2"].canary_share, roles["2"].pinned_groups) == (
        False,
        0.25,
        (),
    )
    assert roles["3"].pinned_groups == ("line-a",)
    assert pinned.version is not None and pinned.version.version == "3"
    assert pinned.deployment.pins == {"line-a": pinned.version}


def test_promote_then_rollback_report_the_version_and_the_new_rollout(
    engine: Engine, pump: str
) -> None:
    promoted = models.promote(engine, pump, "2")
    rolled = models.rollback(engine, pump)
    archived = models.archive(engine, pump, "2")

    assert promoted.version is not None and promoted.version.stage == "production"
    assert promoted.deployment.production == promoted.version
    assert rolled.version is not None and rolled.version.version == "1"
    assert rolled.deployment.previous is None
    assert archived.version is not None and archived.version.stage == "archived"


def test_models_are_listed_with_their_versions(engine: Engine, pump: str) -> None:
    models.add_model(engine, "another", description="no versions yet")

    listed = [(m.model.name, m.versions) for m in models.list_models(engine)]

    assert listed == [("another", ()), (MODEL, ("1", "2"))]


def test_the_cli_and_the_api_register_the_same_version_from_the_same_inputs(
    both: Both, pump: str
) -> None:
    csv = b"temperature_c,rpm\n70.5,1450\n71,1500\n"
    card = {**CARD, "version": "3"}

    assert both.cli(*both.register_cli_args(MODEL, artifact=b"x", card=card, reference=csv)) == 0
    said = both.capsys.readouterr().out
    created = both.api(
        "POST",
        f"/models/{MODEL}/versions",
        both.register_body(artifact=b"y", card=card, reference=csv, version="4"),
    )

    assert f"{MODEL} 3 registered as a candidate" in said and "2 reference rows" in said
    assert created.status_code == 201, created.text
    assert (created.json()["version"], created.json()["reference_rows"]) == ("4", 2)


def test_refusal_reads_the_envelope(both: Both) -> None:
    answer = both.api("POST", f"/models/{MODEL}/promote/1")

    assert Refusal.of(answer) == Refusal(404, "unknown_model", None, f"no model named {MODEL!r}")
