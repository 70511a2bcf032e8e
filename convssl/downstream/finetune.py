"""Fine-tune an encoder into an intent classifier with a calibrated out-of-scope threshold.

A plain torch loop rather than `transformers.Trainer`: on a small CPU the wins come from
length-bucketed batches (little padding), bf16 autocast and pre-tokenising once, and the loop
is short enough to read. The threshold is chosen on validation data only (`calibration.py`).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convssl.config import to_dict
from convssl.data.dialogue import IntentExample
from convssl.downstream.calibration import Calibration, calibrate_threshold
from convssl.downstream.config import FinetuneConfig
from convssl.downstream.intent_classifier import (
    IntentClassifier,
    IntentMeta,
    fit_mahalanobis,
)
from convssl.models.encoder import Encoder, pool, resolve_model_path
from convssl.train.precision import warn_if_bf16_slow

LOG = logging.getLogger("convssl.finetune")


# --------------------------------------------------------------------------- data
def intent_labels(examples: Sequence[IntentExample], oos_label: str) -> list[str]:
    """In-scope labels, sorted so that the label ids do not depend on data order."""
    return sorted({e.label for e in examples if e.label != oos_label})


def split_in_scope(examples: Sequence[IntentExample], oos_label: str) -> tuple[list, list]:
    return [e for e in examples if e.label != oos_label], [e for e in examples if e.label == oos_label]


def stratified_split(examples: Sequence[IntentExample], fraction: float, seed: int) -> tuple[list, list]:
    """Carve a validation set: `fraction` of each label (at least one where a label has two or more)."""
    rng = random.Random(seed)
    by_label: dict[str, list[IntentExample]] = {}
    for example in examples:
        by_label.setdefault(example.label, []).append(example)
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
    by_label: dict[str, list[IntentExample]] = {}
    for example in examples:
        by_label.setdefault(example.label, []).append(example)
    out = []
    for label in sorted(by_label):
        items = by_label[label]
        out.extend(rng.sample(items, min(k, len(items))))
    return out


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


def tokenize_all(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Tokenise once with the Rust batch API; batches are padded later, per bucket."""
    if not texts:
        return []
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


# --------------------------------------------------------------------------- training pieces
def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)


def autocast(enabled: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else nullcontext()


def linear_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def param_groups(model: torch.nn.Module, lr: float, head_lr: float, weight_decay: float) -> list[dict]:
    """No decay on biases and norms; the freshly initialised head learns faster than the body."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_head = name.startswith(("classifier", "score", "head"))
        no_decay = param.ndim < 2 or "norm" in name.lower() or name.endswith("bias")
        groups.setdefault((is_head, no_decay), []).append(param)
    return [
        {"params": params, "lr": head_lr if is_head else lr, "weight_decay": 0.0 if no_decay else weight_decay}
        for (is_head, no_decay), params in groups.items()
    ]


def class_weight_tensor(label_ids: np.ndarray, num_labels: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1, so rare intents are not drowned out."""
    counts = np.bincount(label_ids, minlength=num_labels).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (num_labels * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights / weights[counts > 0].mean(), dtype=torch.float32)


def progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, leave=False)


# --------------------------------------------------------------------------- evaluation
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
    result = calibrate_threshold(scores, correct, oos_scores, config.calibration, config.keep_fraction)
    classifier.threshold = result.threshold
    return result


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


# --------------------------------------------------------------------------- full fine-tuning
def finetune_intent(
    model_path: str | Path,
    train: Sequence[IntentExample],
    val: Sequence[IntentExample] | None,
    config: FinetuneConfig,
    out_dir: str | Path,
) -> IntentClassifier:
    """Fine-tune `model_path` (an HF folder or a convssl run) and save a classifier to `out_dir`."""
    if config.method == "setfit":
        from convssl.downstream.setfit import train_setfit

        return train_setfit(model_path, train, val, config, out_dir)
    started = time.time()
    set_seed(config.seed)
    set_threads(config.threads)
    folder = resolve_model_path(model_path)
    in_train, val_list, _ = prepare_splits(train, val, config)
    labels = intent_labels(in_train, config.oos_label)
    if config.head == "pooled":
        classifier, history = _pooled_classifier(folder, in_train, val_list, labels, config)
    else:
        classifier, history = _sequence_classifier(folder, in_train, val_list, labels, config)
    if config.oos_score == "mahalanobis":
        classifier.oos_stats = _mahalanobis_stats(classifier, in_train, {label: i for i, label in enumerate(labels)})
    calibration = calibrate(classifier, val_list, config)
    val_metrics = evaluate_intents(classifier, val_list) if val_list else {}
    info = {"method": "full", "head": config.head, "base_model": str(folder), "train_examples": len(in_train),
            "val_examples": len(val_list), "history": history, "val": val_metrics,
            "calibration": calibration.to_dict() if calibration else None,
            "seconds": round(time.time() - started, 1)}
    save_classifier(classifier, out_dir, config, info, in_train)
    return classifier


def _meta(kind: str, labels: list[str], config: FinetuneConfig) -> IntentMeta:
    return IntentMeta(kind=kind, oos_label=config.oos_label, score=config.oos_score,
                      max_length=config.max_length, pooling=config.pooling, labels=labels)


def _sequence_classifier(folder: Path, train: Sequence[IntentExample], val: Sequence[IntentExample],
                         labels: list[str], config: FinetuneConfig) -> tuple[IntentClassifier, list[dict]]:
    """The Hugging Face recipe: `AutoModelForSequenceClassification` (pooler + random head)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    label_index = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(folder), local_files_only=True, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id=label_index,
    )
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    meta = _meta("sequence_classification", labels, config)

    def logits(input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return model(input_ids=input_ids, attention_mask=mask).logits

    history = _train_loop(model, tokenizer, train, val, labels, config, logits,
                          lambda: IntentClassifier(model, tokenizer, copy.deepcopy(meta)))
    return IntentClassifier(model, tokenizer, meta), history


class PooledClassifier(torch.nn.Module):
    """Linear head on the L2-normalised pooled embedding: the shape a probe and SetFit share."""

    def __init__(self, encoder: torch.nn.Module, weight: torch.Tensor, bias: torch.Tensor, pooling: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(weight)
            self.head.bias.copy_(bias)
        self.pooling = pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        emb = torch.nn.functional.normalize(pool(hidden.float(), attention_mask, self.pooling), dim=-1)
        return self.head(emb)

    def head_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head.weight.detach().clone(), self.head.bias.detach().clone()


def _pooled_classifier(folder: Path, train: Sequence[IntentExample], val: Sequence[IntentExample],
                       labels: list[str], config: FinetuneConfig) -> tuple[IntentClassifier, list[dict]]:
    """LP-FT: a probe of the frozen encoder starts the head, then the whole network is tuned."""
    from convssl.downstream.setfit import fit_head

    label_index = {label: i for i, label in enumerate(labels)}
    encoder = Encoder.load(folder, pooling=config.pooling, max_length=config.max_length)
    texts = [e.text for e in train]
    label_ids = np.array([label_index[e.label] for e in train])
    weight, bias = fit_head(encoder.embed(texts, normalize=True), label_ids, len(labels), config.probe_c, config.seed)
    net = PooledClassifier(encoder.model, weight, bias, config.pooling)
    meta = _meta("pooled", labels, config)

    def current() -> IntentClassifier:
        return IntentClassifier(net.encoder, encoder.tokenizer, copy.deepcopy(meta), head=net.head_tensors())

    history = _train_loop(net, encoder.tokenizer, train, val, labels, config, net, current)
    return current(), history


def _mahalanobis_stats(classifier: IntentClassifier, train: Sequence[IntentExample],
                       label_index: dict[str, int]) -> dict[str, torch.Tensor]:
    features = []
    with torch.inference_mode():
        for start in range(0, len(train), 64):
            chunk = [e.text for e in train[start : start + 64]]
            features.append(classifier._forward(chunk, want_features=True)[1].numpy())
    ids = np.array([label_index[e.label] for e in train])
    return fit_mahalanobis(np.concatenate(features), ids, len(label_index))


def _train_loop(model: torch.nn.Module, tokenizer: Any, train: Sequence[IntentExample],
                val: Sequence[IntentExample], labels: list[str], config: FinetuneConfig,
                logits_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                classifier_fn: Callable[[], IntentClassifier]) -> list[dict[str, Any]]:
    """AdamW, linear warm-up/decay, bf16 autocast, early stopping on validation accuracy; the
    best epoch's weights are restored at the end."""
    warn_if_bf16_slow(config.bf16, next(model.parameters()).device)
    label_index = {label: i for i, label in enumerate(labels)}
    ids = tokenize_all(tokenizer, [e.text for e in train], config.max_length)
    targets = np.array([label_index[e.label] for e in train])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    steps_per_epoch = math.ceil(len(ids) / config.batch_size)
    total = steps_per_epoch * config.epochs
    head_lr = config.head_lr if config.head_lr is not None else 10 * config.lr
    optimizer = torch.optim.AdamW(param_groups(model, config.lr, head_lr, config.weight_decay))
    scheduler = linear_schedule(optimizer, int(config.warmup_ratio * total), total)
    weights = class_weight_tensor(targets, len(labels)) if config.class_weights else None
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
    rng = np.random.default_rng(config.seed)
    val_in = [e for e in val if e.label in label_index]
    lengths = [len(x) for x in ids]
    history: list[dict[str, Any]] = []
    best_acc, best_state, bad_epochs = -1.0, None, 0
    bar = progress(total, "fine-tune")
    for epoch in range(config.epochs):
        model.train()
        losses = []
        for batch_idx in length_bucketed_batches(lengths, config.batch_size, rng):
            input_ids, mask = pad_batch([ids[i] for i in batch_idx], pad_id)
            with autocast(config.bf16):
                logits = logits_fn(input_ids, mask)
            loss = loss_fn(logits.float(), torch.from_numpy(targets[batch_idx]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{np.mean(losses[-20:]):.3f}")
        record: dict[str, Any] = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
        if val_in:
            model.eval()
            acc = evaluate_intents(classifier_fn(), val_in)["accuracy"]
            record["val_accuracy"] = acc
            if acc > best_acc:
                best_acc, best_state, bad_epochs = acc, copy.deepcopy(model.state_dict()), 0
            else:
                bad_epochs += 1
        history.append(record)
        LOG.info("epoch %d: %s", epoch + 1, record)
        if val_in and config.patience > 0 and bad_epochs >= config.patience:
            LOG.info("early stop after epoch %d (best validation accuracy %.4f)", epoch + 1, best_acc)
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


# --------------------------------------------------------------------------- saving
def save_classifier(classifier: IntentClassifier, out_dir: str | Path, config: FinetuneConfig,
                    info: dict[str, Any], train: Sequence[IntentExample]) -> Path:
    """The folder, plus `training.json` (history, metrics) and a model card."""
    from convssl.runs import write_json_atomic

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
