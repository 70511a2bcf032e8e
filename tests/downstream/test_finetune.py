"""Full fine-tuning: the LP-FT pooled head starts from the frozen probe and ships as one folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convssl.downstream.config import FinetuneConfig
from convssl.downstream.evaluation import closed_set_accuracy
from convssl.downstream.finetune import finetune_intent
from convssl.downstream.intent_classifier import IntentClassifier
from convssl.downstream.training import fit_head
from convssl.evaluate.tasks import load_intent_data, parse_task
from convssl.models.encoder import Encoder
from tests.evaluate.slices import banking_slice, tiny_bert  # noqa: F401  (session fixtures)

FAST = dict(bf16=False, threads=1, batch_size=16, warmup_ratio=0.0, val_fraction=0.0, max_length=32)


@pytest.fixture(scope="module")
def banking(banking_slice):  # noqa: F811
    data = load_intent_data(parse_task(f"intent:{banking_slice}"))
    return data.train, data.test


def accuracy(classifier: IntentClassifier, examples) -> float:
    return float(np.mean([p.intent == e.label for p, e in zip(classifier.predict([e.text for e in examples]), examples)]))


def test_pooled_head_starts_as_the_frozen_probe(tiny_bert, banking, tmp_path):  # noqa: F811
    """With nothing learned (lr 0), the fine-tuned classifier is the logistic-regression probe."""
    train, test = banking
    config = FinetuneConfig(epochs=1, lr=0.0, head_lr=0.0, **FAST)
    classifier = finetune_intent(tiny_bert, train, None, config, tmp_path / "clf")
    encoder = Encoder.load(tiny_bert, pooling="mean", max_length=32)
    labels = sorted({e.label for e in train})
    y = np.array([labels.index(e.label) for e in train])
    weight, bias = fit_head(encoder.embed([e.text for e in train], normalize=True), y, len(labels), 10.0, 0)
    probe_logits = encoder.embed([e.text for e in test], normalize=True) @ weight.numpy().T + bias.numpy()
    logits, _ = classifier.logits_and_scores([e.text for e in test])
    assert classifier.meta.kind == "pooled"
    assert np.array_equal(logits.argmax(1), probe_logits.argmax(1))
    assert np.allclose(logits, probe_logits, atol=1e-3)


def test_pooled_fine_tuning_learns_and_reloads(tiny_bert, banking, tmp_path):  # noqa: F811
    train, test = banking
    config = FinetuneConfig(epochs=8, lr=2e-3, **FAST)
    classifier = finetune_intent(tiny_bert, train, None, config, tmp_path / "clf")
    trained_train_acc = accuracy(classifier, train)
    start = finetune_intent(tiny_bert, train, None, FinetuneConfig(epochs=1, lr=0.0, head_lr=0.0, **FAST),
                            tmp_path / "start")
    assert trained_train_acc > accuracy(start, train)  # the encoder was tuned, not just the probe kept
    reloaded = IntentClassifier.load(tmp_path / "clf")
    assert reloaded.meta.kind == "pooled" and reloaded.labels == classifier.labels
    texts = [e.text for e in test]
    assert np.allclose(reloaded.logits_and_scores(texts)[0], classifier.logits_and_scores(texts)[0], atol=1e-4)
    assert accuracy(reloaded, test) > 1.5 / len(classifier.labels)  # well above chance on held-out text


def test_sequence_classification_head_is_still_available(tiny_bert, banking, tmp_path):  # noqa: F811
    train, test = banking
    config = FinetuneConfig(head="sequence_classification", epochs=2, lr=2e-3, **FAST)
    finetune_intent(tiny_bert, train, None, config, tmp_path / "clf")
    reloaded = IntentClassifier.load(tmp_path / "clf")
    assert reloaded.meta.kind == "sequence_classification"
    assert {p.intent for p in reloaded.predict([e.text for e in test])} <= set(reloaded.labels)


def test_mahalanobis_score_with_a_validation_split_trains_and_reloads(tiny_bert, banking, tmp_path):  # noqa: F811
    """Early stopping reads validation accuracy every epoch, before the Mahalanobis statistics exist:
    this used to stop a `full` run with oos_score=mahalanobis at the end of its first epoch."""
    train, test = banking
    val = train[::5]
    config = FinetuneConfig(epochs=2, lr=2e-3, oos_score="mahalanobis", **FAST)
    classifier = finetune_intent(tiny_bert, [e for e in train if e not in val], val, config, tmp_path / "clf")
    reloaded = IntentClassifier.load(tmp_path / "clf")
    assert reloaded.meta.score == "mahalanobis" and reloaded.oos_stats is not None
    assert reloaded.threshold is not None and reloaded.threshold < 0  # minus a distance
    texts = [e.text for e in test]
    assert np.allclose(reloaded.logits_and_scores(texts)[1], classifier.logits_and_scores(texts)[1], atol=1e-3)


def test_full_fine_tuning_keeps_an_example_memory_only_when_validation_prefers_it(tiny_bert, banking, tmp_path):  # noqa: F811
    train, _ = banking
    val = train[::4]
    rest = [e for e in train if e not in val]
    config = FinetuneConfig(epochs=2, lr=2e-3, memory_weights=[0.3, 1.0], **FAST)
    classifier = finetune_intent(tiny_bert, rest, val, config, tmp_path / "clf")
    info = json.loads((tmp_path / "clf" / "training.json").read_text(encoding="utf-8"))["memory"]
    scores = info["validation_accuracy"]
    assert set(scores) == {"0.0", "0.3", "1.0"}
    kept, memory = info["kept"], classifier.memory
    classifier.memory = None
    assert scores["0.0"] == pytest.approx(closed_set_accuracy(classifier, val), abs=1e-4)
    classifier.memory = memory
    # the saved classifier is the best-scoring choice, the head alone on a tie
    assert closed_set_accuracy(classifier, val) == pytest.approx(max(scores.values()), abs=1e-4)
    assert kept == (max(scores["0.3"], scores["1.0"]) > scores["0.0"])
    reloaded = IntentClassifier.load(tmp_path / "clf")
    assert (reloaded.memory is not None) == kept
    if kept:
        assert len(reloaded.memory.embeddings) == len(rest)
        assert reloaded.memory.weight == info["weight"]
    off = finetune_intent(tiny_bert, rest, val, FinetuneConfig(epochs=1, lr=2e-3, memory_weights=[], **FAST),
                          tmp_path / "off")
    assert off.memory is None and IntentClassifier.load(tmp_path / "off").memory is None
