"""Policy thresholds chosen on validation data (convssl/serve/policy_calibration.py)."""

from __future__ import annotations

import numpy as np

from convssl.serve.policy_calibration import false_alarm_threshold, rephrase_threshold


def test_rephrase_threshold_is_reached_by_few_pairs_of_different_intents():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 32))
    labels = np.repeat(np.arange(6), 20)
    emb = centres[labels] + 0.6 * rng.normal(size=(len(labels), 32))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    threshold = rephrase_threshold(emb, labels, rate=0.05)
    sims = emb @ emb.T
    upper = np.triu_indices(len(labels), 1)
    same = (labels[:, None] == labels[None, :])[upper]
    assert (sims[upper][~same] >= threshold).mean() <= 0.05
    assert (sims[upper][same] >= threshold).mean() > 0.5  # most rephrases of one intent still count as asking again


def test_false_alarm_threshold_never_goes_below_its_floor():
    assert false_alarm_threshold(np.array([0.1, 0.2, 0.3]), rate=0.0, floor=0.5) == 0.5
    assert false_alarm_threshold(np.array([]), floor=0.5) == 0.5
    assert 0.9 < false_alarm_threshold(np.linspace(0, 1, 1001), rate=0.05, floor=0.0) < 0.96
