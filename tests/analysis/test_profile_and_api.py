"""Method choice and column kinds as Evidently's, spec checks, and the API's edge cases."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from evidently.core.datasets import infer_column_type
from evidently.legacy.calculations.stattests.registry import _get_default_stattest
from evidently.legacy.core import ColumnType

from monitor.analysis import DriftSpec, ReferenceProfile, analyse_drift
from monitor.analysis.columns import infer_kind
from monitor.analysis.spec import default_method
from tests.analysis.synthetic import frame


@pytest.mark.parametrize("n_reference", [50, 1_000, 1_001, 5_000])
@pytest.mark.parametrize("n_values", [1, 2, 3, 5, 6, 25])
@pytest.mark.parametrize("kind", ["numerical", "categorical"])
def test_default_method_is_evidentlys(kind: str, n_reference: int, n_values: int) -> None:
    reference = pd.Series(np.arange(n_reference) % n_values, dtype=float)
    current = pd.Series([0.0])
    column_type = ColumnType.Numerical if kind == "numerical" else ColumnType.Categorical
    expected = _get_default_stattest(reference, current, column_type).name
    assert default_method(kind, n_reference, n_values) == expected


@pytest.mark.parametrize(
    "series",
    [
        pd.Series([1.5, 2.5, np.nan]),
        pd.Series(np.arange(30)),
        pd.Series(np.arange(30) % 4),
        pd.Series([True, False, True]),
        pd.Series(pd.Categorical(["a", "b", "a"])),
        pd.Series(["a", "b", "a", "a"], dtype=object),
    ],
    ids=["float", "int-many", "int-few", "bool", "category", "object"],
)
def test_column_kinds_follow_evidentlys_inference(series: pd.Series) -> None:
    expected = {ColumnType.Numerical: "numerical", ColumnType.Categorical: "categorical"}
    assert infer_kind(series) == expected[infer_column_type(series)]


def test_text_is_analysed_as_categorical_and_dates_are_skipped() -> None:
    reference = pd.DataFrame(
        {
            "feature:comment": [f"text {i}" for i in range(10)],
            "feature:seen": pd.date_range("2026-01-01", periods=10),
        }
    )
    profile = ReferenceProfile.build(reference)
    assert [(c.name, c.kind) for c in profile.columns] == [("comment", "categorical")]
    assert profile.skipped == (("seen", "unsupported type datetime64[ns]"),)


def test_spec_mistakes_fail_early() -> None:
    reference = frame(2_000, seed=1)
    with pytest.raises(ValueError, match="unknown drift method"):
        DriftSpec(methods={"x00": "psi-ish"})
    with pytest.raises(ValueError, match="does not apply"):
        ReferenceProfile.build(reference, DriftSpec(methods={"c0": "ks"}))
    with pytest.raises(ValueError, match="reference lacks"):
        ReferenceProfile.build(reference, DriftSpec(thresholds={"nope": 0.2}))
    with pytest.raises(ValueError, match="positive"):
        DriftSpec(thresholds={"x00": 0})
    kinds = ReferenceProfile.build(reference, DriftSpec(kinds={"x06": "categorical"}))
    assert kinds.column("x06").kind == "categorical"


@pytest.fixture(scope="module")
def small() -> tuple[ReferenceProfile, pd.DataFrame]:
    reference = frame(5_000, seed=1)
    reference["feature:empty"] = np.nan
    window = frame(6_000, seed=2, sizes=np.array([3_000, 2_000, 1_000]), shift={"x00": 1.0})
    window["feature:empty"] = 1.0
    return ReferenceProfile.build(reference), window.drop(columns=["feature:x01"])


def test_missing_columns_and_empty_references_get_rows_without_verdicts(small) -> None:
    profile, window = small
    result = analyse_drift(profile, window)
    missing = result.row("x01", "node", "2")
    assert (missing.status, missing.method, missing.statistic, missing.drifted) == (
        "missing_column",
        None,
        None,
        None,
    )
    empty = result.row("empty")
    assert (empty.status, empty.statistic, empty.drifted, empty.n_reference) == (
        "empty_reference",
        None,
        None,
        0,
    )
    assert result.methods["x01"] is None
    assert result.scope().n_features == 26 - 2  # x01 and empty have no verdict
    assert result.row("x00").drifted is True


def test_scopes_can_leave_rows_out_and_threads_do_not_change_results(small) -> None:
    profile, window = small
    node = window["node_id"].to_numpy()
    sites = pd.Series(node).map({1: "plant-a", 2: "plant-a"}).to_numpy(dtype=object)  # 3: none
    one = analyse_drift(profile, window, {"node": node, "site": sites}, workers=1)
    two = analyse_drift(profile, window, {"node": node, "site": sites}, workers=2)
    assert one.to_frame().equals(two.to_frame())
    assert [(s.scope_kind, s.scope_key, s.n_rows) for s in one.scopes] == [
        ("fleet", "", 6_000),
        ("node", "1", 3_000),
        ("node", "2", 2_000),
        ("node", "3", 1_000),
        ("site", "plant-a", 5_000),
    ]
    assert one.row("x00", "site", "plant-a").n_current == 5_000
    rows = one.to_frame()
    assert len(rows) == 5 * len(profile.columns)
    assert list(rows.columns) == [f.name for f in dataclasses.fields(type(one.rows[0]))]


def test_the_fleet_is_not_a_scope_name(small) -> None:
    profile, window = small
    with pytest.raises(ValueError, match="always analysed"):
        analyse_drift(profile, window, {"fleet": window["node_id"].to_numpy()})
    with pytest.raises(ValueError, match="keys for"):
        analyse_drift(profile, window, {"node": [1, 2]})


def test_a_scope_kind_with_no_scopes_is_fine_for_every_method() -> None:
    reference = frame(3_000, seed=1)
    spec = DriftSpec(methods={"x01": "jensenshannon", "x02": "ks", "c1": "chisquare"})
    window = frame(1_000, seed=2)
    nobody = np.full(len(window), None, dtype=object)
    result = analyse_drift(ReferenceProfile.build(reference, spec), window, {"site": nobody})
    assert [s.scope_kind for s in result.scopes] == ["fleet"]
    assert result.row("x01").statistic is not None and result.row("x02").statistic is not None
