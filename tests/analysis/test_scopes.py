"""Scopes: rows outside the fleet (a small node's pooled earlier rows) count for their own scope
only, and every statistic of the other scopes is as if those rows were not there."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitor.analysis import ReferenceProfile, analyse_drift, analyse_quality
from monitor.analysis.scopes import ScopeSet
from tests.analysis.synthetic import frame

SCOPE_COLUMNS = ["statistic", "p_value", "n_current", "status"]


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    return ReferenceProfile.build(frame(5_000, seed=1))


def window_and_pool() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A window of 3 nodes and 150 earlier rows of node 3 (which has 60 in the window)."""
    window = frame(1_260, seed=2, sizes=np.array([600, 600, 60]))
    earlier = frame(150, seed=3)
    earlier["node_id"] = np.int32(3)
    return window, earlier


def scopes_of(rows: pd.DataFrame, in_fleet: np.ndarray | None = None) -> ScopeSet:
    node = rows["node_id"].to_numpy()
    group = np.where(node == 1, "a", "b").astype(object)
    if in_fleet is not None:
        group[~in_fleet] = None
    return ScopeSet.build(len(rows), {"group": group, "node": node}, in_fleet=in_fleet)


def features(result_frame: pd.DataFrame, kind: str, key: str) -> pd.DataFrame:
    rows = result_frame[(result_frame.scope_kind == kind) & (result_frame.scope_key == key)]
    return rows.set_index("feature")[SCOPE_COLUMNS]


def test_rows_outside_the_fleet_count_only_for_their_node(profile: ReferenceProfile) -> None:
    window, earlier = window_and_pool()
    both = pd.concat([window, earlier], ignore_index=True)
    in_fleet = np.arange(len(both)) < len(window)

    pooled = analyse_drift(profile, both, scopes_of(both, in_fleet), workers=1).to_frame()
    alone = analyse_drift(profile, window, scopes_of(window), workers=1).to_frame()
    node_only = analyse_drift(
        profile, both[both.node_id == 3].reset_index(drop=True), {}, workers=1
    ).to_frame()

    # The fleet and the groups see the window alone; node 3 sees its 60 + 150 rows.
    for kind, key in (("fleet", ""), ("group", "a"), ("group", "b"), ("node", "1")):
        pd.testing.assert_frame_equal(
            features(pooled, kind, key),
            features(alone, kind, key),
        )
    pd.testing.assert_frame_equal(
        features(pooled, "node", "3"),
        features(node_only, "fleet", ""),
    )
    assert (features(pooled, "node", "3").n_current.max()) == 210
    assert (features(pooled, "fleet", "").n_current.max()) == len(window)


def test_counts_per_scope_leave_rows_outside_the_fleet_out_of_it() -> None:
    window, earlier = window_and_pool()
    both = pd.concat([window, earlier], ignore_index=True)
    in_fleet = np.arange(len(both)) < len(window)

    scopes = scopes_of(both, in_fleet)

    assert not scopes.whole_fleet
    assert scopes.labels() == (
        ["fleet", "group", "group", "node", "node", "node"],
        ["", "a", "b", "1", "2", "3"],
    )
    counted = scopes.per_scope(scopes.count_cells())
    assert counted.tolist() == [1_260, 600, 660, 600, 600, 210]
    assert [kind.count().tolist() for kind in scopes.kinds] == [
        [1_260],
        [600, 660],
        [600] * 2 + [210],
    ]


def test_quality_on_a_whole_fleet_is_unchanged_by_an_all_true_mask(
    profile: ReferenceProfile,
) -> None:
    window, _ = window_and_pool()
    everything = np.ones(len(window), bool)

    masked = analyse_quality(profile, window, scopes_of(window, everything)).to_frame()
    plain = analyse_quality(profile, window, scopes_of(window)).to_frame()

    assert scopes_of(window, everything).whole_fleet
    pd.testing.assert_frame_equal(masked, plain)


def test_a_mask_of_the_wrong_shape_or_type_is_refused() -> None:
    with pytest.raises(ValueError, match="in_fleet must be 3 booleans"):
        ScopeSet.build(3, {}, in_fleet=np.ones(2, bool))
    with pytest.raises(ValueError, match="in_fleet must be 3 booleans"):
        ScopeSet.build(3, {}, in_fleet=np.ones(3, np.int64))
    built = ScopeSet.build(3, {})
    with pytest.raises(ValueError, match="not with a built ScopeSet"):
        ScopeSet.build(3, built, in_fleet=np.ones(3, bool))
