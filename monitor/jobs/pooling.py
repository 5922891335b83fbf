"""Pooling: a scope with too few rows in a window for a drift verdict (a small node, site or
group) is judged on this window and the consecutive windows before it, as many as it takes to
reach the minimum of rows (at most ``AnalysisConfig.pool_windows`` in all).

The earlier rows ride along in the window's one drift analysis, so that every verdict of the
window stays in one false-discovery family: they are appended after the window's rows and
belong to the one scope they were pooled for (not to the fleet, nor to any other scope: a small
node's earlier rows do not move its group's verdict). A scope that still lacks rows after the
last window it may pool stays ``insufficient_data`` on this window alone. Quality and
performance are measured on the window's own rows; only drift is pooled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals
from sqlalchemy import Connection

from monitor.jobs.windows import Window
from monitor.schema import NODE, NODE_ID
from monitor.storage.nodes import Node
from monitor.storage.windows import load_window


@dataclass(frozen=True, eq=False)
class Pooled:
    """A window's rows followed by the earlier rows of its small scopes, for drift."""

    #: The window's rows first (``frame.iloc[:n_window]`` is the window), then earlier rows.
    frame: pd.DataFrame
    n_window: int
    #: Scope keys per row of ``frame``, by kind: an earlier row has the key of the scope it was
    #: pooled for, and no key (missing) for every other kind.
    scopes: dict[str, pd.Categorical]
    #: Rows in the fleet: the window's.
    in_fleet: np.ndarray
    #: Each pooled scope's span: the start of the earliest window whose rows it took.
    span_starts: dict[tuple[str, str], datetime]


def small_scopes(scopes: Mapping[str, pd.Categorical], min_rows: int) -> dict[tuple[str, str], int]:
    """The rows of each scope, by (kind, key), that has fewer than ``min_rows`` in the window."""
    small: dict[tuple[str, str], int] = {}
    for kind, keys in scopes.items():
        codes = np.asarray(keys.codes)
        counts = np.bincount(codes[codes >= 0], minlength=len(keys.categories))
        for i in np.flatnonzero(counts < min_rows).tolist():
            small[(kind, str(keys.categories[i]))] = int(counts[i])
    return small


def pool(
    conn: Connection,
    model_id: int,
    frame: pd.DataFrame,
    scopes: Mapping[str, pd.Categorical],
    preceding: Sequence[Window],
    nodes: Sequence[Node],
    min_rows: int,
) -> Pooled | None:
    """The window ``frame`` (with its ``scopes``) and the rows of ``preceding`` windows (newest
    last) its small scopes need, loaded window by window from the newest back, only for nodes
    of scopes still short; None when no scope is small or no scope reaches ``min_rows``."""
    have = small_scopes(scopes, min_rows)
    if not have or not preceding:
        return None
    members = _members(nodes, have)
    numbered = list(have)
    number = {scope: i for i, scope in enumerate(numbered)}
    parts: list[pd.DataFrame] = []
    #: Per part, the number of the scope each of its rows was taken for.
    owners: list[np.ndarray] = []
    starts: dict[tuple[str, str], datetime] = {}
    for window in reversed(preceding):
        short = [scope for scope, n in have.items() if n < min_rows and members.get(scope)]
        if not short:
            break
        node_ids = sorted({node_id for scope in short for node_id in members[scope]})
        earlier = load_window(conn, model_id, window.start, window.end, node_ids=node_ids)
        if not len(earlier):
            continue
        # Row positions per node, once: thousands of small nodes cost one grouping, not a
        # scan of the earlier rows each.
        positions = pd.Series(np.arange(len(earlier))).groupby(earlier[NODE_ID].to_numpy()).indices
        picks: list[np.ndarray] = []
        taken_for: list[np.ndarray] = []
        for scope in short:
            found = [positions[n] for n in members[scope] if n in positions]
            if not found:
                continue
            rows = np.concatenate(found)
            picks.append(rows)
            taken_for.append(np.full(rows.size, number[scope]))
            have[scope] += int(rows.size)
            starts[scope] = window.start
        if picks:
            parts.append(earlier.take(np.concatenate(picks)))
            owners.append(np.concatenate(taken_for))
    # A scope that never reached the minimum stays on its window alone (no verdict anyway).
    reached = np.array([have[s] >= min_rows and s in starts for s in numbered])
    if not reached.any():
        return None
    kept = [(part, own) for part, own in zip(parts, owners, strict=True) if reached[own].any()]
    parts = [part[reached[own]] for part, own in kept]
    owners = [own[reached[own]] for _, own in kept]
    spans = {s: starts[s] for s, ok in zip(numbered, reached.tolist(), strict=True) if ok}
    return _stack(frame, scopes, parts, np.concatenate(owners), numbered, spans)


def _members(
    nodes: Sequence[Node], wanted: Mapping[tuple[str, str], int]
) -> dict[tuple[str, str], set[int]]:
    """The node ids of each wanted scope, as the window's scope keys name them (a node by its
    name; a site or group by its name, from the registered nodes)."""
    members: dict[tuple[str, str], set[int]] = {}
    for node in nodes:
        for kind, key in (("node", node.name), ("site", node.site), ("group", node.group_name)):
            if key is not None and (kind, key) in wanted:
                members.setdefault((kind, key), set()).add(node.id)
    # A node the registry does not know is keyed by its id (as the window's scopes do).
    for kind, key in wanted:
        if kind == NODE and (kind, key) not in members and key.isdigit():
            members[(kind, key)] = {int(key)}
    return members


def _stack(
    frame: pd.DataFrame,
    scopes: Mapping[str, pd.Categorical],
    parts: list[pd.DataFrame],
    owners: np.ndarray,
    numbered: list[tuple[str, str]],
    span_starts: dict[tuple[str, str], datetime],
) -> Pooled:
    """The window's rows, then the earlier rows (``owners``: the number of the scope in
    ``numbered`` each was taken for), with their scope keys."""
    n_window = len(frame)
    stacked = _concat(frame, parts)
    per_kind: dict[str, pd.Categorical] = {}
    for kind, keys in scopes.items():
        # Each numbered scope's code in this kind (-1: a scope of another kind).
        lookup = np.array(
            [keys.categories.get_loc(key) if k == kind else -1 for k, key in numbered],
            dtype=np.int64,
        )
        codes = np.concatenate([np.asarray(keys.codes, dtype=np.int64), lookup[owners]])
        per_kind[kind] = pd.Categorical.from_codes(codes, categories=keys.categories)
    in_fleet = np.zeros(len(stacked), bool)
    in_fleet[:n_window] = True
    return Pooled(stacked, n_window, per_kind, in_fleet, span_starts)


def _concat(frame: pd.DataFrame, parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The window's columns over the window's rows and then every part's: categoricals as
    categoricals (a union of their categories, so a large window's text columns are not turned
    into Python objects), a column a part lacks as missing values, a part's extra columns
    dropped (the window's reference decides which columns are analysed)."""
    columns: dict[str, Any] = {}
    for name in frame.columns:
        window_column = frame[name]
        pieces = [part.get(name) for part in parts]
        if isinstance(window_column.dtype, pd.CategoricalDtype):
            categories = window_column.cat.categories
            categorical = [window_column.array] + [
                pd.Categorical.from_codes(np.full(len(part), -1), categories=categories)
                if piece is None
                else pd.Categorical(piece)
                for piece, part in zip(pieces, parts, strict=True)
            ]
            try:
                columns[name] = union_categoricals(categorical, ignore_order=True)
            except TypeError:  # a part holds other types (numbers): as objects, then
                columns[name] = pd.Categorical(
                    np.concatenate([np.asarray(c, dtype=object) for c in categorical])
                )
        else:
            series = [window_column] + [
                pd.Series(index=range(len(part)), dtype=window_column.dtype)
                if piece is None
                else piece
                for piece, part in zip(pieces, parts, strict=True)
            ]
            columns[name] = pd.concat(series, ignore_index=True)
    return pd.DataFrame(columns, copy=False)
