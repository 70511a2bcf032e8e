"""What every training method starts from and ends with, so that full fine-tuning and SetFit
(and any new method) differ only in how they fit the classifier.

Start: seeded, threads set, the model reference resolved, splits made, labels fixed.
Finish: the out-of-scope threshold calibrated on validation data, validation scored, the
classifier saved with `training.json` and a model card.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convssl.data.dialogue import IntentExample
from convssl.downstream.config import FinetuneConfig
from convssl.downstream.data import intent_labels, prepare_splits
from convssl.downstream.evaluation import calibrate, evaluate_intents
from convssl.downstream.intent_classifier import IntentClassifier, IntentMeta
from convssl.downstream.saving import save_classifier
from convssl.models.reference import resolve_model_path
from convssl.utils.compute import seed_everything, set_threads

MAX_HELD_OUTLIERS = 1000


def hold_out_outliers(texts: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(kept for training, held out) with `fraction` of the texts, at most 1,000, held out.

    Data without out-of-scope validation examples otherwise thresholds by keeping 95% of in-scope
    validation; the held-out logs let the threshold be chosen against real off-domain text."""
    order = np.random.default_rng(seed).permutation(len(texts))
    n_held = min(MAX_HELD_OUTLIERS, int(round(fraction * len(texts)))) if len(texts) > 1 else 0
    return [texts[i] for i in order[n_held:]], [texts[i] for i in order[:n_held]]


@dataclass
class TrainingRun:
    config: FinetuneConfig
    folder: Path
    train: list[IntentExample]
    val: list[IntentExample]
    labels: list[str]
    started: float = field(default_factory=time.time)
    outliers: list[str] = field(default_factory=list)
    """Out-of-scope texts for outlier exposure: the set's out-of-scope train examples and any logs."""

    @classmethod
    def start(cls, model_path: str | Path, train: Sequence[IntentExample], val: Sequence[IntentExample] | None,
              config: FinetuneConfig, outliers: Sequence[str] = ()) -> TrainingRun:
        """`outliers`: unlabeled out-of-domain texts for outlier exposure (`outlier_weight > 0`)."""
        started = time.time()
        seed_everything(config.seed)
        set_threads(config.threads)
        folder = resolve_model_path(model_path)
        in_train, val_list, oos_train = prepare_splits(train, val, config)
        logs = list(outliers) if config.outlier_weight > 0 else []
        if logs and not any(e.label == config.oos_label for e in val_list):
            logs, held = hold_out_outliers(logs, config.val_fraction, config.seed)
            val_list += [IntentExample(text, config.oos_label, split="validation", source="outliers") for text in held]
        exposure = [e.text for e in oos_train] + logs if config.outlier_weight > 0 else []
        return cls(config, folder, in_train, val_list, intent_labels(in_train, config.oos_label), started, exposure)

    @property
    def label_index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    def meta(self, kind: str) -> IntentMeta:
        c = self.config
        return IntentMeta(kind=kind, oos_label=c.oos_label, score=c.oos_score, max_length=c.max_length,
                          pooling=c.pooling, labels=self.labels)

    def finish(self, classifier: IntentClassifier, out_dir: str | Path, info: dict[str, Any]) -> IntentClassifier:
        """Calibrate, score validation, save; `info` is the method's own part of training.json."""
        calibration = calibrate(classifier, self.val, self.config)
        info = {**info, "base_model": str(self.folder), "train_examples": len(self.train),
                "val_examples": len(self.val), "val": evaluate_intents(classifier, self.val) if self.val else {},
                "calibration": calibration.to_dict() if calibration else None,
                "seconds": round(time.time() - self.started, 1)}
        save_classifier(classifier, out_dir, self.config, info, self.train)
        return classifier
