"""Synthetic fleet windows for the analysis tests and benchmark: 20 numerical, 5 categorical
features, a binary prediction with probabilities, nodes of Zipf-like sizes in 10 groups."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd

NUMERIC = tuple(f"x{i:02d}" for i in range(20))
CATEGORICAL = ("c0", "c1", "c2", "c3", "flag")
FEATURES = NUMERIC + CATEGORICAL
_LEVELS = {"c0": 3, "c1": 6, "c2": 12, "c3": 40}


def node_sizes(n_rows: int, n_nodes: int, *, zipf: float = 0.8, floor: int = 0) -> np.ndarray:
    """Rows per node: ``floor`` each, the rest Zipf-like (``1 / rank**zipf``)."""
    weights = 1.0 / np.arange(10, n_nodes + 10) ** zipf
    rest = n_rows - floor * n_nodes
    sizes = np.floor(rest * weights / weights.sum()).astype(np.int64) + floor
    sizes[0] += n_rows - sizes.sum()
    return sizes


def frame(
    n_rows: int,
    *,
    seed: int,
    sizes: np.ndarray | None = None,
    shift: Mapping[str, float] | None = None,
    node_shift: Mapping[str, float] | None = None,
    shifted_nodes: Collection[int] = (),
) -> pd.DataFrame:
    """A window-shaped frame. ``shift`` moves features everywhere, ``node_shift`` only on
    ``shifted_nodes``: numerical features by that many standard deviations, categorical ones
    by mixing that share of rows into a reversed distribution."""
    rng = np.random.default_rng(seed)
    sizes = np.array([n_rows]) if sizes is None else sizes
    node = np.repeat(np.arange(1, sizes.size + 1, dtype=np.int32), sizes)
    rng.shuffle(node)
    n = node.size
    moved = np.isin(node, np.asarray(list(shifted_nodes), dtype=np.int32))
    data: dict[str, object] = {
        "row_key": np.arange(n, dtype=np.int64),
        "ts": pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="ms"),
        "node_id": node,
        "model_version_id": np.ones(n, np.int32),
        "latency_ms": rng.gamma(2.0, 3.0, n),
    }
    for i, name in enumerate(NUMERIC):
        values, sd = _numeric(i, rng, n)
        delta = np.full(n, (shift or {}).get(name, 0.0))
        delta[moved] += (node_shift or {}).get(name, 0.0)
        data[f"feature:{name}"] = values + delta * sd if i % 8 != 6 else _few_values(values, delta)
    for name in CATEGORICAL:
        mix = np.full(n, (shift or {}).get(name, 0.0))
        mix[moved] += (node_shift or {}).get(name, 0.0)
        data[f"feature:{name}"] = _categorical(name, rng, n, mix)
    score = 0.8 * _z(data["feature:x00"]) - 0.6 * _z(data["feature:x01"]) + rng.normal(0, 0.5, n)
    p_yes = 1.0 / (1.0 + np.exp(-score))
    data["prediction"] = pd.Categorical(np.where(p_yes >= 0.5, "yes", "no"))
    data["proba:yes"] = p_yes
    data["proba:no"] = 1.0 - p_yes
    columns = ["row_key", "ts", "node_id", "model_version_id", "latency_ms", "prediction"]
    features = [f"feature:{f}" for f in FEATURES]
    return pd.DataFrame(data)[[*columns, *features, "proba:yes", "proba:no"]]


def _numeric(i: int, rng: np.random.Generator, n: int) -> tuple[np.ndarray, float]:
    kind = i % 8
    if kind == 0:
        return rng.normal(10.0 + i, 2.0, n), 2.0
    if kind == 1:
        return rng.lognormal(1.0, 0.5, n), 1.5
    if kind == 2:
        return rng.exponential(3.0, n), 3.0
    if kind == 3:
        return rng.uniform(-5.0, 5.0, n), 2.9
    if kind == 4:
        return rng.gamma(3.0, 2.0, n), 3.5
    if kind == 5:
        return rng.poisson(30.0, n).astype(np.float64), 5.5
    if kind == 6:
        return rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1]).astype(np.float64), 1.0
    mixture = rng.random(n) < 0.3
    return np.where(mixture, rng.normal(-2.0, 0.5, n), rng.normal(2.0, 1.0, n)), 2.0


def _few_values(values: np.ndarray, delta: np.ndarray) -> np.ndarray:
    # A count-like feature with 4 values: drift moves rows one value up.
    moved = np.random.default_rng(7).random(values.size) < np.clip(delta, 0.0, 1.0)
    return np.where(moved, np.minimum(values + 1, 3), values)


def _categorical(name: str, rng: np.random.Generator, n: int, mix: np.ndarray) -> object:
    if name == "flag":
        p = np.where(rng.random(n) < mix, 0.7, 0.2)
        return rng.random(n) < p
    k = _LEVELS[name]
    weights = 1.0 / np.arange(1, k + 1) ** 1.1
    weights /= weights.sum()
    levels = np.array([f"{name}_{j}" for j in range(k)])
    base = rng.choice(k, n, p=weights)
    flipped = rng.choice(k, n, p=weights[::-1])
    codes = np.where(rng.random(n) < mix, flipped, base)
    return pd.Categorical.from_codes(codes, categories=levels)


def _z(values: object) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return (array - array.mean()) / array.std()
