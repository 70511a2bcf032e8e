"""Supervised training of the encoder's top layers against class prototypes (a cosine classifier).

SetFit's pairs grow with the square of the data and its batches hold one example per intent,
which does not scale to 150 intents plus thousands of pseudo-labelled pool utterances. Here each
batch is a plain batch of labelled examples and the loss is a softmax over the cosine similarity
of every example to every intent's prototype (all intents in every step, as FastFit's batch
contrastive training compares each example to all classes). The prototypes start at the class
centroids of the current embeddings, so the first steps refine a nearest-centroid classifier
instead of fighting a random head (the LP-FT argument).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from convssl.downstream.top_layers import CachedStates, TopLayerEncoder
from convssl.downstream.training import linear_schedule
from convssl.train.optim import fused_adamw
from convssl.utils.progress import progress_bar


def class_centroids(embeddings: np.ndarray, label_ids: np.ndarray, num_labels: int) -> np.ndarray:
    centroids = np.zeros((num_labels, embeddings.shape[1]), dtype=np.float32)
    np.add.at(centroids, label_ids, embeddings)
    return centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)


def length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                            bucket: int = 50) -> list[np.ndarray]:
    """One epoch of shuffled batches whose members have similar lengths.

    Why: a batch is padded to its longest text, and utterance lengths vary about tenfold, so
    random batches spend most of their compute on padding. The rows are shuffled, cut into
    chunks of `bucket` batches, sorted by length inside each chunk and batched; the batch order
    is shuffled again, so every epoch still sees a different, random sequence of batches."""
    order = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(order), batch_size * bucket):
        chunk = order[start : start + batch_size * bucket]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def cut_tokens(mask: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """The attention mask with a random `fraction` of each text's tokens hidden (never the first).

    Cutoff augmentation (Shen et al. 2020, "A Simple but Tough-to-Beat Data Augmentation Approach
    for Natural Language Understanding and Generation") applied to the cached hidden states: the
    top layers neither attend to nor pool the hidden tokens, so a step sees a noisier view of each
    text at no extra cost. The first token stays, so no text loses every token."""
    if fraction <= 0:
        return mask
    keep = (torch.rand(mask.shape, generator=generator) >= fraction).to(mask.dtype)
    keep[:, 0] = 1
    return mask * keep


def drop_cut_tokens(hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch without its masked tokens: each row's kept tokens moved to the front, in order,
    and the batch narrowed to the longest row.

    Why: the top layers neither attend to nor pool a masked token, and every other operation in
    a block is per token, so a kept token's output is the same with the masked ones gone; only
    the compute spent on them (the cutoff's share plus padding) is saved."""
    keep = mask.bool()
    width = int(keep.sum(1).max())
    # A stable sort on "dropped" moves the kept positions to the front in their original order.
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices[:, :width]
    rows = torch.arange(hidden.shape[0])[:, None]
    return hidden[rows, order], mask[rows, order]


def train_top_layers(encoder: TopLayerEncoder, cached: CachedStates, rows: Sequence[int], label_ids: np.ndarray,
                     num_labels: int, *, epochs: int, min_steps: int, batch_size: int, lr: float,
                     scale: float, label_smoothing: float, weight_decay: float, seed: int,
                     token_cutoff: float = 0.0, desc: str = "train",
                     start_embeddings: np.ndarray | None = None) -> list[float]:
    """Tune the top layers (in place) and return the loss per step.

    `rows` index `cached`; `label_ids[i]` is the label of `rows[i]`. The number of steps is
    `epochs` passes over the rows, at least `min_steps` (a handful of shots is too few batches
    for the optimiser to move). `token_cutoff` hides that share of each training text's tokens
    (`cut_tokens`): with dropout, the student's noise. `start_embeddings`: the rows' embeddings
    through the top as it is now, when the caller has them (they seed the prototypes)."""
    rows = np.asarray(rows)
    embeddings = (start_embeddings if start_embeddings is not None
                  else encoder.embed(CachedStates([cached.states[i] for i in rows])))
    prototypes = torch.nn.Parameter(torch.from_numpy(class_centroids(embeddings, label_ids, num_labels)))
    params = encoder.top_parameters()
    optimizer = fused_adamw([{"params": params, "lr": lr, "weight_decay": weight_decay},
                             {"params": [prototypes], "lr": 10 * lr, "weight_decay": 0.0}], prototypes.device)
    per_epoch = math.ceil(len(rows) / batch_size)
    steps = max(min_steps, epochs * per_epoch)
    scheduler = linear_schedule(optimizer, int(0.1 * steps), steps)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    rng = np.random.default_rng(seed)
    cutoff_rng = torch.Generator().manual_seed(seed)
    targets = torch.from_numpy(np.asarray(label_ids, dtype=np.int64))
    lengths = np.array([cached.states[i].shape[0] for i in rows])
    losses: list[float] = []
    bar = progress_bar(steps, desc, unit="step")
    batches: list[np.ndarray] = []
    for block in encoder.top_blocks():
        block.train()  # dropout on: the noise of a noisy student
    for _ in range(steps):
        if not batches:
            batches = length_bucketed_batches(lengths, batch_size, rng)
        batch = batches.pop()
        hidden, mask = cached.batch(rows[batch])
        emb = encoder.forward_top(*drop_cut_tokens(hidden, cut_tokens(mask, token_cutoff, cutoff_rng)))
        logits = scale * emb @ torch.nn.functional.normalize(prototypes, dim=-1).T
        loss = loss_fn(logits, targets[batch])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    for block in encoder.top_blocks():
        block.eval()
    return losses
