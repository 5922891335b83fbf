"""Per-node or per-site baselines: judge each node (or site) against its own first days or rows
instead of the version's reference data, for fleets whose nodes see different worlds by design
(a cold room and a furnace hall running 20 degC hotter).

The setting is the model's ``models.baseline`` JSON (``monitor.storage.baselines``):
``{"scope": "node" | "site", "days": N}`` or ``{"scope": "node" | "site", "rows": N}``;
NULL (the default) judges every scope against the version's reference. Set it with
``edge-monitor models baseline NAME --per node --days 7``.

A scope's baseline period starts with the first record of the version on that scope (a new
version starts a new period) and lasts ``days`` days or ``rows`` records. In each window:

* a scope whose baseline period ended before the window starts is judged against a profile
  of its baseline rows (``per site``: the site and each of its nodes against the site's);
* a scope still in its baseline period gets no verdict: status ``insufficient_data``,
  ``drifted`` None, no feature rows. Judging it against the version's reference meanwhile
  would flag every furnace-hall node for its first week, which is what the setting is for;
  the version's verdicts are not what the user asked for, and silence is honest.
* the fleet, the groups (and the sites, with ``per node``) keep the version's reference: they
  answer "does the fleet still look like the training data".

Every verdict of the window is decided in one Benjamini-Hochberg family
(``monitor.analysis.joint``), whichever reference its p-value came from, so a thousand
baseline nodes do not multiply the false alarms. Each drift scope row names its reference:
``version <name>``, or ``baseline node press-07: 2026-01-01T00:00:00Z..2026-01-08T00:00:00Z``
(``(collecting)`` appended while the period runs).

Baseline profiles are built once per (model, version, scope, setting) and kept in memory by
the worker (``BaselineCache``), at most ``MAX_BASELINE_ROWS`` rows each (evenly spaced in
time beyond that). A record that arrives after a baseline was profiled, with a time inside
the baseline period, is not added to the profile until the worker restarts.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine

from monitor.analysis import DriftPolicy, DriftSpec, ReferenceProfile, analyse_drift
from monitor.analysis.columns import NUMERICAL, analysed_columns, infer_kind
from monitor.analysis.joint import DriftPart, judge_together
from monitor.analysis.spec import JENSEN_SHANNON, WASSERSTEIN
from monitor.jobs.reference import Reference
from monitor.schema import (
    DRIFT,
    FLEET,
    INSUFFICIENT_DATA,
    MODEL_VERSION_ID,
    NODE,
    NODE_ID,
    QUALITY,
    SITE,
    DriftScope,
    ResultTable,
    plain_values,
)
from monitor.storage import registry
from monitor.storage.baselines import (
    BaselinePeriod,
    BaselineSetting,
    FirstSeen,
    baseline_period,
    baseline_rows,
    first_seen,
    get_baseline,
)
from monitor.storage.nodes import list_nodes
from monitor.storage.results import KindResults

if TYPE_CHECKING:  # monitor.jobs.analysis imports this module
    from monitor.jobs.analysis import WindowAnalysis, WindowData

log = logging.getLogger(__name__)

#: Rows a baseline profile keeps at most: enough for the tests to see small shifts, while a
#: week of a busy node (millions of rows) would hold gigabytes across a fleet.
MAX_BASELINE_ROWS = 50_000
#: The memory the worker's baseline profiles may hold together.
CACHE_BYTES = 512 * 1024 * 1024
#: The length of the result tables' ``reference`` column.
_REFERENCE_CHARS = 160


@dataclass(frozen=True, slots=True)
class Baseline:
    """One scope's complete baseline: its period, its profile and its name in verdicts."""

    period: BaselinePeriod
    profile: ReferenceProfile
    name: str


class BaselineCache:
    """The worker's baseline profiles, by (model, version, scope kind, scope key, setting),
    least recently used dropped first beyond ``max_bytes``."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._items: OrderedDict[tuple[Any, ...], Baseline] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> Baseline | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], baseline: Baseline) -> None:
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key).profile.nbytes
            self._items[key] = baseline
            self._bytes += baseline.profile.nbytes
            while self._bytes > self._max_bytes and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.profile.nbytes

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True, eq=False)
class BaselineOutcome:
    """A window's results with its baseline scopes judged, and each drift scope's reference."""

    results: Mapping[str, KindResults]
    #: (scope kind, scope key) -> the reference its drift verdict used (also in
    #: ``results[DRIFT].references``, which ``save_window`` stores).
    references: dict[tuple[str, str], str]
    #: Scopes judged against their own baseline, and scopes still in their baseline period.
    judged: tuple[tuple[str, str], ...] = ()
    collecting: tuple[tuple[str, str], ...] = ()
    setting: BaselineSetting | None = field(default=None)


def with_baselines(
    engine: Engine,
    model_id: int,
    window_start: datetime,
    data: WindowData,
    analysis: WindowAnalysis,
    policy: DriftPolicy,
    cache: BaselineCache,
) -> WindowAnalysis:
    """The worker's one step after a window's analysis: its results with baseline scopes
    judged (``baseline_drift``) and every scope row's reference named."""
    with engine.connect() as conn:
        outcome = baseline_drift(
            conn,
            model_id,
            window_start,
            data.frame,
            data.scopes,
            data.reference,
            analysis.results,
            policy,
            cache,
        )
    return replace(analysis, results=outcome.results)


def baseline_drift(
    conn: Connection,
    model_id: int,
    window_start: datetime,
    frame: pd.DataFrame,
    scopes: Mapping[str, Any],
    reference: Reference | None,
    results: Mapping[str, KindResults],
    policy: DriftPolicy,
    cache: BaselineCache,
) -> BaselineOutcome:
    """The window's ``results`` with the drift of every node (or site) that has a baseline
    setting replaced by its verdict against its own baseline, decided with the rest of the
    window in one false-discovery family; ``scopes`` are the window's scope keys per row."""
    versions = {v.id: v.version for v in registry.versions(conn, model_id)}
    shared = f"version {versions[reference.version_id]}" if reference is not None else None
    drift = results[DRIFT]
    keys = _keys(drift.scopes)
    unchanged: dict[tuple[str, str], str] = {} if shared is None else dict.fromkeys(keys, shared)
    setting = get_baseline(conn, model_id)
    if setting is None or not len(frame) or setting.scope not in scopes:
        return BaselineOutcome(
            _labelled(results, drift, unchanged, shared), unchanged, setting=setting
        )

    kind = setting.scope
    per_row = _categorical(scopes[kind])
    nodes_per_row = _categorical(scopes[NODE]) if NODE in scopes else None
    positions = {
        per_row.categories[code]: rows
        for code, rows in pd.Series(per_row.codes).groupby(per_row.codes).indices.items()
        if code >= 0
    }
    versions_per_row = frame[MODEL_VERSION_ID].to_numpy()
    node_ids = frame[NODE_ID].to_numpy()
    spec = reference.profile.spec if reference is not None else DriftSpec()
    members = _site_members(conn) if kind == SITE else {}

    parts: list[DriftPart] = []
    references: dict[tuple[str, str], str] = {}
    judged: list[tuple[str, str]] = []
    collecting: list[tuple[str, str]] = []
    collecting_rows: list[DriftScope] = []
    seen: list[FirstSeen] | None = None
    for key, rows in sorted(positions.items(), key=lambda item: str(item[0])):
        key = str(key)
        version_id = int(np.bincount(versions_per_row[rows]).argmax())
        scope_nodes = sorted({int(n) for n in np.unique(node_ids[rows])} | members.get(key, set()))
        node_keys = (
            np.asarray(nodes_per_row)[rows] if kind == SITE and nodes_per_row is not None else None
        )
        inner = (
            sorted({str(k) for k in node_keys if k is not None}) if node_keys is not None else []
        )
        covered = [(kind, key), *((NODE, k) for k in inner)]
        cache_key = (model_id, version_id, kind, key, tuple(sorted(setting.to_json().items())))
        baseline = cache.get(cache_key)
        if baseline is None:
            if seen is None:  # one query for every scope of the window without a baseline yet
                seen = first_seen(
                    conn,
                    model_id,
                    sorted(
                        {int(n) for n in np.unique(node_ids)}
                        | {n for ids in members.values() for n in ids}
                    ),
                )
            period = baseline_period(conn, model_id, version_id, scope_nodes, setting, seen=seen)
            if period is not None and period.complete_before(window_start):
                assert period.end is not None
                sample = _sampled(
                    baseline_rows(conn, model_id, version_id, scope_nodes, period.start, period.end)
                )
                baseline = Baseline(
                    period,
                    ReferenceProfile.build(sample, _spec_for(sample, spec)),
                    _name(kind, key, period, setting),
                )
                cache.put(cache_key, baseline)
                log.info(
                    "baseline of %s %s (version %s): %d rows from %s to %s",
                    kind,
                    key,
                    versions.get(version_id, version_id),
                    len(sample),
                    period.start.isoformat(),
                    period.end.isoformat(),
                )
            else:
                name = _name(kind, key, period, setting, collecting=True)
                for scope_kind, scope_key in covered:
                    references[(scope_kind, scope_key)] = name
                    collecting.append((scope_kind, scope_key))
                    at = rows if scope_kind == kind else rows[node_keys == scope_key]
                    collecting_rows.append(_no_verdict(scope_kind, scope_key, len(at)))
                continue
        sub_scopes = {NODE: node_keys} if node_keys is not None else {}
        found = analyse_drift(
            baseline.profile, frame.iloc[rows], sub_scopes, policy=policy, workers=1
        )
        parts.append(
            DriftPart(
                _relabel(found.scope_table, kind, key), _relabel(found.feature_table, kind, key)
            )
        )
        for scope in covered:
            references[scope] = baseline.name
            judged.append(scope)

    replaced = set(judged) | set(collecting)
    if not replaced:
        return BaselineOutcome(
            _labelled(results, drift, unchanged, shared), unchanged, setting=setting
        )
    kept = [k not in replaced for k in keys]
    shared_part = DriftPart(
        _without(drift.scopes, replaced),
        None if drift.features is None else _without(drift.features, replaced),
    )
    if collecting_rows:
        parts.append(DriftPart(ResultTable.from_rows(DriftScope, collecting_rows), None))
    scope_table, feature_table = judge_together([shared_part, *parts], policy)
    if shared is not None:
        references.update({k: shared for k, keep in zip(keys, kept, strict=True) if keep})
    spans = {k: v for k, v in (drift.span_starts or {}).items() if k not in replaced}
    judged_drift = replace(
        drift, scopes=scope_table, features=feature_table, span_starts=spans or None
    )
    return BaselineOutcome(
        _labelled(results, judged_drift, references, shared),
        references,
        tuple(judged),
        tuple(collecting),
        setting,
    )


def _labelled(
    results: Mapping[str, KindResults],
    drift: KindResults,
    references: dict[tuple[str, str], str],
    shared: str | None,
) -> dict[str, KindResults]:
    """The results with the reference of every scope row: drift's as judged; quality is always
    measured against the version's reference (performance against labels: none)."""
    labelled = {**results, DRIFT: replace(drift, references=references)}
    quality = labelled.get(QUALITY)
    if quality is not None and shared is not None:
        labelled[QUALITY] = replace(
            quality, references=dict.fromkeys(_keys(quality.scopes), shared)
        )
    return labelled


def _categorical(values: Any) -> pd.Categorical:
    return values if isinstance(values, pd.Categorical) else pd.Categorical(values)


def _site_members(conn: Connection) -> dict[str, set[int]]:
    """Registered node ids per site: a site's baseline starts with any of its nodes."""
    members: dict[str, set[int]] = {}
    for node in list_nodes(conn):
        if node.site is not None:
            members.setdefault(node.site, set()).add(node.id)
    return members


def _sampled(frame: pd.DataFrame) -> pd.DataFrame:
    """At most ``MAX_BASELINE_ROWS`` rows, evenly spaced in time order (the day/night cycle and
    every day of the period stay represented)."""
    if len(frame) <= MAX_BASELINE_ROWS:
        return frame
    picks = np.linspace(0, len(frame) - 1, MAX_BASELINE_ROWS).round().astype(np.intp)
    return frame.iloc[np.unique(picks)].reset_index(drop=True)


def _spec_for(frame: pd.DataFrame, spec: DriftSpec) -> DriftSpec:
    """The version's drift spec for a baseline: restricted to the columns the baseline has (a
    spec naming a column the profile lacks is refused), and a distance method for every
    column the spec leaves to the default (Wasserstein for numbers, Jensen-Shannon for
    categories), whatever the baseline's size.

    Why: Evidently gives a reference of at most 1,000 rows p-value tests (KS, chi-square) at
    5%, with no effect size. A node's baseline is often that small, and a node's window is
    compared with it every window: a sample's unlucky machine mix then moves several
    correlated features at p ~ 0.005 and flags a steady node. A distance must reach its
    threshold (an effect as large as Evidently requires of a large reference) and pass the
    noise test at the FDR, as the version's large reference is judged."""
    present: dict[str, str] = {}
    for ref in analysed_columns(
        frame, prediction=spec.prediction, probabilities=spec.probabilities
    ):
        kind = spec.kinds.get(ref.name) or infer_kind(frame[ref.column])
        if kind is not None:
            present[ref.name] = kind
    distances = {
        name: WASSERSTEIN if kind == NUMERICAL else JENSEN_SHANNON for name, kind in present.items()
    }
    return DriftSpec(
        methods={**distances, **{k: v for k, v in spec.methods.items() if k in present}},
        thresholds={k: v for k, v in spec.thresholds.items() if k in present},
        kinds={k: v for k, v in spec.kinds.items() if k in present},
        prediction=spec.prediction,
        probabilities=spec.probabilities,
    )


def _name(
    kind: str,
    key: str,
    period: BaselinePeriod | None,
    setting: BaselineSetting,
    *,
    collecting: bool = False,
) -> str:
    """How a verdict names its baseline: ``baseline node press-07: <start>..<end>``, with
    ``(collecting)`` while the period runs; at most the column's 160 characters."""
    if period is None:
        when = "no records of this version yet"
    elif period.end is not None:
        when = f"{_moment(period.start)}..{_moment(period.end)}"
    else:
        when = f"{_moment(period.start)}.., {period.n_records:,} of {setting.rows:,} rows"
    tail = f": {when}{' (collecting)' if collecting else ''}"
    head = f"baseline {kind} "
    room = _REFERENCE_CHARS - len(head) - len(tail)
    shown = key if len(key) <= room else key[: max(room - 1, 0)] + "…"
    return f"{head}{shown}{tail}"


def _moment(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _no_verdict(kind: str, key: str, n_rows: int) -> DriftScope:
    return DriftScope(kind, key, INSUFFICIENT_DATA, n_rows, 0, 0, None, None, None, None)


def _keys(table: ResultTable[Any]) -> list[tuple[str, str]]:
    return list(
        zip(
            plain_values(table.columns["scope_kind"]),
            plain_values(table.columns["scope_key"]),
            strict=True,
        )
    )


def _relabel(table: ResultTable[Any], kind: str, key: str) -> ResultTable[Any]:
    """A sub-analysis's fleet rows as the rows of the scope it analysed."""
    columns = {name: plain_values(values) for name, values in table.columns.items()}
    fleet = [k == FLEET for k in columns["scope_kind"]]
    columns["scope_kind"] = [
        kind if f else k for f, k in zip(fleet, columns["scope_kind"], strict=True)
    ]
    columns["scope_key"] = [
        key if f else k for f, k in zip(fleet, columns["scope_key"], strict=True)
    ]
    return ResultTable(table.row_type, columns)


def _without(table: ResultTable[Any], replaced: set[tuple[str, str]]) -> ResultTable[Any]:
    """The table's rows of every scope but the ``replaced`` ones."""
    kept = [k not in replaced for k in _keys(table)]
    columns = {
        name: [v for v, keep in zip(plain_values(values), kept, strict=True) if keep]
        for name, values in table.columns.items()
    }
    return ResultTable(table.row_type, columns)
