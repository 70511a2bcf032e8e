"""The few-shot recipe that learns from an unlabeled pool (`method: pool`, docs/ssl_recipe.md).

Stages, each timed (`training.json` -> `stage_seconds`):
1. cache: the frozen lower layers run once over the shots and the pool (`top_layers.py`);
2. teacher: optionally tune the top layers on the shots, then a logistic-regression head on
   the shots' embeddings;
3. pseudo-label: the teacher labels the pool; keep the utterances where label propagation over
   the pool's kNN graph agrees (`self_training.py`);
4. student: the original top layers tuned on shots + kept pool utterances (dropout on: a noisy
   student), then the head refitted on their embeddings; `rounds` repeats 3-4.

Nothing but the shots carries a label. With a labelled validation set (full-data runs or
`--val`) the out-of-scope threshold is chosen on it as in every other method; in a k-shot run
without one it is the score that accepts `keep_fraction` of the pool, so no label beyond the
shots is read anywhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convssl.data.dialogue import IntentExample
from convssl.downstream.config import FinetuneConfig
from convssl.downstream.data import intent_labels, split_in_scope
from convssl.downstream.evaluation import calibrate, evaluate_intents
from convssl.downstream.intent_classifier import (
    ExampleMemory,
    IntentClassifier,
    IntentMeta,
    fit_mahalanobis,
    in_scope_score,
)
from convssl.downstream.pool import normalise
from convssl.downstream.prototype_training import train_top_layers
from convssl.downstream.saving import save_classifier
from convssl.downstream.self_training import PseudoLabels, agreement_pseudo_labels, confident_pseudo_labels
from convssl.downstream.top_layers import TopLayerEncoder, transformer_blocks
from convssl.downstream.training import fit_head
from convssl.models.encoder import Encoder
from convssl.models.fast import speed_up_encoder
from convssl.models.reference import resolve_model_path
from convssl.train.precision import resolve_bf16
from convssl.utils.compute import seed_everything, set_threads
from convssl.utils.progress import progress_bar

LOG = logging.getLogger("convssl.pool_recipe")
# In-domain pools agreed on 74-93% of their utterances in round 1 (BANKING77, CLINC150, the SGD intent
# sets, six BANKING77 intents with BANKING77 utterances of every intent as the pool); logs of another
# domain beside BANKING77 (chitchat, SGD, alone or mixed with its own) on 20-47% (docs/ssl_recipe.md).
MIN_IN_DOMAIN_AGREEMENT = 0.5


def off_domain_warning(rounds: Sequence[dict[str, Any]]) -> str | None:
    """A line for the user when the teacher and label propagation agreed on little of the pool in round 1,
    the sign of a pool from another domain than the intents; None otherwise (or without agreement rounds)."""
    agreement = rounds[0].get("teacher_propagation_agreement") if rounds else None
    if agreement is None or agreement >= MIN_IN_DOMAIN_AGREEMENT:
        return None
    return (f"the teacher and label propagation agreed on only {agreement:.0%} of the unlabeled pool in round 1 "
            f"(in-domain pools: well above {MIN_IN_DOMAIN_AGREEMENT:.0%}): much of it may come from another domain "
            "than these intents, which can lower accuracy, and the out-of-scope threshold taken from the pool then "
            "accepts off-domain texts; pass logs from the intents' own domain (docs/ssl_recipe.md)")


class StageClock:
    """Wall-clock seconds per stage, for the log, training.json and the results table."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.time()

    def lap(self, stage: str) -> None:
        now = time.time()
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - self._start, 1)
        LOG.info("stage %s: %.1f s", stage, now - self._start)
        self._start = now


def sample_pool(texts: Sequence[str], limit: int, seed: int, origins: Sequence[int] | None = None) -> list[str]:
    """At most `limit` of `texts`, a seeded draw kept in the pool's order. With several sources (`origins`:
    one source index per text) each source gets an equal share, and a source smaller than its share is kept
    whole, its unused share going to the others: a large chat corpus passed beside a set's own utterances
    cannot crowd them out (docs/ssl_recipe.md, a pool from another domain)."""
    if len(texts) <= limit:
        return list(texts)
    rng = np.random.default_rng(seed)
    if origins is None or len(set(origins)) < 2:
        rows = rng.choice(len(texts), size=limit, replace=False)
    else:
        by_source: dict[int, list[int]] = {}
        for i, origin in enumerate(origins):
            by_source.setdefault(origin, []).append(i)
        quotas = equal_shares({source: len(found) for source, found in by_source.items()}, limit)
        rows = np.concatenate([rng.choice(by_source[source], size=quota, replace=False)
                               for source, quota in sorted(quotas.items())])
    return [texts[i] for i in np.sort(rows)]


def equal_shares(sizes: dict[int, int], limit: int) -> dict[int, int]:
    """Split `limit` equally over sources of `sizes`, smallest first; a source smaller than its share is
    taken whole and the rest is split again over the others (water-filling). Sums to min(limit, total)."""
    quotas: dict[int, int] = {}
    left = limit
    waiting = sorted(sizes, key=lambda source: (sizes[source], source))
    while waiting:
        share = left // len(waiting)
        if sizes[waiting[0]] <= share:
            source = waiting.pop(0)
            quotas[source] = sizes[source]
            left -= sizes[source]
            continue
        extra = left - share * len(waiting)  # the remainder of the division, one each to the first sources
        for i, source in enumerate(waiting):
            quotas[source] = share + (1 if i < extra else 0)
        break
    return quotas


def head_probabilities(embeddings: np.ndarray, head: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
    logits = embeddings @ head[0].numpy().T + head[1].numpy()
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def select_pseudo_labels(config: FinetuneConfig, shot_emb: np.ndarray, shot_ids: np.ndarray, pool_emb: np.ndarray,
                         probs: np.ndarray, num_labels: int) -> PseudoLabels:
    pc = config.pool
    if pc.selection == "agreement":
        return agreement_pseudo_labels(shot_emb, shot_ids, pool_emb, probs, num_labels, k=pc.knn)
    return confident_pseudo_labels(probs, num_labels, pc.confident_fraction)


def pool_threshold(classifier: IntentClassifier, pool_emb: np.ndarray, keep_fraction: float,
                   exclude: torch.Tensor | None = None) -> float:
    """The score that accepts `keep_fraction` of the (unlabeled, in-domain) pool.

    Scored from the pool's cached embeddings, which are the classifier's own features (the saved
    encoder is the cached bottom plus the same top), so the pool is not encoded a second time.
    `exclude`: each pool text's own row in the example memory (-1: none), left out of its vote."""
    features = torch.from_numpy(pool_emb)
    logits = classifier.head_logits(features, exclude)
    scores = in_scope_score(classifier.meta.score, logits, features, classifier.oos_stats).numpy()
    return float(np.quantile(scores, 1.0 - keep_fraction))


def example_memory(config: FinetuneConfig, emb: np.ndarray, rows: np.ndarray, row_ids: np.ndarray
                   ) -> ExampleMemory | None:
    """The last student's embeddings of the shots and the kept pool utterances, with their labels.

    Kept only when the recipe used a pool: over the shots alone the vote lowered dev accuracy
    (CLINC150 10-shot 92.5 -> 90.5), so the recipe without the pool stays the head alone."""
    pc = config.pool
    if pc.memory_k == 0 or config.oos_score != "max_softmax":
        return None
    return ExampleMemory(torch.from_numpy(emb[rows]), torch.from_numpy(row_ids), k=pc.memory_k,
                         weight=pc.memory_weight, temperature=pc.memory_temperature)


def train_pool_recipe(
    model_path: str | Path,
    train: Sequence[IntentExample],
    val: Sequence[IntentExample] | None,
    pool_texts: Sequence[str] | None,
    config: FinetuneConfig,
    out_dir: str | Path,
    *,
    pool_origins: Sequence[int] | None = None,
) -> IntentClassifier:
    """Train on `train` (the only labels) and the unlabeled `pool_texts`; save like `finetune_intent`.
    `pool_origins` (one source index per pool text) shares `pool.max_pool` equally among the sources."""
    clock = StageClock()
    started = time.time()
    pc = config.pool
    seed_everything(config.seed)
    set_threads(config.threads)
    folder = resolve_model_path(model_path)
    in_train, _ = split_in_scope(train, config.oos_label)
    val_list = list(val or [])
    labels = intent_labels(in_train, config.oos_label)
    if len(labels) < 2:
        raise ValueError("the pool recipe needs at least two in-scope labels")
    label_index = {label: i for i, label in enumerate(labels)}
    shot_ids = np.array([label_index[e.label] for e in in_train])
    labelled = {normalise(e.text) for e in train}  # a labelled text needs no pseudo-label
    origins = list(pool_origins) if pool_origins else [0] * len(pool_texts or [])
    if len(origins) != len(pool_texts or []):
        raise ValueError(f"pool_origins has {len(origins)} entries for {len(pool_texts or [])} pool texts")
    unlabelled = [(t, o) for t, o in zip(pool_texts or [], origins) if normalise(t) not in labelled]
    pool_list = sample_pool([t for t, _ in unlabelled], pc.max_pool, config.seed, [o for _, o in unlabelled])

    encoder = Encoder.load(folder, pooling=config.pooling, max_length=config.max_length)
    # The pretraining kernels (cheaper dropout, fused attention): same weights and function, a
    # student step about a third faster on CPU. The stock LayerNorm stays: its bf16 variant was no
    # faster here and rounds the residual stream (docs/ssl_recipe.md, speed).
    speed_up_encoder(encoder.model, low_precision_norm=False)
    # The preset tunes 6 blocks (all of MiniLM's); a smaller encoder is tuned whole.
    tuned = min(pc.top_layers, len(transformer_blocks(encoder.model)))
    if tuned < pc.top_layers:
        LOG.info("pool.top_layers %d > the encoder's %d blocks: tuning all of them", pc.top_layers, tuned)
    top = TopLayerEncoder(encoder.model, encoder.tokenizer, tuned, config.max_length, config.pooling,
                          resolve_bf16(config.bf16))
    original_top = top.top_state()
    texts = [e.text for e in in_train] + pool_list
    bar = progress_bar(len(texts), "encode (frozen layers)", unit="text")
    cached = top.cache(texts, progress=bar)
    bar.close()
    shot_rows = np.arange(len(in_train))
    pool_rows = np.arange(len(in_train), len(texts))
    clock.lap("cache")

    train_kw: dict[str, Any] = dict(batch_size=pc.batch_size, lr=pc.lr, scale=pc.scale,
                                    label_smoothing=config.label_smoothing, weight_decay=config.weight_decay,
                                    min_steps=pc.min_steps, token_cutoff=pc.token_cutoff)
    if pc.teacher_epochs > 0:
        train_top_layers(top, cached, shot_rows, shot_ids, len(labels), epochs=pc.teacher_epochs,
                         seed=config.seed, desc="teacher", **train_kw)
    # Every text through the current top, once per change of the top: pseudo-labelling, the head,
    # the next round and the threshold all index this one matrix instead of re-embedding.
    emb = top.embed(cached)
    # Each student starts from the original top; without a tuned teacher these are its embeddings.
    original_emb = emb if pc.teacher_epochs == 0 else None
    head = fit_head(emb[shot_rows], shot_ids, len(labels), pc.head_c, config.seed)
    clock.lap("teacher")

    rows, row_ids = shot_rows, shot_ids
    rounds: list[dict[str, Any]] = []
    for round_index in range(pc.rounds if pool_list else 0):
        pool_emb = emb[pool_rows]
        pseudo = select_pseudo_labels(config, emb[shot_rows], shot_ids, pool_emb,
                                      head_probabilities(pool_emb, head), len(labels))
        clock.lap("pseudo-label")
        rows = np.concatenate([shot_rows, pool_rows[pseudo.rows]])
        row_ids = np.concatenate([shot_ids, pseudo.labels])
        top.load_top_state(original_top)  # a fresh student, not the teacher fine-tuned further
        if pc.student_epochs > 0:
            train_top_layers(top, cached, rows, row_ids, len(labels), epochs=pc.student_epochs,
                             seed=config.seed + round_index + 1, desc=f"student {round_index + 1}",
                             start_embeddings=None if original_emb is None else original_emb[rows], **train_kw)
        if pc.student_epochs > 0 or pc.teacher_epochs > 0:  # the top changed
            emb = top.embed(cached)
        head = fit_head(emb[rows], row_ids, len(labels), pc.head_c, config.seed)
        clock.lap("student")
        rounds.append({"round": round_index + 1, "kept": len(pseudo.rows), "pool": len(pool_list),
                       "kept_fraction": round(pseudo.kept_fraction, 4),
                       "teacher_propagation_agreement": round(float(np.mean(
                           pseudo.teacher_labels == pseudo.propagated_labels)), 4)
                       if pseudo.propagated_labels is not None else None})
        LOG.info("round %d: kept %d of %d pool utterances", round_index + 1, len(pseudo.rows), len(pool_list))
    warnings = [w] if (w := off_domain_warning(rounds)) else []
    for warning in warnings:
        LOG.warning("%s", warning)

    meta = IntentMeta(kind="setfit", oos_label=config.oos_label, score=config.oos_score,
                      max_length=config.max_length, pooling=config.pooling, labels=labels)
    for p in encoder.model.parameters():
        p.requires_grad_(True)
    stats = (fit_mahalanobis(emb[rows], row_ids, len(labels)) if config.oos_score == "mahalanobis" else None)
    memory = example_memory(config, emb, rows, row_ids) if rounds else None
    classifier = IntentClassifier(encoder.model, encoder.tokenizer, meta, head=head, oos_stats=stats, memory=memory)
    calibration = calibrate(classifier, val_list, config) if val_list else None
    threshold_from = "validation" if calibration else None
    if calibration is None and pool_list:
        own_row = np.full(len(texts), -1)
        own_row[rows] = np.arange(len(rows))
        exclude = torch.from_numpy(own_row[pool_rows]) if memory is not None else None
        classifier.threshold = pool_threshold(classifier, emb[pool_rows], config.keep_fraction, exclude)
        threshold_from = f"unlabeled pool ({config.keep_fraction:.0%} accepted)"
    val_metrics = evaluate_intents(classifier, val_list) if val_list else {}
    clock.lap("threshold")
    info = {"method": "pool", "base_model": str(folder), "train_examples": len(in_train),
            "pool_utterances": len(pool_list), "val_examples": len(val_list), "rounds": rounds,
            "val": val_metrics, "calibration": calibration.to_dict() if calibration else None,
            "threshold_from": threshold_from, "stage_seconds": clock.seconds,
            "memory": {"rows": len(memory.embeddings), **memory.settings()} if memory is not None else None,
            "warnings": warnings, "seconds": round(time.time() - started, 1)}
    save_classifier(classifier, out_dir, config, info, in_train)
    return classifier
