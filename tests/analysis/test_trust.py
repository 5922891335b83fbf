"""The trust verdict of an estimate: each rule, in its order, and the sentence a person reads
(an untrusted estimate's never reassures)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest

from monitor.analysis.policy import EstimationPolicy
from monitor.analysis.trust import PastWindow, ScopeChecks, TrustEvidence, Verdicts, judge
from monitor.schema import (
    CALIBRATION,
    HISTORY,
    LABELS_AGREE,
    NO_CONTRARY_EVIDENCE,
    OUTPUTS_WITHOUT_INPUTS,
)

POLICY = EstimationPolicy()
SD = 0.2  # the reference's spread of per-row correctness
SITE_A = ("site", "site-a")
EARLIER = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 30, 6, 15, tzinfo=UTC)


def scope(
    *,
    kind: str = "site",
    key: str = "site-a",
    accuracy: float = 0.95,
    n_labelled: int = 0,
    realised: float = float("nan"),
    expected: float = float("nan"),
    allowance: float = 0.0,
    estimated: bool = True,
) -> dict[str, object]:
    return {
        "kind": kind,
        "key": key,
        "estimated": estimated,
        "accuracy": accuracy,
        "n_labelled": n_labelled,
        "realised": realised,
        "expected": expected,
        "allowance": allowance,
    }


def verdicts(
    scopes: Sequence[dict[str, object]],
    evidence: TrustEvidence | None = None,
    *,
    leaned_on: Sequence[str] = ("temperature_c", "vibration_mm_s"),
    members: dict[tuple[int, str], list[int]] | None = None,
    reference_error: float = 0.0,
) -> Verdicts:
    def column(name: str, dtype: type) -> np.ndarray:
        return np.array([s[name] for s in scopes], dtype=dtype)

    checks = ScopeChecks(
        kinds=[str(s["kind"]) for s in scopes],
        keys=[str(s["key"]) for s in scopes],
        estimated=column("estimated", bool),
        accuracy=column("accuracy", float),
        n_labelled=column("n_labelled", np.int64),
        realised=column("realised", float),
        expected=column("expected", float),
        shift_allowance=column("allowance", float),
        members=lambda i, kind: (members or {}).get((i, kind), []),
    )
    return judge(
        checks,
        evidence,
        sd_reference=SD,
        reference_error=reference_error,
        leaned_on=leaned_on,
        policy=POLICY,
    )


def one(verdict: Verdicts, i: int = 0) -> tuple[object, object, str]:
    return verdict.trusted[i], verdict.evidence[i], str(verdict.reason[i])


def test_labels_that_contradict_the_estimate_mean_it_is_not_trusted() -> None:
    trusted, evidence, reason = one(verdicts([scope(n_labelled=52, realised=0.61, expected=0.95)]))
    assert (trusted, evidence) == (False, CALIBRATION)
    # 3 * 0.2 / sqrt(52) = 0.083 either side of 0.95
    assert reason == (
        "not trusted: calibration broke at site site-a: on 52 labelled records the model was "
        "right 61% of the time where its calibrated confidence promised 95% (band 0.87\u20131.00)"
    )


def test_labels_that_agree_with_the_estimate_mean_it_is_trusted() -> None:
    trusted, evidence, reason = one(
        verdicts([scope(kind="node", key="n-7", n_labelled=120, realised=0.94, expected=0.95)])
    )
    assert (trusted, evidence) == (True, LABELS_AGREE)
    assert reason == (
        "labels agree: 0.94 realised on 120 labelled records, 0.95 promised (0.90\u20131.00)"
    )


def test_the_labels_band_widens_by_the_shift_allowance() -> None:
    # 0.85 is 0.10 below 0.95: outside 3 * 0.2 / sqrt(400) = 0.03, inside 0.03 + 0.08.
    narrow = verdicts([scope(n_labelled=400, realised=0.85, expected=0.95)])
    widened = verdicts([scope(n_labelled=400, realised=0.85, expected=0.95, allowance=0.08)])
    assert one(narrow)[:2] == (False, CALIBRATION)
    assert one(widened)[:2] == (True, LABELS_AGREE)
    assert "(0.84\u20131.00)" in one(widened)[2]


def test_the_calibrations_own_uncertainty_widens_every_check() -> None:
    """Calibrated on 5,000 reference rows, the promise is known to 0.2 / sqrt(5000) = 0.0028:
    three of those (0.0085) widen the check however many labels there are, and the band an
    earlier window was checked against."""
    error = SD / np.sqrt(5_000)
    # 2,400 labels: 3 * 0.2 / sqrt(2400) = 0.0122; 0.961 - 0.945 = 0.016 < 0.0122 + 0.0085.
    labelled = scope(kind="fleet", key="", n_labelled=2_400, realised=0.945, expected=0.961)
    assert one(verdicts([labelled]))[:2] == (False, CALIBRATION)
    assert one(verdicts([labelled], reference_error=error))[:2] == (True, LABELS_AGREE)
    history = TrustEvidence(history={SITE_A: [PastWindow(EARLIER, 600, 0.940, 0.945, 0.975)]})
    assert one(verdicts([scope()], history))[:2] == (False, HISTORY)
    trusted = verdicts([scope()], history, reference_error=error)
    assert one(trusted)[:2] == (True, LABELS_AGREE)
    assert "inside its band 0.94\u20130.98" in one(trusted)[2]


def test_too_few_labels_do_not_check_the_estimate() -> None:
    trusted, evidence, reason = one(verdicts([scope(n_labelled=5, realised=0.2, expected=0.95)]))
    assert (trusted, evidence) == (True, NO_CONTRARY_EVIDENCE)
    assert reason == "only 5 labelled records in this window, too few to check it (needs 20)"


def test_outputs_that_drift_while_no_input_does_mean_the_model_changed() -> None:
    evidence = TrustEvidence(outputs_drifted={SITE_A: True})
    trusted, code, reason = one(verdicts([scope()], evidence))
    assert (trusted, code) == (False, OUTPUTS_WITHOUT_INPUTS)
    assert reason.startswith(
        "not trusted: the model's outputs drifted at site site-a while none of its inputs did"
    )
    # Inputs drifted too: the outputs follow them, and no rule says not trusted.
    with_inputs = TrustEvidence(
        outputs_drifted={SITE_A: True}, drifted_features={SITE_A: ["temperature_c"]}
    )
    assert one(verdicts([scope(allowance=0.07)], with_inputs)) == (
        True,
        NO_CONTRARY_EVIDENCE,
        "no labelled records yet to check it; inputs the model leans on drifted "
        "(temperature_c): band widened by 0.07",
    )


def test_labels_of_this_window_come_before_output_drift_and_history() -> None:
    evidence = TrustEvidence(
        outputs_drifted={SITE_A: True},
        history={SITE_A: [PastWindow(EARLIER, 300, 0.5, 0.9, 1.0)]},
    )
    agreeing = scope(n_labelled=200, realised=0.95, expected=0.95)
    assert one(verdicts([agreeing], evidence))[:2] == (True, LABELS_AGREE)
    # Without labels, output drift comes before history.
    assert one(verdicts([scope()], evidence))[:2] == (False, OUTPUTS_WITHOUT_INPUTS)


def test_the_latest_labelled_window_judges_an_estimate_without_labels() -> None:
    failed = PastWindow(EARLIER, 300, 0.80, 0.91, 0.99)
    held = PastWindow(LATER, 250, 0.95, 0.91, 0.99)
    too_few = PastWindow(LATER, 10, 0.30, 0.70, 1.00)

    trusted, code, reason = one(verdicts([scope()], TrustEvidence(history={SITE_A: [failed]})))
    assert (trusted, code) == (False, HISTORY)
    assert reason == (
        "not trusted: calibration broke at site site-a in the last labelled window "
        "(2026-11-30 06:00): on 300 labelled records the model was right 80% of the time, "
        "outside the band 0.91\u20130.99 its estimate was checked against"
    )

    # Oldest first: the latest with enough labels decides.
    history = TrustEvidence(history={SITE_A: [failed, held, too_few]})
    trusted, code, reason = one(verdicts([scope(n_labelled=3)], history))
    assert (trusted, code) == (True, LABELS_AGREE)
    assert reason == (
        "labels agree in the last labelled window (2026-11-30 06:15): 0.95 realised on 250 "
        "labelled records, inside its band 0.91\u20130.99; only 3 labelled records in this "
        "window, too few to check it (needs 20)"
    )
    assert one(verdicts([scope()], TrustEvidence(history={SITE_A: [too_few]})))[1] == (
        NO_CONTRARY_EVIDENCE
    )


def test_nothing_contrary_says_what_was_and_was_not_checked() -> None:
    assert one(verdicts([scope()])) == (
        True,
        NO_CONTRARY_EVIDENCE,
        "no labelled records yet to check it",
    )
    others = TrustEvidence(drifted_features={SITE_A: ["humidity_pct"]})
    assert one(verdicts([scope()], others))[2] == (
        "no labelled records yet to check it; inputs drifted (humidity_pct), none the model "
        "leans on"
    )
    moved = one(verdicts([scope(allowance=0.12)]))[2]
    assert moved == (
        "no labelled records yet to check it; its predicted classes moved from the "
        "reference's mix: band widened by 0.12"
    )


def test_an_aggregate_that_fails_names_its_worst_sites_and_nodes() -> None:
    scopes = [
        scope(kind="fleet", key="", n_labelled=400, realised=0.80, expected=0.95),
        scope(kind="site", key="site-a", n_labelled=100, realised=0.62, expected=0.95),
        scope(kind="site", key="site-b", n_labelled=100, realised=0.75, expected=0.95),
        scope(kind="site", key="site-c", n_labelled=200, realised=0.95, expected=0.96),
        scope(kind="node", key="n-1", n_labelled=50, realised=0.60, expected=0.95),
        scope(kind="node", key="n-2", n_labelled=50, realised=0.94, expected=0.95),
    ]
    members = {(0, "site"): [1, 2, 3], (1, "node"): [4, 5], (0, "node"): [4, 5]}
    result = verdicts(scopes, members=members)
    assert list(result.trusted) == [False, False, False, True, False, True]
    fleet, site_a = str(result.reason[0]), str(result.reason[1])
    assert fleet.startswith("not trusted: calibration broke across the fleet: on 400 labelled")
    assert fleet.endswith(
        "; worst: site site-a (62% vs 95% on 100), site site-b (75% vs 95% on 100)"
    )
    assert site_a.endswith("; worst: node n-1 (60% vs 95% on 50)")


def test_an_untrusted_estimate_never_reassures_and_no_estimate_gets_no_verdict() -> None:
    evidence = TrustEvidence(
        outputs_drifted={("node", "b"): True},
        history={("node", "c"): [PastWindow(EARLIER, 100, 0.5, 0.9, 1.0)]},
    )
    scopes = [
        scope(kind="node", key="a", n_labelled=60, realised=0.5, expected=0.95),
        scope(kind="node", key="b"),
        scope(kind="node", key="c"),
        scope(kind="node", key="d", estimated=False, n_labelled=60, realised=0.5, expected=0.9),
    ]
    result = verdicts(scopes, evidence)
    assert list(result.trusted[:3]) == [False, False, False]
    for reason in result.reason[:3]:
        assert str(reason).startswith("not trusted: ")
        assert "agree" not in str(reason) and "no contrary" not in str(reason)
    assert one(result, 3) == (None, None, "None")


@pytest.mark.parametrize("realised", [0.20, 0.99])
def test_labels_beyond_either_side_of_the_band_break_trust(realised: float) -> None:
    result = verdicts([scope(n_labelled=1_000, realised=realised, expected=0.80)])
    assert one(result)[:2] == (False, CALIBRATION)


def test_a_break_at_a_site_reaches_its_nodes_unless_their_own_labels_rule_it_out() -> None:
    # The site's 400 labels realise 0.85 where 0.95 was promised: its calibration broke.
    broken_site = scope(n_labelled=400, realised=0.85, expected=0.95)
    # Node 1's 90 labels (0.89) fit a band around 0.95 and the broken level alike; node 2's
    # (0.99) lie above the broken level; node 3 has none; node 4 sits at a site that agrees.
    found = verdicts(
        [
            scope(kind="fleet", key="", n_labelled=800, realised=0.87, expected=0.95),
            broken_site,
            scope(key="site-b", n_labelled=400, realised=0.95, expected=0.95),
            scope(kind="node", key="n1", n_labelled=90, realised=0.89, expected=0.95),
            scope(kind="node", key="n2", n_labelled=90, realised=0.99, expected=0.95),
            scope(kind="node", key="n3"),
            scope(kind="node", key="n4"),
        ],
        members={(1, "node"): [3, 4, 5], (2, "node"): [6]},
    )
    assert list(found.trusted) == [False, False, True, False, True, False, True]
    assert list(found.evidence[3:]) == [
        CALIBRATION,
        LABELS_AGREE,
        CALIBRATION,
        NO_CONTRARY_EVIDENCE,
    ]
    assert found.reason[3] == (
        "not trusted: calibration broke at site site-a in this window: on 400 labelled records "
        "the model was right 85% of the time where its estimate promised 95%; its own 90 "
        "labelled records (89% right) cannot rule that out"
    )
    assert found.reason[5].endswith("it has too few labels of its own to rule that out")


def test_one_chance_miss_among_many_checked_scopes_does_not_break_trust() -> None:
    # 0.914 on 200 labels against 0.96 promised is 3.3 errors off: alone, not trusted; among
    # twenty checked scopes that agree, a miss chance allows (Benjamini-Hochberg).
    miss = scope(key="site-d", n_labelled=200, realised=0.914, expected=0.96)
    alone = verdicts([miss])
    assert list(alone.trusted) == [False]
    agreeing = [
        scope(kind="node", key=f"n{i}", n_labelled=200, realised=0.96, expected=0.96)
        for i in range(19)
    ]
    among = verdicts([miss, *agreeing])
    assert among.trusted[0] is True
    assert among.evidence[0] == LABELS_AGREE
    assert str(among.reason[0]).startswith(
        "labels do not contradict it: 0.91 realised on 200 labelled records, 0.96 promised"
    )
