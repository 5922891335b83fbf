"""A change in how two features move together, each feature's own distribution unchanged, is
caught by the scheduled job's multivariate drift at the site where it happens, and by no
univariate test (issue 18's acceptance, through the worker, on SQLite and PostgreSQL).

The model runs elsewhere: it is registered with reference data only. Two of its inputs (a
machine's supply and return temperatures) are correlated +0.8, three more are independent, and
every one is normal, so symmetric about its mean. From window ``MIRRORED_FROM`` on, one site's
return temperature is mirrored about its mean: the correlation turns to -0.8 there while the
return temperature's own distribution, and every other feature's, stays exactly what it was
(and so does the prediction, which reads an independent input).
"""

from __future__ import annotations

import io
import logging
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from monitor.fleet.scenarios import NodePlan, plan_fleet
from monitor.jobs import analysis
from monitor.jobs.analysis import AnalysisConfig, Worker
from monitor.storage import models, nodes, registry, results
from monitor.storage.engine import begin_write
from monitor.storage.records import insert_batch, prepare_batch

WINDOW = timedelta(minutes=15)
T0 = datetime(2026, 11, 20, tzinfo=UTC)
CONFIG = AnalysisConfig(window=WINDOW, grace=timedelta(minutes=1), lookback=timedelta(days=30))
WINDOWS = 6
MIRRORED_FROM = 2
PER_NODE = 300  # above the drift policy's 200 rows: every node gets its own verdicts
NODES = 8  # two per site
MIRRORED_SITE = "site-a"
#: The correlated pair: name -> (mean, standard deviation).
SUPPLY, RETURN = ("supply_temp_c", (60.0, 4.0)), ("return_temp_c", (45.0, 3.0))
#: The independent inputs.
INDEPENDENT = {"flow_l_min": (120.0, 15.0), "pressure_bar": (3.0, 0.4), "pump_hz": (50.0, 2.0)}
CORRELATION = 0.8


def readings(rng: np.random.Generator, n: int, *, mirrored: bool) -> pd.DataFrame:
    """``n`` rows: the correlated pair, the independent inputs, and the prediction ("clogged"
    when the flow is low: it reads the flow alone)."""
    z = rng.standard_normal((n, 2))
    (supply, (s_mean, s_sd)), (ret, (r_mean, r_sd)) = SUPPLY, RETURN
    paired = CORRELATION * z[:, 0] + np.sqrt(1 - CORRELATION**2) * z[:, 1]
    if mirrored:
        paired = -paired  # mirrored about the mean: a normal's distribution is unchanged
    frame = pd.DataFrame({supply: s_mean + s_sd * z[:, 0], ret: r_mean + r_sd * paired})
    for name, (mean, sd) in INDEPENDENT.items():
        frame[name] = rng.normal(mean, sd, n)
    frame = frame.round(3)
    frame["prediction"] = np.where(frame["flow_l_min"] < 100.0, "clogged", "ok")
    return frame


def register(engine: Engine) -> tuple[int, int, list[NodePlan]]:
    """The reference-only model and the fleet; returns the model's and its version's ids and
    the nodes."""
    buffer = io.BytesIO()
    readings(np.random.default_rng(1), 5_000, mirrored=False).to_parquet(buffer, index=False)
    plans = plan_fleet(NODES, sites=4)
    with begin_write(engine) as conn:
        model_id = models.add_model(conn, "heat-pumps").id
        registry.register_version(
            conn,
            model_id,
            "1",
            artifact=None,
            card=None,
            reference=buffer.getvalue(),
            reference_rows=5_000,
        )
        version_id = models.version_id(conn, model_id, "1")
        for plan in plans:
            nodes.add_node(conn, plan.name, group_name=plan.group, site=plan.site)
    return model_id, version_id, plans


def store_window(
    engine: Engine, model_id: int, version_id: int, plans: list[NodePlan], window: int
) -> None:
    """Each node's records of window number ``window``, stored as the collector stores them."""
    start = T0 + window * WINDOW
    with begin_write(engine) as conn:
        for index, plan in enumerate(plans):
            rng = np.random.default_rng([7, window, index])
            mirrored = plan.site == MIRRORED_SITE and window >= MIRRORED_FROM
            frame = readings(rng, PER_NODE, mirrored=mirrored)
            seconds = np.sort(rng.uniform(0, WINDOW.total_seconds(), PER_NODE))
            features = frame.drop(columns="prediction").to_dict("records")
            records = [
                {
                    "id": uuid.uuid4().hex,
                    "ts": (start + timedelta(seconds=float(seconds[i]))).timestamp(),
                    "features": features[i],
                    "prediction": frame["prediction"].iat[i],
                }
                for i in range(PER_NODE)
            ]
            insert_batch(
                conn,
                node_id=nodes.get_node(conn, plan.name).id,
                model_id=model_id,
                model_version_id=version_id,
                batch_uid=None,
                batch=prepare_batch(records),
            )


@pytest.fixture
def fleet(engine: Engine, caplog: pytest.LogCaptureFixture) -> tuple[int, list[NodePlan]]:
    """The fleet's windows stored and analysed by the worker (its log captured)."""
    model_id, version_id, plans = register(engine)
    for window in range(WINDOWS):
        store_window(engine, model_id, version_id, plans, window)
    with caplog.at_level(logging.INFO, logger=analysis.__name__):
        assert Worker(engine, CONFIG).run_due(now=T0 + WINDOWS * WINDOW + timedelta(hours=1)) == (
            WINDOWS
        )
    return model_id, plans


def window_of(start: datetime) -> int:
    return int((start - T0) / WINDOW)


def test_a_reversed_correlation_is_multivariate_drift_at_its_site_only(
    engine: Engine, fleet: tuple[int, list[NodePlan]], caplog: pytest.LogCaptureFixture
) -> None:
    """From the change on: the site, its groups and nodes, and the fleet; nothing else, ever.
    The worker's line for each window says where."""
    model_id, plans = fleet
    mirrored_nodes = {p.name for p in plans if p.site == MIRRORED_SITE}
    mirrored_groups = {p.group for p in plans if p.site == MIRRORED_SITE}
    with engine.connect() as conn:
        found = results.multivariate(conn, model_id)

    flagged = {
        (window_of(r.window_start), r.scope_kind, r.scope_key) for r in found if r.result.drifted
    }
    # The site, its groups and its nodes; and the fleet, a quarter of whose rows moved. No
    # other site, group or node, and nothing before the change.
    expected = {
        (window, kind, key)
        for window in range(MIRRORED_FROM, WINDOWS)
        for kind, keys in (
            ("fleet", {""}),
            ("site", {MIRRORED_SITE}),
            ("group", mirrored_groups),
            ("node", mirrored_nodes),
        )
        for key in keys
    }
    assert flagged == expected
    # Every node had its own verdict: enough rows, and a real reconstruction (components kept).
    nodes_judged = [r.result for r in found if r.scope_kind == "node"]
    assert len(nodes_judged) == WINDOWS * NODES
    assert all(r.status == "ok" and r.drifted is not None for r in nodes_judged)
    assert {r.method for r in nodes_judged} == {"pca-reconstruction"}
    assert {r.n_components for r in nodes_judged} == {3}  # of five inputs: 1.8 + 1 + 1 > 65%
    # The mirrored site's error is well above its upper threshold (NannyML's rule agrees).
    site = [
        r.result
        for r in found
        if (r.scope_kind, r.scope_key) == ("site", MIRRORED_SITE)
        and window_of(r.window_start) >= MIRRORED_FROM
    ]
    assert len(site) == WINDOWS - MIRRORED_FROM
    for row in site:
        assert row.nannyml_drifted is True
        assert row.upper_threshold is not None and row.reconstruction_error is not None
        assert row.reconstruction_error > row.upper_threshold

    # The worker's line for each window says where (logged in the fixture: the setup phase).
    logged = [r for r in caplog.get_records("setup") if r.name == analysis.__name__]
    assert len(logged) == WINDOWS
    for window, record in enumerate(logged):
        line = record.getMessage()
        assert line.startswith(f"heat-pumps window {(T0 + window * WINDOW).isoformat()}")
        assert ", no drift" in line  # no univariate verdict
        if window < MIRRORED_FROM:
            assert "multivariate" not in line
            assert not hasattr(record, "multivariate_drifting")
            continue
        assert line.endswith(
            "; multivariate drift at fleet, site site-a, group site-a/line-1, "
            "group site-a/line-2 (2 node(s))"
        )
        assert getattr(record, "multivariate_drifting", None) == [
            "fleet",
            "site site-a",
            "group site-a/line-1",
            "group site-a/line-2",
        ]
        assert getattr(record, "multivariate_drifting_nodes", None) == 2


def test_no_univariate_test_sees_the_reversed_correlation(
    engine: Engine, fleet: tuple[int, list[NodePlan]]
) -> None:
    """Every input and the prediction is judged at the site, its groups and nodes, and the
    fleet, in every window: none drifted."""
    model_id, plans = fleet
    site_scopes = {("site", MIRRORED_SITE), ("fleet", "")} | {
        (kind, key)
        for p in plans
        if p.site == MIRRORED_SITE
        for kind, key in (("group", p.group), ("node", p.name))
    }
    with engine.connect() as conn:
        runs = results.drift(conn, model_id)
        features = results.features(conn, "drift", [r.id for r in runs])

    judged = [
        (window_of(r.window_start), r.scope_kind, r.scope_key, f.feature, f.drifted)
        for r in runs
        if (r.scope_kind, r.scope_key) in site_scopes
        for f in features[r.id]
    ]
    # Every input and the prediction got a verdict at every scope of the site, in every window.
    assert len(judged) == WINDOWS * len(site_scopes) * (2 + len(INDEPENDENT) + 1)
    assert all(drifted is not None for *_, drifted in judged)
    assert [j for j in judged if j[-1]] == []
