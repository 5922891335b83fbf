"""A performance figure breaches only when its whole interval lies beyond the bound."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.alerts.uncertainty import BREACH, CLEAR, UNKNOWN, judge, wilson


def test_the_wilson_interval_matches_the_textbook_figures() -> None:
    # 0.7 on 40 trials at 95%, by hand: centre (0.7 + z²/80) / (1 + z²/40) = 0.6825, half
    # z * sqrt(0.21/40 + z²/6400) / (1 + z²/40) = 0.1368.
    low, high = wilson(np.array([0.7]), np.array([40]), 0.95)
    assert low[0] == pytest.approx(0.5457, abs=1e-4)
    assert high[0] == pytest.approx(0.8193, abs=1e-4)


def test_a_window_with_40_labels_does_not_page_anyone() -> None:
    judged = judge("accuracy", np.array([0.7]), np.array([40]), 0.8, confidence=0.95, min_labels=30)
    assert judged.states.tolist() == [UNKNOWN]


def test_a_clear_drop_on_many_labels_breaches_and_a_clear_margin_is_clear() -> None:
    judged = judge(
        "f1",
        np.array([0.7, 0.95, 0.79, np.nan]),
        np.array([2000, 2000, 2000, 2000]),
        0.8,
        confidence=0.95,
        min_labels=30,
    )
    assert judged.states.tolist() == [BREACH, CLEAR, UNKNOWN, UNKNOWN]


def test_errors_have_no_interval_and_need_the_minimum_of_labels() -> None:
    judged = judge(
        "rmse",
        np.array([2.0, 2.0, 0.5]),
        np.array([10, 50, 50]),
        1.0,
        confidence=0.95,
        min_labels=30,
    )
    assert judged.states.tolist() == [UNKNOWN, BREACH, CLEAR]


def test_a_higher_confidence_needs_more_evidence() -> None:
    args = (np.array([0.72]), np.array([300]), 0.8)
    assert judge("accuracy", *args, confidence=0.9, min_labels=30).states[0] == BREACH
    assert judge("accuracy", *args, confidence=0.999, min_labels=30).states[0] == BREACH
    assert (
        judge(
            "accuracy", np.array([0.76]), np.array([300]), 0.8, confidence=0.999, min_labels=30
        ).states[0]
        == UNKNOWN
    )
