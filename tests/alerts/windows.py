"""Synthetic stored windows for alert tests: results written as the worker writes them, and
judged in the same transaction, without the cost of a real analysis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine

from monitor.jobs.alerts import Change, evaluate_window
from monitor.schema import (
    DRIFT,
    FEATURE,
    OK,
    PERFORMANCE,
    DriftFeature,
    DriftScope,
    PerformanceScope,
    ResultTable,
)
from monitor.storage import nodes, results
from monitor.storage.engine import begin_write
from monitor.storage.models import add_model
from monitor.storage.results import KindResults

T0 = datetime(2026, 11, 20, tzinfo=UTC)
WINDOW = timedelta(minutes=15)
FEATURES = ("temperature_c", "vibration_mm_s", "rpm")


def start(i: int) -> datetime:
    return T0 + i * WINDOW


def fleet(engine: Engine, sites: Mapping[str, int], model: str = "pump") -> int:
    """A model and ``count`` nodes per site (named ``<site>-<i>``); the model id."""
    with begin_write(engine) as conn:
        model_id = add_model(conn, model).id
        for site, count in sites.items():
            for i in range(count):
                nodes.add_node(conn, f"{site}-{i}", group_name=f"g-{site}", site=site)
    return model_id


def node_names(sites: Mapping[str, int]) -> list[str]:
    return [f"{site}-{i}" for site, count in sites.items() for i in range(count)]


def store(
    engine: Engine,
    model_id: int,
    i: int,
    *,
    node_list: Sequence[str],
    drifting: Mapping[str, Sequence[str]] | None = None,
    performance: Mapping[tuple[str, str], tuple[int, float | None]] | None = None,
    now: datetime | None = None,
    version_id: int | None = None,
) -> list[Change]:
    """Store window ``i``'s drift for these nodes (``drifting``: node -> drifted features; the
    fleet and sites drift when one of their nodes does) and performance rows ((scope kind,
    key) -> (labelled, accuracy)), then judge it as the worker does: one transaction."""
    with begin_write(engine) as conn:
        save(
            conn,
            model_id,
            i,
            node_list=node_list,
            drifting=drifting,
            performance=performance,
            version_id=version_id,
        )
        return evaluate_window(conn, model_id, start(i), now=now or start(i + 1))


def save(
    conn: Connection,
    model_id: int,
    i: int,
    *,
    node_list: Sequence[str],
    drifting: Mapping[str, Sequence[str]] | None = None,
    performance: Mapping[tuple[str, str], tuple[int, float | None]] | None = None,
    version_id: int | None = None,
) -> None:
    """Store window ``i``'s results (as ``store``) in ``conn``'s transaction."""
    drifting = drifting or {}
    scopes: dict[tuple[str, str], set[str]] = {("fleet", ""): set()}
    for name in node_list:
        site = name.rsplit("-", 1)[0]
        mine = set(drifting.get(name, ()))
        scopes[("node", name)] = mine
        scopes.setdefault(("site", site), set()).update(mine)
        scopes[("fleet", "")].update(mine)
    drift_rows = [
        DriftScope(
            k, key, OK, 100, len(FEATURES), len(f), len(f) / len(FEATURES), bool(f), False, None
        )
        for (k, key), f in scopes.items()
    ]
    feature_rows = [
        DriftFeature(
            k,
            key,
            feature,
            FEATURE,
            "numerical",
            "ks",
            "ks",
            0.1,
            0.05,
            0.5,
            0.001 if feature in f else 0.5,
            feature in f,
            feature in f,
            100,
            1000,
            OK,
        )
        for (k, key), f in scopes.items()
        for feature in FEATURES
    ]
    found: dict[str, KindResults] = {
        DRIFT: KindResults(
            ResultTable.from_rows(DriftScope, drift_rows),
            ResultTable.from_rows(DriftFeature, feature_rows),
        )
    }
    if performance:
        found[PERFORMANCE] = KindResults(
            ResultTable.from_rows(
                PerformanceScope,
                [
                    PerformanceScope(
                        k,
                        key,
                        OK if acc is not None else "insufficient_labels",
                        "classification",
                        max(n, 1),
                        n,
                        1.0,
                        acc,
                        acc,
                        acc,
                        acc,
                        None,
                        None,
                        None,
                    )
                    for (k, key), (n, acc) in performance.items()
                ],
            )
        )
    results.save_window(
        conn,
        model_id,
        start(i),
        start(i) + WINDOW,
        found,
        model_version_id=version_id,
        n_reference=None,
    )
