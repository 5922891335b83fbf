"""Verdicts decided together across references: parts of one window judged apart, then under
one Benjamini-Hochberg family, agree with a single analysis of the whole window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitor.analysis import DriftPolicy, ReferenceProfile, analyse_drift
from monitor.analysis.joint import DriftPart, judge_together
from monitor.schema import DriftScope, ResultTable, plain_values


def frame(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "feature:a": rng.normal(shift, 1.0, n),
            "feature:b": rng.normal(0.0, 1.0, n),
            "feature:c": pd.Categorical(rng.choice(["x", "y", "z"], n)),
        }
    )


def only(table: ResultTable[object], keep: set[tuple[str, str]]) -> ResultTable[object]:
    keys = list(
        zip(
            plain_values(table.columns["scope_kind"]),
            plain_values(table.columns["scope_key"]),
            strict=True,
        )
    )
    return ResultTable(
        table.row_type,
        {
            name: [v for v, k in zip(plain_values(values), keys, strict=True) if k in keep]
            for name, values in table.columns.items()
        },
    )


def test_parts_judged_together_match_one_analysis_of_the_window() -> None:
    rng = np.random.default_rng(7)
    reference = ReferenceProfile.build(frame(rng, 3000))
    window = pd.concat(
        [frame(rng, 400), frame(rng, 400, shift=0.3), frame(rng, 400)], ignore_index=True
    )
    nodes = np.repeat(["n1", "n2", "n3"], 400)
    policy = DriftPolicy()
    whole = analyse_drift(reference, window, {"node": nodes}, policy=policy)
    first = {("fleet", ""), ("node", "n1")}
    rest = {("node", "n2"), ("node", "n3")}

    scopes, features = judge_together(
        [
            DriftPart(only(whole.scope_table, first), only(whole.feature_table, first)),
            DriftPart(only(whole.scope_table, rest), only(whole.feature_table, rest)),
        ],
        policy,
    )

    assert scopes.rows() == whole.scope_table.rows()
    assert sorted(features.rows(), key=repr) == sorted(whole.feature_table.rows(), key=repr)
    assert whole.scope("node", "n2").drifted is True


def test_one_family_keeps_many_small_parts_from_multiplying_alarms() -> None:
    """Twenty nodes each judged alone at its own BH level flag more than the same nodes judged
    in one family: the family adjusts every p-value for all the window's tests."""
    rng = np.random.default_rng(11)
    reference = ReferenceProfile.build(frame(rng, 3000))
    policy = DriftPolicy()
    parts = []
    alone = []
    for i in range(20):
        found = analyse_drift(reference, frame(rng, 300), {}, policy=policy)
        table = found.feature_table
        alone.extend(plain_values(table.columns["adjusted_p_value"]))
        relabel = {
            **table.columns,
            "scope_kind": ["node"] * len(table),
            "scope_key": [f"n{i}"] * len(table),
        }
        scope = found.scope_table.rows()[0]
        parts.append(
            DriftPart(
                ResultTable.from_rows(
                    DriftScope,
                    [
                        DriftScope(
                            "node",
                            f"n{i}",
                            scope.status,
                            scope.n_rows,
                            scope.n_features,
                            scope.n_drifted,
                            scope.share_drifted,
                            scope.drifted,
                            scope.prediction_drifted,
                            scope.evidently_share_drifted,
                        )
                    ],
                ),
                ResultTable(table.row_type, relabel),
            )
        )

    _, features = judge_together(parts, policy)

    joint = plain_values(features.columns["adjusted_p_value"])
    assert len(joint) == len(alone) == 60
    assert all(j >= a - 1e-12 for j, a in zip(joint, alone, strict=True))
    assert min(joint) > min(alone)


def test_a_scope_in_two_parts_is_refused() -> None:
    rng = np.random.default_rng(3)
    reference = ReferenceProfile.build(frame(rng, 500))
    found = analyse_drift(reference, frame(rng, 300), {}, policy=DriftPolicy())
    part = DriftPart(found.scope_table, found.feature_table)

    with pytest.raises(ValueError, match="more than one part"):
        judge_together([part, part], DriftPolicy())
