"""How a classifier does on labelled examples, and its out-of-scope threshold chosen from them.

Used after training by both methods (validation metrics, calibration) and by `convssl finetune`
for the test split; the threshold itself is chosen by `calibration.calibrate_threshold`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from convssl.data.dialogue import IntentExample
from convssl.downstream.calibration import Calibration, calibrate_threshold
from convssl.downstream.config import FinetuneConfig
from convssl.downstream.data import split_in_scope
from convssl.downstream.intent_classifier import IntentClassifier


def closed_set_accuracy(classifier: IntentClassifier, examples: Sequence[IntentExample]) -> float:
    """Share of `examples` whose top intent is their label, no threshold applied."""
    logits = classifier.logits([e.text for e in examples])
    labels = np.array(classifier.labels, dtype=object)
    return float((labels[logits.argmax(axis=1)] == np.array([e.label for e in examples], dtype=object)).mean())


def evaluate_intents(classifier: IntentClassifier, examples: Sequence[IntentExample],
                     batch_size: int = 64) -> dict[str, Any]:
    """Accuracy on in-scope examples (with and without the threshold) and OOS recall/precision."""
    if not examples:
        return {"n": 0}
    texts = [e.text for e in examples]
    logits, scores = classifier.logits_and_scores(texts, batch_size=batch_size)
    preds = classifier.decide(logits, scores, top_k=1)
    oos = classifier.oos_label
    gold = np.array([e.label for e in examples], dtype=object)
    labels = np.array(classifier.labels, dtype=object)
    closed = labels[logits.argmax(axis=1)]
    final = np.array([p.intent for p in preds], dtype=object)
    is_oos = gold == oos
    out: dict[str, Any] = {"n": len(examples), "n_in_scope": int((~is_oos).sum()), "n_oos": int(is_oos.sum())}
    if (~is_oos).any():
        out["accuracy"] = float((closed[~is_oos] == gold[~is_oos]).mean())
        out["in_scope_accuracy"] = float((final[~is_oos] == gold[~is_oos]).mean())
        out["in_scope_accept_rate"] = float((final[~is_oos] != oos).mean())
    if is_oos.any():
        out["oos_recall"] = float((final[is_oos] == oos).mean())
        flagged = final == oos
        out["oos_precision"] = float((is_oos & flagged).sum() / flagged.sum()) if flagged.any() else 0.0
        out["joint_accuracy"] = float((final == gold).mean())
    return out


def calibrate(classifier: IntentClassifier, val: Sequence[IntentExample], config: FinetuneConfig) -> Calibration | None:
    """Set the classifier's OOS threshold from validation data; None when there is none."""
    in_scope, oos = split_in_scope(val, config.oos_label)
    in_scope = [e for e in in_scope if e.label in set(classifier.labels)]
    if not in_scope:
        classifier.threshold = None
        return None
    logits, scores = classifier.logits_and_scores([e.text for e in in_scope])
    labels = np.array(classifier.labels, dtype=object)
    correct = labels[logits.argmax(axis=1)] == np.array([e.label for e in in_scope], dtype=object)
    oos_scores = classifier.logits_and_scores([e.text for e in oos])[1] if oos else None
    result = calibrate_threshold(scores, correct, oos_scores, config.calibration, config.keep_fraction,
                                 config.oos_recall_target)
    classifier.threshold = result.threshold
    return result
