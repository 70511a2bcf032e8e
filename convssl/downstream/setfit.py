"""Few-shot intent classification, SetFit-style (Tunstall et al. 2022).

With 5-10 examples per intent a freshly initialised softmax head over a fine-tuned body
overfits; SetFit instead tunes the *sentence embedding* contrastively (same intent close,
different intents apart), then fits a logistic regression on the tuned embeddings.

Contrastive step: draw `batch_size` distinct labels and two examples of each (anchor,
positive). The loss is in-batch softmax over anchor-positive cosine similarities
(MultipleNegativesRanking, as sentence-transformers), where every other positive in the batch is
a negative; distinct labels per batch mean no false negatives. A label with one example pairs it
with itself (dropout makes the two views differ, as in SimCSE).

Saved as ``"kind": "setfit"``: the tuned encoder (an `AutoModel` folder), its tokenizer,
``head.safetensors`` (`weight` [C, D], `bias` [C] on L2-normalised pooled embeddings) and
``convssl_intent.json`` with the labels and the OOS rule. `IntentClassifier.load` reads it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch

from convssl.downstream.config import FinetuneConfig
from convssl.downstream.data import pad_batch, pad_id_of, tokenize_all
from convssl.downstream.intent_classifier import IntentClassifier, fit_mahalanobis
from convssl.downstream.recipe import TrainingRun
from convssl.downstream.training import adamw_with_schedule, fit_head, optimizer_step
from convssl.models.encoder import Encoder, pool
from convssl.train.precision import resolve_bf16
from convssl.utils.compute import autocast
from convssl.utils.progress import progress_bar

LOG = logging.getLogger("convssl.setfit")


def contrastive_batches(label_ids: np.ndarray, batch_size: int, steps: int,
                        rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """(anchor indices, positive indices) per step, each label at most once per batch."""
    by_label = [np.flatnonzero(label_ids == c) for c in range(int(label_ids.max()) + 1)]
    present = np.array([c for c, rows in enumerate(by_label) if len(rows)])
    size = min(batch_size, len(present))
    out = []
    for _ in range(steps):
        chosen = rng.choice(present, size=size, replace=False)
        anchors, positives = [], []
        for c in chosen:
            rows = by_label[c]
            pair = rng.choice(rows, size=2, replace=False) if len(rows) >= 2 else np.array([rows[0], rows[0]])
            anchors.append(pair[0])
            positives.append(pair[1])
        out.append((np.array(anchors), np.array(positives)))
    return out


def contrastive_tune(model: torch.nn.Module, tokenizer, texts: Sequence[str], label_ids: np.ndarray,
                     config: FinetuneConfig) -> list[float]:
    """Tune the encoder in place; returns the loss per step."""
    sf = config.setfit
    ids = tokenize_all(tokenizer, texts, config.max_length)
    pad_id = pad_id_of(tokenizer)
    steps = max(1, sf.iterations * math.ceil(len(texts) / (2 * max(1, min(sf.batch_size, label_ids.max() + 1)))))
    rng = np.random.default_rng(config.seed)
    batches = contrastive_batches(label_ids, sf.batch_size, steps, rng)
    optimizer, scheduler = adamw_with_schedule(model, sf.lr, config.weight_decay, int(config.warmup_ratio * steps), steps)
    model.train()
    bf16 = resolve_bf16(config.bf16)
    losses: list[float] = []
    bar = progress_bar(steps, "setfit contrastive", unit="step")
    for anchors, positives in batches:
        input_ids, mask = pad_batch([ids[i] for i in np.concatenate([anchors, positives])], pad_id)
        with autocast(bf16):
            hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        emb = torch.nn.functional.normalize(pool(hidden.float(), mask, config.pooling), dim=-1)
        a, p = emb[: len(anchors)], emb[len(anchors) :]
        logits = sf.scale * a @ p.T
        loss = 0.5 * (torch.nn.functional.cross_entropy(logits, torch.arange(len(a)))
                      + torch.nn.functional.cross_entropy(logits.T, torch.arange(len(a))))
        losses.append(optimizer_step(model, loss, optimizer, scheduler))
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    model.eval()
    return losses


def setfit_classifier(run: TrainingRun) -> tuple[IntentClassifier, dict]:
    """Contrastive tuning + logistic-regression head, and what the run's summary records of it;
    `finetune_intent` calibrates and saves it like every method."""
    config = run.config
    if len(run.labels) < 2:
        raise ValueError("SetFit needs at least two in-scope labels")
    encoder = Encoder.load(run.folder, pooling=config.pooling, max_length=config.max_length)
    texts = [e.text for e in run.train]
    label_ids = np.array([run.label_index[e.label] for e in run.train])
    losses = contrastive_tune(encoder.model, encoder.tokenizer, texts, label_ids, config)
    embeddings = encoder.embed(texts, normalize=True)
    head = fit_head(embeddings, label_ids, len(run.labels), config.setfit.head_c, config.seed)
    stats = fit_mahalanobis(embeddings, label_ids, len(run.labels)) if config.oos_score == "mahalanobis" else None
    classifier = IntentClassifier(encoder.model, encoder.tokenizer, run.meta("setfit"), head=head, oos_stats=stats)
    return classifier, {"method": "setfit", "contrastive_steps": len(losses),
                        "contrastive_loss_first_last": [losses[0], losses[-1]] if losses else None}
