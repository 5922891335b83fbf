"""The canary's judgement (pure): do the canary's nodes do worse than the rest of the fleet?

Over the judged windows, each side's accuracy is pooled over its nodes' windows, weighted by
labels (the share of its labelled records predicted right), and its drift is the share of its
node verdicts that are drifted. The canary regresses when its accuracy is below the rest's by
more than ``accuracy_tolerance`` beyond the noise (the gap minus ``z`` standard errors of a
difference of two proportions), or when it drifts more than the rest by more than
``drift_tolerance`` beyond the noise. Too few labels on either side: wait, and after
``patience`` times the windows asked for, roll back (a candidate nobody could vouch for in the
field is not rolled out).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

Decision = Literal["promote", "rollback", "wait"]

#: How much worse than the rest the canary's accuracy may be (beyond the noise).
ACCURACY_TOLERANCE = 0.02
#: How much more of the canary's node verdicts may be drifted (beyond the noise).
DRIFT_TOLERANCE = 0.10
#: One-sided 95%: a regression must stand out of the noise at that confidence.
Z = 1.645
#: Fewest labelled records per side to judge accuracy on.
MIN_LABELS = 50
#: Windows waited for labels, as a multiple of the windows asked for, before rolling back.
PATIENCE = 2


@dataclass(frozen=True, slots=True)
class NodeWindow:
    """One node's stored results in one judged window."""

    node: str
    canary: bool
    #: Labelled records behind ``accuracy`` (0 when the window had no accuracy).
    n_labelled: int
    accuracy: float | None
    #: The node's drift verdict (None: no verdict).
    drifted: bool | None


@dataclass(frozen=True, slots=True)
class Side:
    """One side's pooled figures."""

    nodes: int
    labelled: int
    accuracy: float | None
    verdicts: int
    drifted: int
    drift_share: float | None


@dataclass(frozen=True, slots=True)
class Judgement:
    """The decision, why, and the figures behind it."""

    decision: Decision
    reason: str
    windows: int
    canary: Side
    rest: Side
    #: rest - canary accuracy, and its standard error.
    accuracy_gap: float | None
    accuracy_se: float | None
    #: canary - rest drift share, and its standard error.
    drift_gap: float | None
    drift_se: float | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("accuracy_gap", "accuracy_se", "drift_gap", "drift_se"):
            if out[key] is not None:
                out[key] = round(out[key], 6)
        return out


def side(observations: Iterable[NodeWindow]) -> Side:
    """Pooled accuracy (labels-weighted) and drift share of some node windows."""
    nodes: set[str] = set()
    labelled, correct, verdicts, drifted = 0, 0.0, 0, 0
    for o in observations:
        nodes.add(o.node)
        if o.accuracy is not None and o.n_labelled > 0:
            labelled += o.n_labelled
            correct += o.accuracy * o.n_labelled
        if o.drifted is not None:
            verdicts += 1
            drifted += int(o.drifted)
    return Side(
        nodes=len(nodes),
        labelled=labelled,
        accuracy=round(correct / labelled, 6) if labelled else None,
        verdicts=verdicts,
        drifted=drifted,
        drift_share=round(drifted / verdicts, 6) if verdicts else None,
    )


def judge(
    observations: Iterable[NodeWindow],
    *,
    windows: int,
    wanted: int,
    accuracy_tolerance: float = ACCURACY_TOLERANCE,
    drift_tolerance: float = DRIFT_TOLERANCE,
    z: float = Z,
    min_labels: int = MIN_LABELS,
    patience: int = PATIENCE,
) -> Judgement:
    """Judge a canary on ``windows`` judged windows (``wanted`` asked for)."""
    seen = list(observations)
    canary = side(o for o in seen if o.canary)
    rest = side(o for o in seen if not o.canary)
    accuracy_gap = accuracy_se = drift_gap = drift_se = None
    if canary.accuracy is not None and rest.accuracy is not None:
        accuracy_gap = rest.accuracy - canary.accuracy
        accuracy_se = _se(canary.accuracy, canary.labelled, rest.accuracy, rest.labelled)
    if canary.drift_share is not None and rest.drift_share is not None:
        drift_gap = canary.drift_share - rest.drift_share
        drift_se = _se(canary.drift_share, canary.verdicts, rest.drift_share, rest.verdicts)

    def decided(decision: Decision, reason: str) -> Judgement:
        return Judgement(
            decision,
            reason,
            windows,
            canary,
            rest,
            accuracy_gap,
            accuracy_se,
            drift_gap,
            drift_se,
        )

    if windows < wanted:
        return decided("wait", f"{windows} of {wanted} windows judged so far")
    if canary.nodes == 0:
        return decided("rollback", "no node reported results while in the canary")
    if (
        drift_gap is not None
        and drift_se is not None
        and drift_gap - z * drift_se > drift_tolerance
    ):
        return decided(
            "rollback",
            f"the canary drifts more: {canary.drift_share:.2f} of its node verdicts drifted "
            f"vs {rest.drift_share:.2f} for the rest",
        )
    if canary.labelled < min_labels or rest.labelled < min_labels:
        few = f"{canary.labelled} canary and {rest.labelled} other labelled records"
        if windows < wanted * patience:
            return decided("wait", f"{few}, fewer than {min_labels} each: waiting for labels")
        return decided("rollback", f"{few} after {windows} windows: too few to vouch for it")
    assert accuracy_gap is not None and accuracy_se is not None
    if accuracy_gap - z * accuracy_se > accuracy_tolerance:
        return decided(
            "rollback",
            f"the canary's accuracy regresses: {canary.accuracy:.4f} vs {rest.accuracy:.4f} "
            f"for the rest",
        )
    return decided(
        "promote",
        f"no regression: accuracy {canary.accuracy:.4f} vs {rest.accuracy:.4f} for the rest, "
        f"drifted node verdicts {_share(canary.drift_share)} vs {_share(rest.drift_share)}",
    )


def _se(p1: float, n1: int, p2: float, n2: int) -> float:
    """Standard error of the difference of two proportions."""
    return math.sqrt(p1 * (1 - p1) / max(n1, 1) + p2 * (1 - p2) / max(n2, 1))


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
