"""Save a trained intent classifier with what it was trained on: `training.json` and a model card."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from convssl.config import to_dict
from convssl.data.dialogue import IntentExample
from convssl.downstream.config import FinetuneConfig
from convssl.downstream.intent_classifier import IntentClassifier
from convssl.runs import write_json_atomic


def save_classifier(classifier: IntentClassifier, out_dir: str | Path, config: FinetuneConfig,
                    info: dict[str, Any], train: Sequence[IntentExample]) -> Path:
    """The folder, plus `training.json` (history, metrics) and a model card."""
    folder = classifier.save(out_dir)
    info = {**info, "config": to_dict(config), "labels": len(classifier.labels)}
    write_json_atomic(folder / "training.json", info)
    (folder / "README.md").write_text(model_card(classifier, info, train), encoding="utf-8")
    return folder


def model_card(classifier: IntentClassifier, info: dict[str, Any], train: Sequence[IntentExample]) -> str:
    counts = Counter(e.label for e in train)
    sources = sorted({e.source for e in train if e.source})
    val = info.get("val") or {}
    cal = info.get("calibration") or {}
    threshold = classifier.threshold
    lines = [
        "# convssl intent classifier",
        "",
        f"- method: {info['method']} (base model `{info['base_model']}`)",
        f"- labels: {len(classifier.labels)} in scope; out-of-scope label `{classifier.oos_label}`",
        f"- training data: {len(train)} examples from {', '.join(sources) or 'unnamed sources'}; "
        f"{min(counts.values())}-{max(counts.values())} per label",
        f"- validation examples: {info.get('val_examples', 0)}",
        f"- out-of-scope rule: score `{classifier.meta.score}` below "
        + (f"{threshold:.6g}" if threshold is not None else "(no threshold: nothing is rejected)")
        + (f" (chosen on validation data by `{cal.get('method')}`)" if cal else ""),
        f"- training time: {info.get('seconds')} s",
        "",
        "## Validation metrics",
        "",
        "```json",
        json.dumps(val, indent=2),
        "```",
        "",
        "Load with `convssl.downstream.intent_classifier.IntentClassifier.load(path)`.",
        "",
    ]
    return "\n".join(lines)
