"""The out-of-scope threshold, chosen on validation scores by each criterion."""

from __future__ import annotations

import numpy as np
import pytest

from convssl.downstream.calibration import calibrate_threshold

# In-scope scores (all right but the 0.35 one) and out-of-scope scores that overlap them.
IN = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35])
RIGHT = IN != 0.35
OOS = np.array([0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.42, 0.48, 0.55, 0.65])


def test_oos_recall_criterion_keeps_the_most_in_scope_that_still_rejects_the_share_asked_for():
    for target in (0.7, 0.8, 0.9, 1.0):
        cal = calibrate_threshold(IN, RIGHT, OOS, "oos_recall", oos_recall_target=target)
        assert cal.method == "oos_recall" and cal.oos_recall >= target
        # no lower threshold reaches the recall: every score between would reject one OOS text fewer
        lower = [t for t in np.unique(np.r_[IN, OOS]) if t < cal.threshold]
        assert all((OOS < t).mean() < target for t in lower)
    assert calibrate_threshold(IN, RIGHT, OOS, "oos_recall", oos_recall_target=0.7).in_scope_accuracy == 0.8
    assert calibrate_threshold(IN, RIGHT, OOS, "oos_recall", oos_recall_target=1.0).in_scope_accuracy == 0.5


def test_an_oos_recall_no_threshold_between_scores_reaches_rejects_everything():
    cal = calibrate_threshold(np.array([0.1, 0.2]), np.array([True, True]), np.array([0.9, 0.95]), "oos_recall",
                              oos_recall_target=1.0)
    assert cal.oos_recall == 1.0 and cal.in_scope_accept_rate == 0.0


def test_balanced_and_keep_fraction_rules():
    balanced = calibrate_threshold(IN, RIGHT, OOS, "balanced")
    def objective(t: float) -> float:
        return 0.5 * (((IN >= t) & RIGHT).mean() + (OOS < t).mean())

    assert balanced.method == "balanced"
    assert objective(balanced.threshold) == max(objective(t) for t in np.r_[IN, OOS])
    kept = calibrate_threshold(IN, RIGHT, None, keep_fraction=0.8)
    assert kept.method == "keep_0.8_of_in_scope" and kept.in_scope_accept_rate == pytest.approx(0.9)
    with pytest.raises(ValueError, match="unknown calibration criterion 'best'"):
        calibrate_threshold(IN, RIGHT, OOS, "best")  # type: ignore[arg-type]
