"""On the same data, analyse_drift's fleet numbers are Evidently's: method, threshold, value.

Two Evidently reports, many columns each, cover every method: the defaults for a reference of
more than 1,000 rows (normed Wasserstein, Jensen-Shannon on values, categories and booleans),
the spec's overrides (Jensen-Shannon on Evidently's bins, KS, chi-square, z, a threshold), and
the defaults for a small reference (KS, chi-square on categories and on few numbers, z).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from evidently import Report
from evidently.presets import DataDriftPreset

from monitor.analysis import DriftSpec, ReferenceProfile, analyse_drift
from monitor.analysis.spec import METHODS


def large_reference_frames(rng: np.random.Generator, n: int, shift: float) -> pd.DataFrame:
    numbers = rng.normal(shift, 1.0, n)
    numbers[::37] = np.nan
    numbers[::101] = np.inf
    levels = ["red", "green", "blue", "grey", "teal"]
    colour = rng.choice(levels, n, p=[0.4, 0.3, 0.15, 0.1, 0.05]).astype(object)
    if shift:
        colour[::50] = "violet"  # a category the reference never had
    return pd.DataFrame(
        {
            "w": numbers,
            "w_thr": rng.exponential(2.0 + shift, n),
            "few": rng.choice(4, n, p=[0.5, 0.3, 0.15, 0.05]).astype(float),
            "colour": pd.Categorical(colour),
            "flag": rng.random(n) < 0.3 + shift / 5,
            "level": rng.integers(1, 6, n),  # int, 5 values: Evidently infers categorical
            "js_binned": rng.gamma(2.0, 2.0 + shift, n),
            "ks": rng.normal(shift / 2, 1.0, n),
            "chi": pd.Categorical(rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2])),
            "z": pd.Categorical(rng.choice(["on", "off"], n, p=[0.6 - shift / 4, 0.4 + shift / 4])),
        }
    )


def small_reference_frames(rng: np.random.Generator, n: int, shift: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ks": rng.normal(shift, 1.0, n),
            "chi": pd.Categorical(rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1])),
            "chi_num": rng.choice([1.0, 2.0, 3.0], n, p=[0.5, 0.3 + shift / 10, 0.2 - shift / 10]),
            "z_bool": rng.random(n) < 0.5 + shift / 10,
            "z_num": rng.choice([0.0, 1.0], n),
        }
    )


def window_shaped(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns=lambda c: f"feature:{c}")


def evidently_values(reference: pd.DataFrame, current: pd.DataFrame, spec: DriftSpec):
    preset = DataDriftPreset(
        per_column_method=dict(spec.methods) or None,
        per_column_threshold=dict(spec.thresholds) or None,
    )
    found = Report([preset]).run(current, reference).dict()["metrics"]
    values = {}
    drifted_count = None
    for metric in found:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            values[config["column"]] = (config["method"], config["threshold"], metric["value"])
        else:
            drifted_count = metric["value"]["count"]
    return values, drifted_count


CASES = {
    "large reference, defaults and overrides": (
        large_reference_frames,
        2_000,
        500,
        DriftSpec(
            methods={"js_binned": "jensenshannon", "ks": "ks", "chi": "chisquare", "z": "z"},
            thresholds={"w_thr": 0.2},
        ),
        {
            "w": "wasserstein",
            "w_thr": "wasserstein",
            "few": "jensenshannon",
            "colour": "jensenshannon",
            "flag": "jensenshannon",
            "level": "jensenshannon",
            "js_binned": "jensenshannon",
            "ks": "ks",
            "chi": "chisquare",
            "z": "z",
        },
    ),
    "small reference, defaults": (
        small_reference_frames,
        800,
        600,
        DriftSpec(),
        {"ks": "ks", "chi": "chisquare", "chi_num": "chisquare", "z_bool": "z", "z_num": "z"},
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_fleet_statistics_equal_evidentlys(case: str) -> None:
    make, n_reference, n_current, spec, methods = CASES[case]
    rng = np.random.default_rng(11)
    reference, current = make(rng, n_reference, 0.0), make(rng, n_current, 0.4)
    expected, drifted_count = evidently_values(reference, current, spec)

    profile = ReferenceProfile.build(window_shaped(reference), spec)
    result = analyse_drift(profile, window_shaped(current), {})

    assert result.methods == methods
    for name, (display, threshold, value) in expected.items():
        row = result.row(name)
        # Evidently shows a default method by display name, an override as it was given.
        assert display in (row.method, METHODS[row.method].display_name), name
        assert row.threshold == pytest.approx(threshold), name
        assert row.statistic == pytest.approx(value, abs=1e-6), name
    ours = sum(bool(r.evidently_drifted) for r in result.rows)
    assert ours == drifted_count
    assert 0 < drifted_count < len(expected)  # the comparison covers both verdicts
