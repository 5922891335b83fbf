"""The model card: round trips, canonical columns, and every validation error with its path."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from monitor.card import CardError, FeatureSpec, ModelCard, canonical_columns


def test_the_shipped_card_round_trips_byte_for_byte(card: ModelCard, demo: Any) -> None:
    assert ModelCard.from_dict(card.to_dict()) == card
    assert card.dumps() == Path(demo.card).read_text(encoding="utf-8")
    assert card.name == "pump-failure" and card.version == "1"
    assert card.classes == ("fail", "ok") and card.positive_class == "fail"
    assert card.columns == canonical_columns(card.features)


def test_canonical_columns_are_numeric_first_then_one_hot_in_card_order() -> None:
    features = (
        FeatureSpec("kind", "categorical", categories=("b", "a")),
        FeatureSpec("x", "numeric", range=(0.0, 1.0)),
        FeatureSpec("mode", "categorical", categories=("on",)),
        FeatureSpec("y", "numeric"),
    )
    assert canonical_columns(features) == ("x", "y", "kind=b", "kind=a", "mode=on")


def test_any_permutation_of_the_columns_is_a_valid_card(card: ModelCard) -> None:
    data = card.to_dict()
    data["input"]["columns"] = list(reversed(data["input"]["columns"]))
    assert ModelCard.from_dict(data).columns == tuple(reversed(card.columns))


def test_save_and_load(card: ModelCard, tmp_path: Path) -> None:
    card.with_version("7").save(tmp_path / "c.json")
    loaded = ModelCard.load(tmp_path / "c.json")
    assert loaded.version == "7" and loaded.features == card.features


def edit(fn: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def apply(data: dict[str, Any]) -> dict[str, Any]:
        data = copy.deepcopy(data)
        fn(data)
        return data

    return apply


BAD_CARDS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "unknown key": (lambda d: d.update(treshold=0.3), "card.treshold"),
    "missing key": (lambda d: d.pop("classes"), "card.classes"),
    "format": (lambda d: d.update(format=2), "card.format"),
    "name alphabet": (lambda d: d.update(name="pump failure"), "card.name"),
    "empty version": (lambda d: d.update(version=""), "card.version"),
    "task": (lambda d: d.update(task="regression"), "card.task"),
    "feature type": (lambda d: d["features"][1].update(type="text"), "card.features[1].type"),
    "range order": (lambda d: d["features"][1].update(range=[5, 1]), "card.features[1].range"),
    "range shape": (lambda d: d["features"][1].update(range=[1]), "card.features[1].range"),
    "fill": (lambda d: d["features"][2].update(fill="median"), "card.features[2].fill"),
    "categories": (lambda d: d["features"][0].update(categories=[]), "card.features[0].categories"),
    "numeric key on categorical": (
        lambda d: d["features"][0].update(range=[0, 1]),
        "card.features[0].range",
    ),
    "duplicate feature": (
        lambda d: d["features"][2].update(name="ambient_temp_c"),
        "card.features[2].name",
    ),
    "missing column": (lambda d: d["input"]["columns"].pop(), "card.input.columns"),
    "unknown column": (lambda d: d["input"]["columns"].append("rpm=7"), "card.input.columns"),
    "input name": (lambda d: d["input"].update(name=""), "card.input.name"),
    "outputs": (lambda d: d["outputs"].pop("probabilities"), "card.outputs.probabilities"),
    "one class": (lambda d: d.update(classes=["ok"]), "card.classes"),
    "bool class": (lambda d: d.update(classes=[True, False]), "card.classes[0]"),
    "positive class": (lambda d: d.update(positive_class="broken"), "card.positive_class"),
    "threshold": (lambda d: d.update(threshold=1.5), "card.threshold"),
    "metrics": (lambda d: d.update(metrics=[1, 2]), "card.metrics"),
}


@pytest.mark.parametrize("case", BAD_CARDS, ids=list(BAD_CARDS))
def test_invalid_cards_name_the_field(case: str, card: ModelCard) -> None:
    change, path = BAD_CARDS[case]
    with pytest.raises(CardError) as caught:
        ModelCard.from_dict(edit(change)(card.to_dict()))
    assert path in [p for p, _ in caught.value.errors], caught.value.errors
    assert path in str(caught.value)


def test_several_problems_are_reported_together(card: ModelCard) -> None:
    data = card.to_dict()
    data["features"][2]["fill"] = "x"
    data["features"][3]["range"] = [1]
    data["outputs"] = "probabilities"
    with pytest.raises(CardError) as caught:
        ModelCard.from_dict(data)
    assert [p for p, _ in caught.value.errors] == [
        "card.features[2].fill",
        "card.features[3].range",
        "card.outputs",
    ]


def test_unreadable_files_are_card_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CardError, match="not JSON"):
        ModelCard.load(tmp_path / "bad.json")
    with pytest.raises(CardError, match="cannot read"):
        ModelCard.load(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text(json.dumps([1]))
    with pytest.raises(CardError, match="JSON object"):
        ModelCard.load(tmp_path / "list.json")
