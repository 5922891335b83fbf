"""The commands' input checks, on their own: names, shares, texts, cards and reference data."""

from __future__ import annotations

import io
import json
import math

import pyarrow.parquet as pq
import pytest

from monitor import wire
from monitor.commands.checks import (
    check_card,
    check_name,
    check_share,
    check_text,
    reference_parquet,
)
from monitor.demo_model import paths
from monitor.errors import ValidationFailed
from tests.commands.conftest import parquet

CARD = json.loads(paths().card.read_text())


def field_of(refused: pytest.ExceptionInfo[ValidationFailed]) -> str:
    return refused.value.details[0]["field"]


@pytest.mark.parametrize("share", [1e-9, 0.5, 1, 1.0])
def test_a_share_in_zero_to_one_is_taken(share: float) -> None:
    assert check_share(share) == float(share)


@pytest.mark.parametrize("share", [0, 0.0, -0.1, 1.0000001, 2, math.nan, math.inf])
def test_a_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_share(share)

    assert field_of(refused) == "share"


@pytest.mark.parametrize("name", ["pump", "7", "a.b-c_d:e@f", "x" * wire.MAX_ID_CHARS])
def test_a_url_safe_name_is_taken(name: str) -> None:
    assert check_name(name, "version") == name


@pytest.mark.parametrize("name", ["", "_7", "a b", "a/b", "x" * (wire.MAX_ID_CHARS + 1)])
def test_a_name_that_is_not_url_safe_is_refused_with_its_field(name: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_name(name, "version", "version")

    assert field_of(refused) == "version"
    assert refused.value.message.startswith(f"invalid version {name!r}")


def test_an_optional_text_is_none_or_one_to_max_characters() -> None:
    assert check_text(None, "site", 3) is None
    assert check_text("abc", "site", 3) == "abc"
    for bad in ("", "abcd"):
        with pytest.raises(ValidationFailed) as refused:
            check_text(bad, "site", 3)
        assert field_of(refused) == "site"


def test_every_problem_of_a_card_is_listed_with_its_path() -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_card({**CARD, "treshold": 0.5, "colour": "red"}, CARD["name"])

    assert [d["field"] for d in refused.value.details] == ["card.colour", "card.treshold"]
    assert refused.value.message.startswith("invalid model card: ")
    assert check_card(CARD, CARD["name"]).name == CARD["name"]


def test_a_parquet_reference_is_kept_as_it_is() -> None:
    data = parquet(12)

    reference = reference_parquet(data)

    assert (reference.parquet, reference.rows) == (data, 12)


def test_a_csv_reference_becomes_parquet() -> None:
    reference = reference_parquet(b"machine_type,rpm\npress,1450\nlathe,1500\npress,1390\n")

    assert reference.rows == 3
    table = pq.read_table(io.BytesIO(reference.parquet))
    assert table.to_pydict() == {
        "machine_type": ["press", "lathe", "press"],
        "rpm": [1450, 1500, 1390],
    }


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff\xfe\x00",
        b"PAR1 truncated",
        b"only,a,header\n",
        parquet(0),
    ],
    ids=["empty", "binary", "broken parquet", "csv without rows", "parquet without rows"],
)
def test_reference_data_that_is_neither_is_refused_on_the_reference_field(data: bytes) -> None:
    with pytest.raises(ValidationFailed) as refused:
        reference_parquet(data)

    assert field_of(refused) == "reference"
    assert refused.value.message.startswith("the reference ")
