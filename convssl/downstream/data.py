"""Labelled examples into training input: label ids, splits, k-shot samples and padded batches.

Shared by full fine-tuning (`finetune.py`) and SetFit (`setfit.py`), so that both see the same
splits and the same tokenisation of the same examples.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from convssl.data.dialogue import IntentExample
from convssl.downstream.config import FinetuneConfig


def intent_labels(examples: Sequence[IntentExample], oos_label: str) -> list[str]:
    """In-scope labels, sorted so that the label ids do not depend on data order."""
    return sorted({e.label for e in examples if e.label != oos_label})


def split_in_scope(examples: Sequence[IntentExample], oos_label: str) -> tuple[list, list]:
    return [e for e in examples if e.label != oos_label], [e for e in examples if e.label == oos_label]


def _by_label(examples: Sequence[IntentExample]) -> dict[str, list[IntentExample]]:
    by_label: dict[str, list[IntentExample]] = {}
    for example in examples:
        by_label.setdefault(example.label, []).append(example)
    return by_label


def stratified_split(examples: Sequence[IntentExample], fraction: float, seed: int) -> tuple[list, list]:
    """Carve a validation set: `fraction` of each label (at least one where a label has two or more)."""
    rng = random.Random(seed)
    by_label = _by_label(examples)
    train, val = [], []
    for label in sorted(by_label):
        items = list(by_label[label])
        rng.shuffle(items)
        n_val = int(round(len(items) * fraction))
        if fraction > 0 and n_val == 0 and len(items) >= 2:
            n_val = 1
        val.extend(items[:n_val])
        train.extend(items[n_val:])
    return train, val


def sample_k_shot(examples: Sequence[IntentExample], k: int, seed: int) -> list[IntentExample]:
    """K examples per label, seeded (the few-shot protocol of Casanueva et al. 2020 / CPFT)."""
    rng = random.Random(seed)
    by_label = _by_label(examples)
    out = []
    for label in sorted(by_label):
        items = by_label[label]
        out.extend(rng.sample(items, min(k, len(items))))
    return out


def prepare_splits(train: Sequence[IntentExample], val: Sequence[IntentExample] | None,
                   config: FinetuneConfig) -> tuple[list[IntentExample], list[IntentExample], list[IntentExample]]:
    """(in-scope train, validation, OOS train dropped) with validation carved when not given.

    Out-of-scope training examples are not a class: the head learns the in-scope intents and
    the threshold, chosen on validation data, decides what is out of scope (Larson et al. 2019's
    "threshold" baseline)."""
    if not train:
        raise ValueError("no training examples")
    in_train, oos_train = split_in_scope(train, config.oos_label)
    if not in_train:
        raise ValueError(f"all training examples carry the out-of-scope label {config.oos_label!r}")
    val_list = list(val or [])
    if not val_list and config.val_fraction > 0:
        in_train, val_list = stratified_split(in_train, config.val_fraction, config.seed)
        oos_train, oos_val = stratified_split(oos_train, config.val_fraction, config.seed)
        val_list += oos_val
    return in_train, val_list, oos_train


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator,
                            bucket: int = 50) -> list[np.ndarray]:
    """Shuffle, sort within chunks of `bucket` batches by length, then shuffle the batches."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * bucket
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort([lengths[i] for i in part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def pad_batch(ids: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return input_ids, mask


def pad_id_of(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def tokenize_all(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Tokenise once with the Rust batch API; batches are padded later, per bucket."""
    if not texts:
        return []
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
