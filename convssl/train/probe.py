"""A quick linear probe: how well do frozen mean-pooled embeddings separate labelled intents?

Pretext loss keeps falling long after the representation stops improving for downstream use, so
early stopping and the "best" checkpoint follow this probe when one is configured.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from convssl.utils.compute import autocast

LOG = logging.getLogger("convssl.train")


@dataclass
class ProbeSet:
    train_texts: list[str]
    train_labels: list[str]
    test_texts: list[str]
    test_labels: list[str]


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        raise FileNotFoundError(f"probe.path: {path} does not exist")
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON: {exc.msg}") from exc
        return rows
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def load_probe_set(path: str | Path, max_examples: int, test_fraction: float, seed: int) -> ProbeSet:
    """Read `text,label` rows (JSONL or CSV); use their `split` field if present, else a seeded split."""
    path = Path(path)
    rows = _read_rows(path)
    for number, row in enumerate(rows, 1):
        if not row.get("text") or row.get("label") in (None, ""):
            raise ValueError(f"{path}: row {number} needs non-empty 'text' and 'label' fields, got {sorted(row)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows))[:max_examples]
    rows = [rows[i] for i in order]
    if any(r.get("split") in ("test", "validation") for r in rows) and any(r.get("split") == "train" for r in rows):
        train = [r for r in rows if r.get("split") == "train"]
        test = [r for r in rows if r.get("split") in ("test", "validation")]
    else:
        cut = max(1, int(round(len(rows) * (1 - test_fraction))))
        train, test = rows[:cut], rows[cut:]
    if len({r["label"] for r in train}) < 2 or not test:
        raise ValueError(f"{path}: the probe needs at least two labels in training rows and some test rows")
    return ProbeSet(
        [str(r["text"]) for r in train],
        [str(r["label"]) for r in train],
        [str(r["text"]) for r in test],
        [str(r["label"]) for r in test],
    )


@torch.no_grad()
def embed_texts(
    backbone: torch.nn.Module,
    tokenizer,
    texts: list[str],
    device: torch.device,
    max_length: int,
    batch_size: int = 64,
    bf16: bool = False,
) -> np.ndarray:
    """Mean-pooled last hidden states, in length-sorted batches."""
    from convssl.models.encoder import pool

    order = np.argsort([len(t) for t in texts], kind="stable")
    out: np.ndarray | None = None
    for start in range(0, len(texts), batch_size):
        idx = order[start : start + batch_size]
        enc = tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        ids = enc["input_ids"].to(device)
        mask = enc["attention_mask"].to(device)
        with autocast(bf16, device.type):
            hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        vectors = pool(hidden.float(), mask).cpu().numpy()
        if out is None:
            out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        out[idx] = vectors
    assert out is not None
    return out


def probe_accuracy(
    backbone: torch.nn.Module, tokenizer, probe: ProbeSet, device: torch.device, max_length: int, bf16: bool
) -> float:
    """Test accuracy of a logistic regression trained on frozen embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    was_training = backbone.training
    backbone.eval()
    try:
        x_train = embed_texts(backbone, tokenizer, probe.train_texts, device, max_length, bf16=bf16)
        x_test = embed_texts(backbone, tokenizer, probe.test_texts, device, max_length, bf16=bf16)
    finally:
        backbone.train(was_training)
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(max_iter=300)
    clf.fit(scaler.transform(x_train), probe.train_labels)
    return float((clf.predict(scaler.transform(x_test)) == np.asarray(probe.test_labels)).mean())


def warn_if_probe_at_chance(accuracy: float, test_labels: list[str], step: int | None) -> str | None:
    """Log (and return) a warning when the probe is no better than guessing the commonest label."""
    from convssl.utils.chance import chance_accuracy, chance_warning

    warning = chance_warning("probe accuracy", accuracy, chance_accuracy(test_labels), len(test_labels),
                             "the encoder is still at its starting point: keep training")
    if warning:
        LOG.warning("step %s: %s", step if step is not None else "final", warning)
    return warning
