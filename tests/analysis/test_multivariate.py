"""Multivariate drift: a correlation that reverses at one site is found there and by no
univariate test; a steady simulated fleet raises (almost) no alarm and sensor drift is found at
its site; per-scope means are the plain per-scope means; odd windows are read as NannyML
reads them (missing values, unseen categories, a missing column, text in a number column)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitor.analysis import DriftPolicy, ReferenceProfile, analyse_drift
from monitor.analysis.multivariate import (
    Reconstruction,
    analyse_multivariate,
)
from monitor.analysis.scopes import ScopeSet
from monitor.demo_model import paths
from monitor.fleet.machines import FEATURE_NAMES, MachineFleetGenerator
from monitor.fleet.scenarios import plan_fleet, scenario
from monitor.jobs.reference import window_shaped
from monitor.schema import EMPTY_REFERENCE, INSUFFICIENT_DATA, OK, feature_column

SITES = tuple(f"site-{c}" for c in "abcdef")
FLIPPED = "site-c"


def correlated(
    n: int, seed: int, *, sites: tuple[str, ...] = (), flipped: str = ""
) -> pd.DataFrame:
    """x and y with correlation +0.8 (standard normal marginals, means 10 and 50), an
    independent z and a category; at the ``flipped`` site y is mirrored about its mean
    (correlation -0.8, each marginal unchanged)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    y = 0.8 * x + 0.6 * rng.standard_normal(n)
    site = np.array(sites)[rng.integers(0, len(sites), n)] if sites else np.full(n, "")
    y = np.where(site == flipped, -y, y) if flipped else y
    return pd.DataFrame(
        {
            feature_column("x"): 10.0 + x,
            feature_column("y"): 50.0 + 5.0 * y,
            feature_column("z"): rng.standard_normal(n),
            feature_column("kind"): pd.Categorical(
                rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
            ),
            "site": site,
        }
    )


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return correlated(5_000, seed=1).drop(columns="site")


@pytest.fixture(scope="module")
def profile(reference: pd.DataFrame) -> ReferenceProfile:
    return ReferenceProfile.build(reference)


@pytest.fixture(scope="module")
def fit(reference: pd.DataFrame, profile: ReferenceProfile) -> Reconstruction:
    return Reconstruction.fit(reference, profile)


# --- a correlation-only change -----------------------------------------------------------------


def test_a_reversed_correlation_is_found_at_its_site_and_by_no_univariate_test(
    fit: Reconstruction, profile: ReferenceProfile
) -> None:
    # Six sites of about 2,000 rows; at one, y is mirrored: its correlation with x is -0.8.
    window = correlated(12_000, seed=2, sites=SITES, flipped=FLIPPED)
    at = window.site.to_numpy() == FLIPPED
    x, y = window[feature_column("x")], window[feature_column("y")]
    assert np.corrcoef(x[at], y[at])[0, 1] < -0.75 and np.corrcoef(x[~at], y[~at])[0, 1] > 0.75

    multivariate = analyse_multivariate(fit, window, {"site": window.site.to_numpy()})
    univariate = analyse_drift(profile, window, {"site": window.site.to_numpy()})

    flagged = {(r.scope_kind, r.scope_key) for r in multivariate.rows if r.drifted}
    # The fleet holds the site's rows: a sixth of its rows moved, and it shows.
    assert flagged == {("site", FLIPPED), ("fleet", "")}
    site = multivariate.row("site", FLIPPED)
    assert site.p_value is not None and site.p_value < 1e-12
    assert site.reconstruction_error is not None and site.upper_threshold is not None
    assert site.reconstruction_error > site.upper_threshold and site.nannyml_drifted
    # Each feature's own distribution is unchanged: no univariate verdict anywhere.
    assert not any(r.drifted for r in univariate.rows)
    assert univariate.scope("site", FLIPPED).n_features == 4


def test_the_same_window_without_the_change_is_not_drifted(fit: Reconstruction) -> None:
    window = correlated(12_000, seed=2, sites=SITES)

    result = analyse_multivariate(fit, window, {"site": window.site.to_numpy()})

    assert [r.drifted for r in result.rows] == [False] * (1 + len(SITES))
    assert all(r.status == OK for r in result.rows)


# --- a simulated fleet -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet_fit() -> Reconstruction:
    # The demo model's reference, its features shaped as the job shapes a reference.
    reference = window_shaped(pd.read_parquet(paths().reference, columns=list(FEATURE_NAMES)))
    return Reconstruction.fit(reference, ReferenceProfile.build(reference))


def fleet_window(name: str, day: int, nodes: int = 40, rows: int = 400) -> pd.DataFrame:
    """One simulated day of ``rows`` readings from each of ``nodes`` nodes on four sites, the
    scenario's clock started six days before."""
    plans = plan_fleet(nodes, sites=4)
    plan = scenario(name, hours=24 * 6, sites=sorted({p.site for p in plans}))
    frames = []
    for node in plans:
        generator = MachineFleetGenerator(3).child(f"{node.name}@{day}")
        readings = generator.readings(
            rows, start_hour=24.0 * day, hours=24.0, **plan.knobs(node, 24.0 * day)
        )
        frame = pd.DataFrame({feature_column(k): v for k, v in readings.features.items()})
        frames.append(frame.assign(node=node.name, site=node.site, group=node.group))
    window = pd.concat(frames, ignore_index=True)
    kind = feature_column("machine_type")
    window[kind] = window[kind].astype("category")
    return window


def scopes_of(window: pd.DataFrame) -> dict[str, np.ndarray]:
    return {k: window[k].to_numpy() for k in ("site", "group", "node")}


def test_a_steady_fleet_raises_no_alarm(fleet_fit: Reconstruction) -> None:
    # 40 nodes x 400 rows, four windows: 4 x 53 scopes judged.
    flagged = []
    for day in range(4):
        window = fleet_window("steady", day)
        result = analyse_multivariate(fleet_fit, window, scopes_of(window))
        assert len(result.rows) == 1 + 4 + 8 + 40
        assert all(r.status == OK for r in result.rows)
        flagged += [(day, r.scope_kind, r.scope_key) for r in result.rows if r.drifted]

    assert flagged == []


def test_sensor_drift_is_found_at_its_site(fleet_fit: Reconstruction) -> None:
    # Day 5: the sensors of site-a have drifted fully (the ramp ends on day 4).
    window = fleet_window("sensor-drift", 5)

    result = analyse_multivariate(fleet_fit, window, scopes_of(window))

    sites = {r.scope_key for r in result.rows if r.scope_kind == "site" and r.drifted}
    assert sites == {"site-a"}
    at_site = set(window.node[window.site == "site-a"])
    nodes = [r for r in result.rows if r.scope_kind == "node"]
    affected = [r.drifted is True for r in nodes if r.scope_key in at_site]
    others = [r.drifted is True for r in nodes if r.scope_key not in at_site]
    assert len(affected) == 10 and sum(affected) >= 8
    assert not any(others)


# --- per-scope means ---------------------------------------------------------------------------


def test_per_scope_means_are_the_plain_means_of_each_scope(fit: Reconstruction) -> None:
    window = correlated(3_000, seed=5, sites=SITES)
    rng = np.random.default_rng(6)
    node = rng.integers(0, 40, len(window)).astype(object)
    node[rng.random(len(window)) < 0.1] = None  # rows in no node
    scopes = {"site": window.site.to_numpy(), "node": node}
    errors = fit.errors(window)

    frame = analyse_multivariate(fit, window, scopes).to_frame()

    expected = [("fleet", "", errors.mean(), len(window))]
    for kind, keys in scopes.items():
        present = sorted({k for k in keys if k is not None})
        for key in present:
            at = np.array([k == key for k in keys])
            expected.append((kind, str(key), errors[at].mean(), int(at.sum())))
    assert list(zip(frame.scope_kind, frame.scope_key, strict=True)) == [e[:2] for e in expected]
    assert np.allclose(frame.reconstruction_error, [e[2] for e in expected], rtol=1e-12)
    assert frame.n_rows.tolist() == [e[3] for e in expected]


def test_a_built_scope_set_is_shared(fit: Reconstruction) -> None:
    window = correlated(1_000, seed=7, sites=SITES)
    scope_set = ScopeSet.build(len(window), {"site": window.site.to_numpy()})

    shared = analyse_multivariate(fit, window, scope_set).to_frame()
    mapped = analyse_multivariate(fit, window, {"site": window.site.to_numpy()}).to_frame()

    pd.testing.assert_frame_equal(shared, mapped)


def test_small_scopes_are_reported_without_a_verdict(fit: Reconstruction) -> None:
    window = correlated(1_000, seed=8, sites=SITES)  # about 170 rows a site

    result = analyse_multivariate(fit, window, {"site": window.site.to_numpy()})

    fleet = result.row()
    assert fleet.status == OK and fleet.drifted is False and fleet.n_rows == 1_000
    for row in result.rows[1:]:
        assert row.status == INSUFFICIENT_DATA and row.n_rows < 200
        assert row.drifted is None and row.p_value is None and row.adjusted_p_value is None
        assert row.reconstruction_error is not None and row.sampling_error is not None
        assert row.lower_threshold is not None and row.nannyml_drifted is not None
    # A smaller scope's mean spreads more: its thresholds are wider.
    assert result.rows[1].sampling_error > fleet.sampling_error  # type: ignore[operator]


def test_the_minimum_of_rows_is_the_policy_s(fit: Reconstruction) -> None:
    window = correlated(1_000, seed=8, sites=SITES)

    result = analyse_multivariate(
        fit, window, {"site": window.site.to_numpy()}, policy=DriftPolicy(min_rows=100)
    )

    assert all(r.status == OK and r.drifted is False for r in result.rows)


# --- odd windows --------------------------------------------------------------------------------


def test_missing_numbers_are_the_reference_mean(
    fit: Reconstruction, reference: pd.DataFrame
) -> None:
    window = correlated(500, seed=9).drop(columns="site")
    holed = window.copy()
    holed.loc[::3, feature_column("x")] = np.nan
    filled = window.copy()
    filled.loc[::3, feature_column("x")] = reference[feature_column("x")].mean()

    assert np.allclose(fit.errors(holed), fit.errors(filled), rtol=1e-12)


def test_a_missing_category_is_the_most_frequent_and_an_unseen_one_has_frequency_zero(
    fit: Reconstruction,
) -> None:
    window = correlated(500, seed=10).drop(columns="site")
    kind = feature_column("kind")
    odd = window.copy()
    odd[kind] = odd[kind].cat.add_categories(["new"])
    odd.loc[0:9, kind] = None
    odd.loc[10:19, kind] = "new"
    most_frequent = window.copy()
    most_frequent.loc[0:9, kind] = "a"

    errors = fit.errors(odd)

    assert np.allclose(errors[:10], fit.errors(most_frequent)[:10], rtol=1e-12)
    assert np.allclose(errors[20:], fit.errors(window)[20:], rtol=1e-12)
    # An unseen category reads as a category of frequency 0: far from every reference one.
    assert (errors[10:20] != fit.errors(window)[10:20]).all()


def test_a_missing_column_is_all_missing_and_text_in_a_number_column_is_missing(
    fit: Reconstruction,
) -> None:
    window = correlated(500, seed=11).drop(columns="site")
    z = feature_column("z")
    missing = window.drop(columns=z)
    empty = window.assign(**{z: np.nan})
    text = window.assign(**{z: pd.Categorical(["n/a"] * len(window))})

    assert np.allclose(fit.errors(missing), fit.errors(empty), rtol=1e-12)
    assert np.allclose(fit.errors(text), fit.errors(empty), rtol=1e-12)
    result = analyse_multivariate(fit, missing, None)
    assert [r.scope_kind for r in result.rows] == ["fleet"] and result.row().status == OK


def test_an_empty_window_and_an_empty_scope(fit: Reconstruction) -> None:
    empty = correlated(0, seed=12, sites=SITES)
    row = analyse_multivariate(fit, empty, {"site": empty.site.to_numpy()}).row()
    assert (row.n_rows, row.status, row.reconstruction_error, row.drifted) == (
        0,
        INSUFFICIENT_DATA,
        None,
        None,
    )
    assert row.sampling_error is None and row.nannyml_drifted is None

    # A scope without rows in a window that has some: pooled rows of earlier windows ride
    # along for a node's scope only, never the fleet's; here every row is such a row.
    window = correlated(300, seed=13, sites=SITES)
    scope_set = ScopeSet.build(
        len(window), {"site": window.site.to_numpy()}, in_fleet=np.zeros(len(window), bool)
    )
    result = analyse_multivariate(fit, window, scope_set, policy=DriftPolicy(min_rows=1))
    fleet = result.row()
    assert fleet.n_rows == 0 and fleet.reconstruction_error is None
    assert fleet.status == INSUFFICIENT_DATA and fleet.drifted is None
    sites = [r for r in result.rows if r.scope_kind == "site"]
    assert sum(r.n_rows for r in sites) == 300
    assert all(r.status == OK and r.reconstruction_error is not None for r in sites)


def test_a_reference_with_a_single_feature_judges_nothing(reference: pd.DataFrame) -> None:
    single = reference[[feature_column("x")]]
    fit = Reconstruction.fit(single, ReferenceProfile.build(single))
    window = correlated(1_000, seed=14, sites=SITES)

    result = analyse_multivariate(fit, window, {"site": window.site.to_numpy()})

    assert fit.status == EMPTY_REFERENCE and fit.n_components == 0
    assert np.isnan(fit.errors(window)).all()
    assert all(r.status == EMPTY_REFERENCE for r in result.rows)
    assert all(r.reconstruction_error is None and r.drifted is None for r in result.rows)
    assert result.row("site", "site-a").n_rows > 0


def test_a_reference_of_one_row_judges_nothing(reference: pd.DataFrame) -> None:
    one = reference.iloc[:1]

    fit = Reconstruction.fit(one, ReferenceProfile.build(one))

    assert fit.status == EMPTY_REFERENCE


def test_components_are_kept_for_65_percent_of_the_variance(fit: Reconstruction) -> None:
    # x and y (correlation 0.8) share one component of 1.8 of 4 units of variance, z and kind
    # one each: 45% with one component, 70% with two.
    assert fit.status == OK and fit.n_components == 2
    frame = analyse_multivariate(fit, correlated(300, seed=15), None).to_frame()
    assert frame.method.tolist() == ["pca-reconstruction"]
    assert frame.n_components.tolist() == [2]
