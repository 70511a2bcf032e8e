"""Fine-tune an encoder into an intent classifier with a calibrated out-of-scope threshold.

A plain torch loop rather than `transformers.Trainer`: on a small CPU the wins come from
length-bucketed batches (little padding), bf16 autocast and pre-tokenising once, and the loop
is short enough to read. The threshold is chosen on validation data only (`calibration.py`).
`finetune_intent` is the entry point of both methods: it starts and finishes the run (`recipe.py`),
and `method: setfit` builds its classifier in `setfit.py`.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convssl.data.dialogue import IntentExample
from convssl.downstream.config import FinetuneConfig
from convssl.downstream.data import (
    length_bucketed_batches,
    pad_batch,
    pad_id_of,
    tokenize_all,
)
from convssl.downstream.evaluation import closed_set_accuracy
from convssl.downstream.intent_classifier import ExampleMemory, IntentClassifier, fit_mahalanobis
from convssl.downstream.outlier_exposure import OutlierBatches, uniform_cross_entropy
from convssl.downstream.recipe import TrainingRun
from convssl.downstream.setfit import setfit_classifier
from convssl.downstream.training import adamw_with_schedule, class_weight_tensor, fit_head, optimizer_step
from convssl.models.encoder import Encoder, pool
from convssl.models.fast import speed_up_encoder
from convssl.train.precision import resolve_bf16, warn_if_bf16_slow
from convssl.utils.compute import autocast
from convssl.utils.progress import progress_bar

LOG = logging.getLogger("convssl.finetune")


# --------------------------------------------------------------------------- full fine-tuning
def finetune_intent(
    model_path: str | Path,
    train: Sequence[IntentExample],
    val: Sequence[IntentExample] | None,
    config: FinetuneConfig,
    out_dir: str | Path,
    *,
    outliers: Sequence[str] = (),
) -> IntentClassifier:
    """Fine-tune `model_path` (an HF folder or a convssl run) and save a classifier to `out_dir`.

    `outliers`: unlabeled out-of-domain texts for outlier exposure (`config.outlier_weight > 0`)."""
    run = TrainingRun.start(model_path, train, val, config, outliers)
    if config.method == "setfit":
        classifier, summary = setfit_classifier(run)
    else:
        classifier, summary = _full_classifier(run)
    return run.finish(classifier, out_dir, summary)


def _full_classifier(run: TrainingRun) -> tuple[IntentClassifier, dict]:
    """The whole encoder trained with a classification head (`method: full`)."""
    config = run.config
    if config.head == "pooled":
        classifier, history = _pooled_classifier(run)
    else:
        classifier, history = _sequence_classifier(run)
    if config.oos_score == "mahalanobis":
        classifier.oos_stats = _mahalanobis_stats(classifier, run.train, run.label_index)
    summary = {"method": "full", "head": config.head, "history": history}
    if config.head == "pooled" and config.memory_weights and config.oos_score == "max_softmax":
        summary["memory"] = _choose_memory(classifier, run)
    if run.outliers:
        summary["outliers"] = {"trained": len(run.outliers), "weight": config.outlier_weight,
                               "held_out_for_threshold": sum(e.source == "outliers" for e in run.val)}
    return classifier, summary


def _sequence_classifier(run: TrainingRun) -> tuple[IntentClassifier, list[dict]]:
    """The Hugging Face recipe: `AutoModelForSequenceClassification` (pooler + random head)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder, labels, label_index = run.folder, run.labels, run.label_index
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(folder), local_files_only=True, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id=label_index,
    )
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    meta = run.meta("sequence_classification")

    def logits(input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return model(input_ids=input_ids, attention_mask=mask).logits

    history = _train_loop(model, tokenizer, run.train, run.val, labels, run.config, logits,
                          lambda: IntentClassifier(model, tokenizer, copy.deepcopy(meta)), run.outliers)
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


def _pooled_classifier(run: TrainingRun) -> tuple[IntentClassifier, list[dict]]:
    """LP-FT: a probe of the frozen encoder starts the head, then the whole network is tuned."""
    config, labels = run.config, run.labels
    encoder = Encoder.load(run.folder, pooling=config.pooling, max_length=config.max_length)
    speed_up_encoder(encoder.model, low_precision_norm=False)  # same function, cheaper CPU kernels
    texts = [e.text for e in run.train]
    label_ids = np.array([run.label_index[e.label] for e in run.train])
    weight, bias = fit_head(encoder.embed(texts, normalize=True), label_ids, len(labels), config.probe_c, config.seed)
    net = PooledClassifier(encoder.model, weight, bias, config.pooling)
    meta = run.meta("pooled")

    def current() -> IntentClassifier:
        return IntentClassifier(net.encoder, encoder.tokenizer, copy.deepcopy(meta), head=net.head_tensors())

    history = _train_loop(net, encoder.tokenizer, run.train, run.val, labels, config, net, current, run.outliers)
    return current(), history


def _mahalanobis_stats(classifier: IntentClassifier, train: Sequence[IntentExample],
                       label_index: dict[str, int]) -> dict[str, torch.Tensor]:
    features = classifier.logits_and_features([e.text for e in train])[1].numpy()
    ids = np.array([label_index[e.label] for e in train])
    return fit_mahalanobis(features, ids, len(label_index))


def _choose_memory(classifier: IntentClassifier, run: TrainingRun) -> dict[str, Any]:
    """Keep an example memory of the training set if one of `memory_weights` beats the head alone
    on validation accuracy (ties keep the head alone).

    Why: after full fine-tuning the training examples sit in tight clusters of their intent, and a
    vote of a text's nearest ones corrects some of the linear head's errors near the borders
    between similar intents (BANKING77 validation 94.0 -> 94.7). Where it does not help (CLINC150)
    validation says so and nothing is kept. Out-of-scope validation texts are not scored here;
    the threshold is calibrated afterwards on the chosen classifier."""
    index = run.label_index
    val = [e for e in run.val if e.label in index]
    if not val:
        return {"kept": False, "reason": "no in-scope validation examples"}
    train_emb = classifier.logits_and_features([e.text for e in run.train])[1]
    train_ids = torch.tensor([index[e.label] for e in run.train])
    logits, emb = classifier.logits_and_features([e.text for e in val])
    gold = torch.tensor([index[e.label] for e in val])
    scores = {0.0: float((logits.argmax(1) == gold).float().mean())}
    for weight in sorted(run.config.memory_weights):
        memory = ExampleMemory(train_emb, train_ids, weight=weight)
        scores[weight] = float((memory.mix(logits, emb).argmax(1) == gold).float().mean())
    best = max(scores, key=lambda w: (scores[w], -w))
    if best > 0:
        classifier.memory = ExampleMemory(train_emb, train_ids, weight=best)
    LOG.info("example memory: validation accuracy by weight %s; kept %s", scores, best or "none")
    return {"kept": best > 0, "weight": best, "validation_accuracy": {str(w): round(a, 4) for w, a in scores.items()}}


def _outlier_batches(outliers: Sequence[str], config: FinetuneConfig) -> OutlierBatches | None:
    """Half a batch of outliers per step: enough to shape the scores off-domain for half the extra cost."""
    if config.outlier_weight <= 0 or not outliers:
        return None
    LOG.info("outlier exposure: %d out-of-scope texts, weight %g", len(outliers), config.outlier_weight)
    return OutlierBatches(outliers, max(1, config.batch_size // 2), config.seed + 1)


def _train_loop(model: torch.nn.Module, tokenizer: Any, train: Sequence[IntentExample],
                val: Sequence[IntentExample], labels: list[str], config: FinetuneConfig,
                logits_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                classifier_fn: Callable[[], IntentClassifier], outliers: Sequence[str] = ()) -> list[dict[str, Any]]:
    """AdamW, linear warm-up/decay, bf16 autocast, early stopping on validation accuracy; the
    best epoch's weights are restored at the end. With `outliers` and `outlier_weight > 0`, every
    step also trains half a batch of outliers toward a uniform prediction (outlier exposure)."""
    device = next(model.parameters()).device
    warn_if_bf16_slow(config.bf16 is True, device)  # set by hand: say so when it will not pay
    bf16 = resolve_bf16(config.bf16, device)
    label_index = {label: i for i, label in enumerate(labels)}
    ids = tokenize_all(tokenizer, [e.text for e in train], config.max_length)
    targets = np.array([label_index[e.label] for e in train])
    pad_id = pad_id_of(tokenizer)
    steps_per_epoch = math.ceil(len(ids) / config.batch_size)
    total = steps_per_epoch * config.epochs
    head_lr = config.head_lr if config.head_lr is not None else 10 * config.lr
    optimizer, scheduler = adamw_with_schedule(model, config.lr, config.weight_decay,
                                               int(config.warmup_ratio * total), total, head_lr=head_lr)
    weights = class_weight_tensor(targets, len(labels)) if config.class_weights else None
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
    rng = np.random.default_rng(config.seed)
    val_in = [e for e in val if e.label in label_index]
    lengths = [len(x) for x in ids]
    exposure = _outlier_batches(outliers, config)
    history: list[dict[str, Any]] = []
    best_acc, best_state, bad_epochs = -1.0, None, 0
    bar = progress_bar(total, "fine-tune", unit="step")
    for epoch in range(config.epochs):
        model.train()
        losses = []
        for batch_idx in length_bucketed_batches(lengths, config.batch_size, rng):
            input_ids, mask = pad_batch([ids[i] for i in batch_idx], pad_id)
            with autocast(bf16):
                logits = logits_fn(input_ids, mask)
            loss = loss_fn(logits.float(), torch.from_numpy(targets[batch_idx]))
            if exposure is not None:
                outlier_ids, outlier_mask = pad_batch(
                    tokenize_all(tokenizer, exposure.next(), config.max_length), pad_id)
                with autocast(bf16):
                    outlier_logits = logits_fn(outlier_ids, outlier_mask)
                loss = loss + config.outlier_weight * uniform_cross_entropy(outlier_logits.float())
            losses.append(optimizer_step(model, loss, optimizer, scheduler))
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{np.mean(losses[-20:]):.3f}")
        record: dict[str, Any] = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
        if val_in:
            model.eval()
            # closed-set accuracy from the logits: the out-of-scope score (Mahalanobis statistics,
            # the threshold) is only fitted on the chosen weights, after the loop
            acc = closed_set_accuracy(classifier_fn(), val_in)
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
