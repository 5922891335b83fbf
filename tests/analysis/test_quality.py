"""Data quality per scope: missing, invalid and out-of-range values, new categories, constant
columns and schema changes, each pinned to the node that caused it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitor.analysis import ReferenceProfile, analyse_quality
from tests.analysis.synthetic import frame, node_sizes


@pytest.fixture(scope="module")
def result():
    reference = frame(20_000, seed=1)
    window = frame(30_000, seed=2, sizes=node_sizes(30_000, 30))
    node = window["node_id"]
    window.loc[node == 3, "feature:x01"] = np.nan
    window.loc[(node == 4) & (window.index % 2 == 0), "feature:x01"] = np.nan
    # Node 5 sends text for a number: the window column arrives as text (as storage does it).
    as_text = window["feature:x02"].map(repr).astype(object)
    as_text[node == 5] = "n/a"
    window["feature:x02"] = pd.Categorical(as_text)
    window.loc[node == 6, "feature:x03"] = 99.0
    window.loc[node == 7, "feature:x04"] = np.inf
    window["feature:c1"] = window["feature:c1"].cat.add_categories(["brand-new", "other-new"])
    window.loc[node == 8, "feature:c1"] = "brand-new"
    window.loc[(node == 9) & (window.index % 4 == 0), "feature:c1"] = "other-new"
    window = window.drop(columns=["feature:x05"]).assign(**{"feature:extra": 1.0})
    return analyse_quality(ReferenceProfile.build(reference), window, max_new_categories=5)


def test_missing_values_per_scope(result) -> None:
    assert result.row("x01", "node", "3").missing_share == 1.0
    assert result.row("x01", "node", "4").missing_share == pytest.approx(0.5, abs=0.05)
    assert result.row("x01", "node", "3").constant is None  # nothing present
    assert result.row("x01", "node", "1").n_missing == 0
    fleet = result.row("x01")
    nodes = [r for r in result.rows if r.feature == "x01" and r.scope_kind == "node"]
    assert fleet.n_missing == sum(r.n_missing for r in nodes)
    assert fleet.n_rows == 30_000


def test_text_in_a_numerical_column_is_counted_where_it_came_from(result) -> None:
    node5 = result.row("x02", "node", "5")
    assert node5.n_invalid == node5.n_rows and node5.n_missing == 0
    assert result.row("x02", "node", "1").n_invalid == 0
    assert result.row("x02").n_invalid == node5.n_rows
    assert ("x02", "type_mismatch", "numerical", "category") in {
        (s.feature, s.issue, s.expected, s.actual) for s in result.schema
    }


def test_out_of_range_and_constant_values(result) -> None:
    node6 = result.row("x03", "node", "6")
    assert node6.out_of_range_share == 1.0 and node6.constant is True
    assert result.row("x04", "node", "7").out_of_range_share == 1.0
    assert result.row("x03", "node", "1").constant is False
    assert result.row("x03", "node", "1").out_of_range_share < 0.01


def test_new_categories_with_counts(result) -> None:
    node8 = result.row("c1", "node", "8")
    assert node8.n_new_category_rows == node8.n_rows and node8.n_new_categories == 1
    assert node8.constant is True
    listed = {(c.scope_kind, c.scope_key, c.category): c.count for c in result.new_categories}
    assert listed[("node", "8", "brand-new")] == node8.n_rows
    assert listed[("node", "9", "other-new")] == result.row("c1", "node", "9").n_new_category_rows
    assert listed[("fleet", "", "brand-new")] == node8.n_rows
    assert result.row("c1").n_new_categories == 2
    assert result.row("c1", "node", "1").n_new_category_rows == 0


def test_schema_changes(result) -> None:
    issues = {(s.feature, s.issue) for s in result.schema}
    assert ("x05", "missing_column") in issues
    assert ("extra", "unexpected_column") in issues
    assert result.row("x05").status == "missing_column"
    assert len(issues) == 3
    frame_ = result.to_frame()
    assert len(frame_) == len(result.rows) and "missing_share" in frame_.columns
