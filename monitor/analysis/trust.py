"""Whether a scope's performance estimate can be trusted, from the evidence its window has.

A confidence-based estimate assumes the model's calibration on the reference still holds.
Under concept drift it does not, and the estimate stays confidently wrong, so each estimate
gets a verdict from the first rule that applies:

1. This window has enough labelled rows at the scope (``check_labels``): the accuracy they
   realise is compared with the accuracy their calibrated confidence promised, within
   ``band_errors`` sampling errors of that many rows and of the reference's (the calibration's
   own uncertainty), plus the scope's shift allowance. Outside: not trusted (``calibration``);
   inside: trusted (``labels_agree``). The window's checks are decided together, under
   Benjamini-Hochberg, so that a miss chance allows among dozens of checked scopes does not
   break trust.
2. The model's outputs (its prediction or a class probability) drifted at the scope while none
   of its input features did: the model or its preprocessing changed, and the reference's
   calibration does not describe it. Not trusted (``outputs_without_inputs``).
3. The scope's latest earlier window with enough labels: its realised accuracy outside the band
   it was checked against (widened by the calibration's own uncertainty, as in rule 1): not
   trusted (``history``); inside: trusted (``labels_agree``).
4. Otherwise trusted (``no_contrary_evidence``), saying whether labels were there to check it
   and whether the inputs the model leans on drifted.

Then a trusted scope inside one whose calibration broke (by rule 1 or 3: a node or group in its
site, a site in the fleet) is not trusted either, with its parent's evidence, unless its own
labels of this window lie above the broken level: a few dozen labels cannot tell a node's
0.89 from 0.95, and a calibration that broke at its site has no reason to hold for it.

Each verdict comes with one sentence a person reads, with its figures; an untrusted estimate's
sentence never reassures. Loops here run over scopes (thousands), never over rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from scipy import special

from monitor.analysis.multiplicity import bh_adjust
from monitor.analysis.policy import EstimationPolicy
from monitor.schema import (
    CALIBRATION,
    FLEET,
    GROUP,
    HISTORY,
    LABELS_AGREE,
    NO_CONTRARY_EVIDENCE,
    NODE,
    OUTPUTS_WITHOUT_INPUTS,
    SITE,
)

ScopeKey = tuple[str, str]
#: Sites or nodes named in an aggregate scope's sentence, worst first.
NAMED_WORST = 3


@dataclass(frozen=True)
class PastWindow:
    """An earlier window of a scope that had labels: how many, the accuracy they realised, and
    the band that accuracy was checked against."""

    window_start: datetime
    n_labelled: int
    realised_accuracy: float | None
    accuracy_lower: float | None
    accuracy_upper: float | None
    #: What that window's own check decided (None: judge by the band).
    held: bool | None = None


@dataclass(frozen=True)
class TrustEvidence:
    """What a window's drift results and its scopes' labelled history say, per (scope kind,
    scope key)."""

    #: The input features that drifted at the scope this window (absent: none).
    drifted_features: Mapping[ScopeKey, Sequence[str]] = field(default_factory=dict)
    #: The prediction or a class probability drifted at the scope (absent: no verdict).
    outputs_drifted: Mapping[ScopeKey, bool] = field(default_factory=dict)
    #: Earlier windows of the scope that had labels, oldest first.
    history: Mapping[ScopeKey, Sequence[PastWindow]] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class ScopeChecks:
    """Per scope (flat order), what the verdict is judged on: whether it has an estimate, the
    estimated accuracy, the labelled rows of this window with the accuracy they realised and
    the accuracy promised for them, and the band's widening for shift."""

    kinds: Sequence[str]
    keys: Sequence[str]
    estimated: np.ndarray
    accuracy: np.ndarray
    n_labelled: np.ndarray
    realised: np.ndarray
    expected: np.ndarray
    shift_allowance: np.ndarray
    #: The flat indices of the scopes of a kind within a scope (to name the worst of them).
    members: Callable[[int, str], Sequence[int]] = field(default=lambda scope, kind: [])


@dataclass(frozen=True, eq=False)
class Verdicts:
    """Per scope: trusted (True / False / None without an estimate), the evidence that decided
    and the sentence, as object arrays."""

    trusted: np.ndarray
    evidence: np.ndarray
    reason: np.ndarray


@dataclass(frozen=True)
class _Check:
    """One labelled check of a scope: realised vs promised accuracy on ``n`` records."""

    n: int
    realised: float
    lower: float
    upper: float
    promised: float | None = None
    window_start: datetime | None = None
    #: The verdict of the check when it was decided with the window's other checks (under
    #: false-discovery control), else None: inside the band.
    held: bool | None = None

    @property
    def holds(self) -> bool:
        if self.held is not None:
            return self.held
        return self.lower <= self.realised <= self.upper

    @property
    def inside(self) -> bool:
        return self.lower <= self.realised <= self.upper

    @property
    def miss(self) -> float:
        """How far the realised accuracy lies outside the band (0 inside)."""
        return max(self.lower - self.realised, self.realised - self.upper, 0.0)


def judge(
    checks: ScopeChecks,
    evidence: TrustEvidence | None,
    *,
    sd_reference: float,
    reference_error: float = 0.0,
    leaned_on: Sequence[str],
    policy: EstimationPolicy,
) -> Verdicts:
    """Every scope's trust verdict, its evidence code and its sentence."""
    size = len(checks.kinds)
    trusted = np.full(size, None, dtype=object)
    codes = np.full(size, None, dtype=object)
    reasons = np.full(size, None, dtype=object)
    evidence = evidence or TrustEvidence()
    with np.errstate(invalid="ignore", divide="ignore"):
        n = checks.n_labelled.astype(np.float64)
        # The calibration's own uncertainty holds at any number of labels.
        margin = policy.band_errors * reference_error if np.isfinite(reference_error) else 0.0
        half = (
            policy.band_errors * sd_reference / np.sqrt(n)
            + margin
            + np.nan_to_num(checks.shift_allowance)
        )
        lower = np.clip(checks.expected - half, 0.0, 1.0)
        upper = np.clip(checks.expected + half, 0.0, 1.0)
    labelled = (
        checks.estimated & (checks.n_labelled >= policy.check_labels) & np.isfinite(checks.realised)
    )
    held = _held(checks, half, labelled, policy)
    found: dict[int, _Check] = {}
    for i in map(int, np.flatnonzero(checks.estimated)):
        scope = (checks.kinds[i], checks.keys[i])
        if labelled[i]:
            check = _Check(
                int(checks.n_labelled[i]),
                float(checks.realised[i]),
                float(lower[i]),
                float(upper[i]),
                float(checks.expected[i]),
                held=bool(held[i]),
            )
            found[i] = check
            trusted[i], codes[i] = check.holds, CALIBRATION if not check.holds else LABELS_AGREE
            continue
        if evidence.outputs_drifted.get(scope) and not evidence.drifted_features.get(scope):
            trusted[i], codes[i] = False, OUTPUTS_WITHOUT_INPUTS
            continue
        past = _latest_checked(evidence.history.get(scope, ()), policy.check_labels, margin)
        if past is not None:
            found[i] = past
            trusted[i], codes[i] = past.holds, HISTORY if not past.holds else LABELS_AGREE
            continue
        trusted[i], codes[i] = True, NO_CONTRARY_EVIDENCE
    inherited = _inherit(checks, trusted, codes, found)
    for i in map(int, np.flatnonzero(checks.estimated)):
        if i in inherited:
            reasons[i] = _inherited_sentence(i, inherited[i], found, checks)
            continue
        reasons[i] = _sentence(
            i, codes[i], found, checks, trusted, codes, evidence, leaned_on, policy
        )
    return Verdicts(trusted, codes, reasons)


def _parents(checks: ScopeChecks) -> dict[int, int]:
    """Each scope's nearest enclosing scope that can vouch for its calibration: a site's (and
    a group's or node's without a site) is the fleet, a group's and a node's is its site."""
    kinds = list(checks.kinds)
    parent: dict[int, int] = {}
    fleet = kinds.index(FLEET) if FLEET in kinds else None
    if fleet is None:
        return parent
    for i, kind in enumerate(kinds):
        if kind != FLEET:
            parent[i] = fleet
    for i, kind in enumerate(kinds):
        if kind == SITE:
            for child_kind in (GROUP, NODE):
                for j in checks.members(i, child_kind):
                    parent[j] = i
    return parent


def _inherit(
    checks: ScopeChecks, trusted: np.ndarray, codes: np.ndarray, found: dict[int, _Check]
) -> dict[int, int]:
    """Scopes whose enclosing scope's calibration broke (this window, or in its last labelled
    one) and whose own labels cannot rule out that it broke for them too: they are not trusted
    either. Returns, per such scope, the scope whose check broke.

    A node's labels are few: 90 of them realising 0.89 sit inside a band around 0.95 as well as
    inside one around the site's broken level. They clear a node only when they lie above the
    broken band (the parent's band moved down by the parent's shortfall): evidence for the
    calibration holding, not merely no evidence against it. The nearest enclosing scope decides
    (a site whose own labels agree shields its nodes from a break elsewhere in the fleet), and
    a scope that inherits passes the break on to its own members."""
    parents = _parents(checks)
    origin: dict[int, int] = {}
    order = {FLEET: 0, SITE: 1, GROUP: 2, NODE: 3}
    for i in sorted(parents, key=lambda j: order.get(checks.kinds[j], 4)):
        if not checks.estimated[i] or trusted[i] is not True:
            continue
        parent = parents[i]
        broke = origin.get(parent, parent if codes[parent] in (CALIBRATION, HISTORY) else None)
        if broke is None or trusted[parent] is not False or broke not in found:
            continue
        source = found[broke]
        shortfall = max(0.0, _promised(source) - source.realised)
        own = found.get(i)
        if own is not None and own.window_start is None and own.realised > own.upper - shortfall:
            continue  # its own labels of this window lie above the broken level
        trusted[i], codes[i] = False, codes[parent]
        origin[i] = broke
    return origin


def _promised(check: _Check) -> float:
    """What a check's estimate promised (a past check keeps its band: its middle)."""
    return check.promised if check.promised is not None else (check.lower + check.upper) / 2


def _inherited_sentence(
    i: int, broke: int, found: Mapping[int, _Check], checks: ScopeChecks
) -> str:
    source = found[broke]
    where = _where(checks.kinds[broke], checks.keys[broke])
    when = (
        "in this window"
        if source.window_start is None
        else f"in the last labelled window ({_when(source.window_start)})"
    )
    own = found.get(i)
    mine = (
        f"its own {own.n} labelled records ({own.realised:.0%} right) cannot rule that out"
        if own is not None and own.window_start is None
        else "it has too few labels of its own to rule that out"
    )
    return (
        f"not trusted: calibration broke {where} {when}: on {source.n} labelled records the "
        f"model was right {source.realised:.0%} of the time where its estimate promised "
        f"{_promised(source):.0%}; {mine}"
    )


def _held(
    checks: ScopeChecks, half: np.ndarray, labelled: np.ndarray, policy: EstimationPolicy
) -> np.ndarray:
    """Per scope, whether its labels leave the estimate standing, decided for all the window's
    checked scopes together: a window checks dozens of scopes, and one in a few hundred lies
    beyond ``band_errors`` sampling errors by chance alone. Each check's two-sided p-value (its
    miss in units of its band's error) goes through Benjamini-Hochberg across the window's
    checks, at the rate one check alone would have (beyond ``band_errors`` errors): a lone
    check is judged by its band, as before, and a concept change, which moves every scope's
    figures, is not diluted."""
    held = np.ones(len(labelled), dtype=bool)
    which = np.flatnonzero(labelled)
    if not which.size:
        return held
    with np.errstate(invalid="ignore", divide="ignore"):
        error = half[which] / policy.band_errors
        z = np.abs(checks.realised[which] - checks.expected[which]) / error
    p = 2.0 * special.ndtr(-np.nan_to_num(z, nan=0.0, posinf=np.inf))
    rate = 2.0 * float(special.ndtr(-policy.band_errors))
    held[which] = bh_adjust(p) > rate
    return held


def _latest_checked(
    history: Sequence[PastWindow], check_labels: int, margin: float
) -> _Check | None:
    """The latest earlier window with enough labels and a band, as a check. The band is the one
    its labels were checked against for sampling and shift; it is widened here by ``margin``,
    the calibration's own uncertainty, as this window's check is."""
    for past in reversed(history):
        if (
            past.n_labelled >= check_labels
            and past.realised_accuracy is not None
            and past.accuracy_lower is not None
            and past.accuracy_upper is not None
        ):
            return _Check(
                past.n_labelled,
                past.realised_accuracy,
                max(0.0, past.accuracy_lower - margin),
                min(1.0, past.accuracy_upper + margin),
                window_start=past.window_start,
                held=past.held,
            )
    return None


def _sentence(
    i: int,
    code: str,
    found: Mapping[int, _Check],
    checks: ScopeChecks,
    trusted: np.ndarray,
    codes: np.ndarray,
    evidence: TrustEvidence,
    leaned_on: Sequence[str],
    policy: EstimationPolicy,
) -> str:
    kind, key = checks.kinds[i], checks.keys[i]
    where = _where(kind, key)
    check = found.get(i)
    if code == CALIBRATION and check is not None:
        text = (
            f"not trusted: calibration broke {where}: on {check.n} labelled records the model "
            f"was right {check.realised:.0%} of the time where its calibrated confidence "
            f"promised {check.promised:.0%} (band {_band(check)})"
        )
        return text + _worst(i, found, checks, codes)
    if code == HISTORY and check is not None:
        text = (
            f"not trusted: calibration broke {where} in the last labelled window "
            f"({_when(check.window_start)}): on {check.n} labelled records the model was right "
            f"{check.realised:.0%} of the time, outside the band "
            f"{_band(check)} its estimate was checked against"
        )
        return text + _worst(i, found, checks, codes)
    if code == OUTPUTS_WITHOUT_INPUTS:
        return (
            f"not trusted: the model's outputs drifted {where} while none of its inputs did: "
            "the model or its preprocessing changed, and the reference's calibration no "
            "longer describes it"
        )
    if code == LABELS_AGREE and check is not None and check.window_start is None:
        if not check.inside:
            return (
                f"labels do not contradict it: {check.realised:.2f} realised on {check.n} "
                f"labelled records, {check.promised:.2f} promised ({_band(check)}): a miss "
                "chance allows among this window's checks"
            )
        return (
            f"labels agree: {check.realised:.2f} realised on {check.n} labelled records, "
            f"{check.promised:.2f} promised ({_band(check)})"
        )
    n_labelled = int(checks.n_labelled[i])
    if n_labelled == 0:
        now = "no labelled records in this window yet"
    else:
        now = (
            f"only {n_labelled} labelled records in this window, too few to check it "
            f"(needs {policy.check_labels})"
        )
    if code == LABELS_AGREE and check is not None:
        return (
            f"labels agree in the last labelled window ({_when(check.window_start)}): "
            f"{check.realised:.2f} realised on {check.n} labelled records, inside its band "
            f"{_band(check)}; {now}"
        )
    if n_labelled == 0:
        now = "no labelled records yet to check it"
    return now + _inputs((kind, key), float(checks.shift_allowance[i]), evidence, leaned_on)


def _inputs(
    scope: tuple[str, str], allowance: float, evidence: TrustEvidence, leaned_on: Sequence[str]
) -> str:
    """What the inputs say about an estimate no label has checked."""
    allowance = allowance if np.isfinite(allowance) else 0.0
    drifted = list(evidence.drifted_features.get(scope, ()))
    leaned = [name for name in drifted if name in leaned_on]
    widened = f": band widened by {allowance:.2f}" if allowance > 0 else ""
    if leaned:
        return f"; inputs the model leans on drifted ({', '.join(leaned)}){widened}"
    if drifted:
        return f"; inputs drifted ({', '.join(drifted)}), none the model leans on{widened}"
    if allowance > 0:
        return f"; its predicted classes moved from the reference's mix{widened}"
    return ""


def _worst(i: int, found: Mapping[int, _Check], checks: ScopeChecks, codes: np.ndarray) -> str:
    """For a fleet, site or group that failed its check: its sites (the fleet's) or nodes whose
    own check failed too, worst first."""
    kind = checks.kinds[i]
    if kind == FLEET:
        below = [SITE, GROUP, NODE]
    elif kind in (SITE, GROUP):
        below = [NODE]
    else:
        return ""
    for child_kind in below:
        members = checks.members(i, child_kind)
        if not members:
            continue
        failed = [
            (found[j], j) for j in members if codes[j] in (CALIBRATION, HISTORY) and j in found
        ]
        if not failed:
            return ""
        failed.sort(key=lambda item: -item[0].miss)
        named = ", ".join(
            f"{checks.kinds[j]} {checks.keys[j]} ({c.realised:.0%}"
            + (f" vs {c.promised:.0%}" if c.promised is not None else "")
            + f" on {c.n})"
            for c, j in failed[:NAMED_WORST]
        )
        more = f" and {len(failed) - NAMED_WORST} more" if len(failed) > NAMED_WORST else ""
        return f"; worst: {named}{more}"
    return ""


def _band(check: _Check) -> str:
    return f"{check.lower:.2f}\u2013{check.upper:.2f}"


def _where(kind: str, key: str) -> str:
    if kind == FLEET:
        return "across the fleet"
    if kind == GROUP:
        return f"in group {key}"
    return f"at {kind} {key}"


def _when(start: datetime | None) -> str:
    return "" if start is None else start.strftime("%Y-%m-%d %H:%M")
