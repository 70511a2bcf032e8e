"""Out-of-scope detection: scores, a threshold from validation only, metrics in range."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convssl.evaluate.config import EvaluateConfig
from convssl.evaluate.oos import Mahalanobis, choose_threshold, oos_metrics
from convssl.evaluate.runner import evaluate
from convssl.evaluate.tasks import TaskError


def test_threshold_separates_when_scores_separate():
    scores = np.array([0.9, 0.8, 0.85, 0.95, 0.2, 0.1, 0.3])
    is_oos = np.array([False] * 4 + [True] * 3)
    correct = ~is_oos
    t = choose_threshold(scores, is_oos, correct)
    assert 0.3 < t < 0.8
    m = oos_metrics(scores, is_oos, correct, t)
    assert m["oos_recall"] == 1.0 and m["oos_precision"] == 1.0 and m["in_scope_accuracy"] == 1.0
    assert m["auroc"] == 1.0


def test_mahalanobis_scores_far_points_lower():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (50, 5)), rng.normal(5, 1, (50, 5))])
    y = np.repeat([0, 1], 50)
    maha = Mahalanobis(X, y, 2)
    near, far = maha.score(np.array([[0.0] * 5, [20.0] * 5]))
    assert near > far


def test_minilm_oos_metrics_in_range_and_better_than_chance(minilm_path, clinc_slice, tmp_path):
    config = EvaluateConfig(models=[str(minilm_path)], tasks=[f"oos:{clinc_slice}"], random_baseline=False)
    result = evaluate(config, tmp_path)
    rows = [r for r in result.rows if r.task_kind == "oos"]
    assert {r.mode for r in rows if r.kind == "model"} == {"oos-max_softmax", "oos-mahalanobis", "oos-centroid_cosine"}
    assert any(r.kind == "tfidf" for r in rows)
    for r in rows:
        for key in ("closed_set_accuracy", "in_scope_accuracy", "oos_recall", "oos_precision", "oos_f1", "auroc", "ece", "ece_with_oos"):
            assert 0.0 <= r.metrics[key] <= 1.0, (r.model, r.mode, key)
    for r in rows:
        if r.kind == "model":
            assert r.metrics["auroc"] > 0.8, r.mode
            assert r.metrics["calibrated_on"] == "validation"
    assert (tmp_path / "plots" / "oos_hist_oos_clinc150.png").stat().st_size > 1000


def test_oos_without_validation_oos_fails_clearly(clinc_slice, tiny_bert, tmp_path):
    data = json.loads(clinc_slice.read_text(encoding="utf-8"))
    del data["oos_val"]
    path = tmp_path / "no_oos_val.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    config = EvaluateConfig(models=[str(tiny_bert)], tasks=[f"oos:{path}"], random_baseline=False)
    with pytest.raises(TaskError, match="validation"):
        evaluate(config, tmp_path / "out")
