"""Performance rules on an estimate: where labels give no figure, the window's estimate is judged
with its band, and an estimate that is not trusted can breach but never reassures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from monitor.alerts.evaluate import WindowFigures, evaluate
from monitor.alerts.payload import summary
from monitor.alerts.rules import HIGHER_IS_BETTER, Rule, check
from monitor.alerts.rulesfile import rule_from
from monitor.alerts.uncertainty import BREACH, CLEAR, UNKNOWN, judge_estimate

START = datetime(2026, 1, 1, 10, tzinfo=UTC)
BROKE = "calibration broke: 120 labelled rows at site a, realised 0.61 against 0.80 promised"


def estimate(kind: str, key: str, accuracy: float | None, band: float, trusted: bool | None):
    """One estimation row: ``accuracy`` with a band ``band`` either side."""
    row: dict[str, Any] = {"scope_kind": kind, "scope_key": key, "status": "ok"}
    for metric in HIGHER_IS_BETTER:
        figure = accuracy if metric == "accuracy" else None
        row[metric] = figure
        row[f"{metric}_lower"] = None if figure is None else figure - band
        row[f"{metric}_upper"] = None if figure is None else figure + band
    row["trusted"] = trusted
    row["trust_evidence"] = (
        None if trusted is None else ("labels_agree" if trusted else "calibration")
    )
    row["trust_reason"] = None if trusted is None else ("labels agree" if trusted else BROKE)
    return row


def figures(
    estimates: list[dict[str, Any]],
    realised: list[tuple[str, str, int, float | None]] = (),  # type: ignore[assignment]
    **overrides: Any,
) -> WindowFigures:
    """A window with these realised (scope kind, key, labelled, accuracy) and estimated rows."""
    empty = pd.DataFrame({"scope_kind": [], "scope_key": []})
    performance = pd.DataFrame(
        {
            "scope_kind": [r[0] for r in realised],
            "scope_key": [r[1] for r in realised],
            "status": ["ok" if r[3] is not None else "insufficient_labels" for r in realised],
            "n_labelled": [r[2] for r in realised],
            "accuracy": [np.nan if r[3] is None else r[3] for r in realised],
        }
    )
    return WindowFigures(
        window_start=START,
        window_end=START + timedelta(minutes=15),
        drift=empty,
        drift_features=empty,
        quality_features=empty,
        performance=performance,
        estimation=pd.DataFrame(estimates) if estimates else {},
        **overrides,
    )


def accuracy_below(bound: float, **fields: Any) -> Rule:
    params = {"metric": "accuracy", "below": bound, **fields.pop("params", {})}
    return Rule("acc", "performance", "m", params=params, **fields)


def judged(rule: Rule, found: WindowFigures) -> dict[str, tuple[str, float]]:
    out = evaluate(found, [rule])
    return {
        s: (state, value)
        for s, state, value in zip(out["subject"], out["state"], out["value"], strict=True)
    }


def test_a_band_wholly_below_the_bound_breaches_and_says_it_was_an_estimate() -> None:
    found = figures([estimate("fleet", "", 0.80, 0.03, True)])
    out = evaluate(found, [accuracy_below(0.85)])
    assert out["state"].tolist() == [BREACH]
    assert out["value"].tolist() == [pytest.approx(0.80)]
    assert out["bound"].tolist() == [0.85]
    [details] = out["details"].tolist()
    assert details == {
        "metric": "accuracy",
        "estimated": True,
        "band": [pytest.approx(0.77), pytest.approx(0.83)],
        "trusted": True,
        "trust_evidence": "labels_agree",
        "trust_reason": "labels agree",
        "reference": None,
    }


def test_a_band_that_straddles_the_bound_is_unknown() -> None:
    found = figures([estimate("fleet", "", 0.84, 0.03, True)])
    assert judged(accuracy_below(0.85), found) == {"fleet": (UNKNOWN, pytest.approx(0.84))}


def test_a_band_above_the_bound_is_clear_only_when_the_estimate_is_trusted() -> None:
    found = figures(
        [
            estimate("site", "a", 0.93, 0.03, True),
            estimate("site", "b", 0.93, 0.03, False),
            estimate("site", "c", 0.93, 0.03, None),
        ]
    )
    states = {s: v[0] for s, v in judged(accuracy_below(0.85, scope="site"), found).items()}
    # An untrusted estimate never reassures: above the bound it is unknown, not clear.
    assert states == {"site:a": CLEAR, "site:b": UNKNOWN, "site:c": UNKNOWN}


def test_an_untrusted_estimate_below_the_bound_still_breaches() -> None:
    found = figures([estimate("site", "a", 0.80, 0.03, False)])
    out = evaluate(found, [accuracy_below(0.85, scope="site")])
    assert out["state"].tolist() == [BREACH]
    [details] = out["details"].tolist()
    assert details["trusted"] is False and details["trust_evidence"] == "calibration"
    assert details["trust_reason"] == BROKE


def test_a_realised_figure_takes_precedence_over_the_estimate() -> None:
    found = figures(
        [
            estimate("site", "a", 0.70, 0.02, True),  # realised on labels: the estimate is unused
            estimate("site", "b", 0.70, 0.02, True),  # too few labels: the estimate decides
            estimate("site", "c", 0.70, 0.02, True),  # no realised row at all
        ],
        realised=[("site", "a", 2000, 0.95), ("site", "b", 5, None)],
    )
    out = evaluate(found, [accuracy_below(0.85, scope="site")])
    assert dict(zip(out["subject"], out["state"], strict=True)) == {
        "site:a": CLEAR,
        "site:b": BREACH,
        "site:c": BREACH,
    }
    assert out["value"].tolist() == pytest.approx([0.95, 0.70, 0.70])
    details = dict(zip(out["subject"], out["details"], strict=True))
    assert details["site:a"] is None  # clear: no details
    assert details["site:b"]["estimated"] is True and details["site:c"]["estimated"] is True


def test_a_realised_figure_on_too_few_labels_gives_way_to_the_estimate() -> None:
    # 10 labels give a figure the analysis would not report; the estimate is judged instead.
    found = figures(
        [estimate("fleet", "", 0.93, 0.02, True)],
        realised=[("fleet", "", 10, 0.10)],
        min_labels=30,
    )
    assert judged(accuracy_below(0.85), found) == {"fleet": (CLEAR, pytest.approx(0.93))}


def test_a_realised_figure_that_straddles_the_bound_stays_unknown_beside_an_estimate() -> None:
    # Labels gave a figure: their uncertainty is the verdict, the estimate does not override it.
    found = figures([estimate("fleet", "", 0.60, 0.02, True)], realised=[("fleet", "", 40, 0.7)])
    assert judged(accuracy_below(0.8), found) == {"fleet": (UNKNOWN, pytest.approx(0.7))}


def test_estimated_false_ignores_estimates() -> None:
    found = figures(
        [estimate("site", "a", 0.70, 0.02, True), estimate("site", "b", 0.70, 0.02, True)],
        realised=[("site", "a", 5, None)],
    )
    rule = accuracy_below(0.85, scope="site", params={"estimated": False})
    assert judged(rule, found) == {"site:a": (UNKNOWN, pytest.approx(np.nan, nan_ok=True))}


def test_a_performance_drop_judges_the_estimate_against_the_reference_figure() -> None:
    found = figures([estimate("fleet", "", 0.80, 0.03, False)], reference={"accuracy": 0.93})
    rule = Rule("drop", "performance_drop", "m", params={"metric": "accuracy", "drop": 0.05})
    out = evaluate(found, [rule])
    assert out["state"].tolist() == [BREACH]
    assert out["bound"].tolist() == [pytest.approx(0.88)]
    assert out["details"].tolist()[0]["reference"] == 0.93
    # Without a reference figure there is no bound: unknown, whatever the estimate.
    assert evaluate(figures([estimate("fleet", "", 0.5, 0.01, True)]), [rule])[
        "state"
    ].tolist() == [UNKNOWN]


def test_a_metric_the_window_did_not_estimate_is_not_judged_on_it() -> None:
    found = figures([estimate("fleet", "", 0.80, 0.03, True)], realised=[("fleet", "", 0, None)])
    rule = Rule("f1", "performance", "m", params={"metric": "f1", "below": 0.9})
    assert judged(rule, found) == {"fleet": (UNKNOWN, pytest.approx(np.nan, nan_ok=True))}


def test_the_band_judgement_element_wise() -> None:
    judged_ = judge_estimate(
        "accuracy",
        np.array([0.80, 0.84, 0.93, 0.93, 0.93, np.nan]),
        np.array([0.77, 0.81, 0.90, 0.90, 0.90, np.nan]),
        np.array([0.83, 0.87, 0.96, 0.96, 0.96, np.nan]),
        np.array([False, True, True, False, None, True], dtype=object),
        0.85,
    )
    assert judged_.states.tolist() == [BREACH, UNKNOWN, CLEAR, UNKNOWN, UNKNOWN, UNKNOWN]
    assert judged_.low[0] == pytest.approx(0.77) and judged_.high[0] == pytest.approx(0.83)


@pytest.mark.parametrize("value", ["yes", 1, 0.0, None])
def test_an_estimated_param_that_is_not_true_or_false_is_refused_by_its_field_path(
    value: Any,
) -> None:
    params = {"metric": "accuracy", "below": 0.85, "estimated": value}
    problems = check(Rule("acc", "performance", "m", params=params))
    if value is None:
        # Absent and null are the default (true), as every optional parameter.
        assert problems == []
        return
    assert problems == [("rule.params.estimated", "must be true or false")]
    _, found = rule_from(
        {"name": "acc", "model": "m", "kind": "performance_drop",
         "params": {"metric": "accuracy", "drop": 0.05, "estimated": value}},
        "rule[3]",
    )  # fmt: skip
    assert found == [("rule[3].params.estimated", "must be true or false")]


def test_estimated_is_a_parameter_of_performance_rules_only() -> None:
    rule = Rule("d", "scope_drift", "m", params={"estimated": True})
    assert check(rule) == [("rule.params.estimated", "is not a parameter of this kind")]
    for flag in (True, False):
        rule = Rule(
            "acc", "performance", "m", params={"metric": "f1", "below": 0.8, "estimated": flag}
        )
        assert check(rule) == []


def test_the_summary_says_estimated_with_the_band_and_why_it_is_not_trusted() -> None:
    details = {
        "metric": "accuracy",
        "estimated": True,
        "band": [0.77, 0.83],
        "trusted": False,
        "trust_reason": BROKE,
    }
    assert summary("acc", "performance", "site:a", ["site:a"], details, value=0.8, bound=0.85) == (
        f"site a: estimated accuracy 0.80 (0.77-0.83) below 0.85 — not trusted: {BROKE}"
    )
    # The trust verdict's sentence says "not trusted" itself: the summary says it once.
    said = {**details, "trust_reason": f"not trusted: {BROKE}"}
    assert summary("acc", "performance", "site:a", ["site:a"], said, value=0.8, bound=0.85) == (
        f"site a: estimated accuracy 0.80 (0.77-0.83) below 0.85 — not trusted: {BROKE}"
    )
    trusted = {**details, "trusted": True}
    many = summary(
        "acc", "performance", "site:a", ["node:a-0", "node:a-1"], trusted, value=0.8, bound=0.85
    )
    assert many == (
        "2 nodes at site a: estimated accuracy below 0.85; node a-0 at 0.80 (0.77-0.83) — trusted"
    )
    close = {**trusted, "band": [0.92, 0.993]}
    assert summary("acc", "performance", "fleet", ["fleet"], close, value=0.96, bound=0.995) == (
        "fleet: estimated accuracy 0.96 (0.92-0.99) below 0.995 — trusted"
    )
    realised = {"metric": "accuracy", "interval": [0.67, 0.73], "reference": 0.93}
    assert summary(
        "drop", "performance_drop", "fleet", ["fleet"], realised, value=0.7, bound=0.88
    ) == ("fleet: accuracy 0.70 (0.67-0.73) below 0.88 (reference 0.93)")
    assert summary(
        "rmse", "performance", "fleet", ["fleet"], {"metric": "rmse", "interval": [None, None]},
        value=2.5, bound=1.0,
    ) == "fleet: rmse 2.5 above 1"  # fmt: skip


def test_the_rules_file_and_the_command_line_take_estimated_as_true_or_false() -> None:
    from monitor.alerts.rulesfile import parse
    from monitor.cli.alerts import _param_values

    parsed = parse(
        """
        [[rule]]
        name = "acc"
        model = "m"
        kind = "performance"
        params = { metric = "accuracy", below = 0.85, estimated = false }
        """
    )
    assert [r.params for r in parsed.rules] == [
        {"metric": "accuracy", "below": 0.85, "estimated": False}
    ]
    flags = _param_values(["metric=accuracy", "below=0.85", "estimated=false"])
    assert flags == {"metric": "accuracy", "below": 0.85, "estimated": False}
    assert check(Rule("acc", "performance", "m", params=flags)) == []
