"""Masked language modelling (BERT) over packed dialogue turns.

Masking is done on whole batches with numpy, and the vocabulary projection runs only at the
masked positions: with 15% masking that is ~7x less work in the largest matmul of a small model.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from convssl.models.fast import vocab_cross_entropy
from convssl.pretext.base import (
    Batch,
    DialogueLike,
    ObjectiveConfig,
    ObjectiveError,
    PretextObjective,
    pad_rows,
    register_objective,
)
from convssl.pretext.batching import grouped, pack_turns

if TYPE_CHECKING:
    from convssl.models.pretext_model import PretextModel

MASK_SHARE, RANDOM_SHARE = 0.8, 0.1  # BERT: 80% [MASK], 10% random token, 10% unchanged


class MLMHead(nn.Module):
    """BERT's MLM head (dense, GELU, LayerNorm, tied decoder) with BertForMaskedLM's parameter
    names under `predictions.`, so a saved checkpoint opens with AutoModelForMaskedLM."""

    def __init__(self, hidden_size: int, vocab_size: int, layer_norm_eps: float = 1e-12) -> None:
        super().__init__()
        self.predictions = nn.Module()
        self.predictions.transform = nn.Module()
        self.predictions.transform.dense = nn.Linear(hidden_size, hidden_size)
        self.predictions.transform.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.predictions.bias = nn.Parameter(torch.zeros(vocab_size))
        nn.init.normal_(self.predictions.transform.dense.weight, std=0.02)
        nn.init.zeros_(self.predictions.transform.dense.bias)

    def forward(self, hidden: torch.Tensor, embedding_weight: torch.Tensor) -> torch.Tensor:
        t = self.predictions.transform
        h = t.LayerNorm(F.gelu(t.dense(hidden)))
        return F.linear(h, embedding_weight.to(h.dtype), self.predictions.bias.to(h.dtype))


def word_start_table(tokenizer: Any) -> np.ndarray:
    """True for vocabulary entries that begin a word: WordPiece marks continuations with '##',
    byte-level BPE marks word starts with 'Ġ'."""
    vocab = tokenizer.get_vocab()
    table = np.ones(max(len(tokenizer), max(vocab.values()) + 1), dtype=bool)
    uses_g = sum(tok.startswith("Ġ") for tok in vocab) > len(vocab) // 10
    for token, idx in vocab.items():
        table[idx] = token.startswith("Ġ") if uses_g else not token.startswith("##")
    return table


def select_positions(
    ids: np.ndarray, special: np.ndarray, rate: float, rng: np.random.Generator, word_start: np.ndarray | None
) -> np.ndarray:
    """Boolean mask of positions to predict: a `rate` share of non-special tokens (or of whole
    words), at least one per row that has any candidate."""
    candidates = ~special
    if word_start is None:
        chosen = (rng.random(ids.shape) < rate) & candidates
    else:
        starts = (word_start[ids] | special).ravel()
        word_index = np.cumsum(starts) - 1
        pick = rng.random(int(word_index[-1]) + 1) < rate
        chosen = pick[word_index].reshape(ids.shape) & candidates
    empty = ~chosen.any(axis=1) & candidates.any(axis=1)
    if empty.any():
        noise = rng.random(ids.shape) * candidates
        rows = np.flatnonzero(empty)
        chosen[rows, noise[rows].argmax(axis=1)] = True
    return chosen


@register_objective
class MaskedLM(PretextObjective):
    name = "mlm"
    needs = "encoder"
    settings = ("mask_rate", "whole_word", "packing")

    def __init__(self, config: ObjectiveConfig, tokenizer: Any) -> None:
        super().__init__(config, tokenizer)
        if self.ids.mask is None:
            raise ObjectiveError("mlm needs a tokenizer with a [MASK] token (a WordPiece tokenizer)")
        self.require(0.0 < config.mask_rate < 1.0, "mask_rate", "in (0, 1)")
        self._special = np.zeros(self.ids.vocab_size, dtype=bool)
        self._special[list(self.ids.all_special)] = True
        self._random_pool = np.flatnonzero(~self._special)
        self._word_start = word_start_table(tokenizer) if config.whole_word else None

    def batches(
        self, dialogues: Iterator[DialogueLike], batch_size: int, rng: np.random.Generator
    ) -> Iterator[Batch]:
        rows = pack_turns(dialogues, self.ids, self.config.max_length, across_dialogues=self.config.packing)
        for group in grouped(rows, batch_size):
            yield self.make_batch(group, rng)

    def make_batch(self, rows: list[np.ndarray], rng: np.random.Generator) -> Batch:
        ids, mask = pad_rows(rows, self.ids.pad)
        special = self._special[ids]
        chosen = select_positions(ids, special, self.config.mask_rate, rng, self._word_start)
        positions = np.flatnonzero(chosen)
        labels = ids.ravel()[positions].copy()
        roll = rng.random(positions.size)
        inputs = ids.ravel().copy()
        inputs[positions[roll < MASK_SHARE]] = self.ids.mask
        swap = positions[(roll >= MASK_SHARE) & (roll < MASK_SHARE + RANDOM_SHARE)]
        inputs[swap] = rng.choice(self._random_pool, size=swap.size)
        tensors = {
            "input_ids": torch.from_numpy(inputs.reshape(ids.shape)),
            "mlm_positions": torch.from_numpy(positions),
            "mlm_labels": torch.from_numpy(labels),
        }
        return Batch.of_padded_rows(tensors, mask, self.name)

    def add_heads(self, model: PretextModel) -> None:
        self.check_model(model)
        if "mlm" not in model.heads:
            cfg = model.config
            model.heads["mlm"] = MLMHead(
                cfg.hidden_size, model.word_embeddings().weight.shape[0], cfg.layer_norm_eps
            )

    def loss(self, model: PretextModel, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        t = batch.tensors
        hidden = model.encode(t["input_ids"], t.get("attention_mask"))
        picked = hidden.reshape(-1, hidden.shape[-1]).index_select(0, t["mlm_positions"])
        logits = model.heads["mlm"](picked, model.word_embeddings().weight)
        loss, correct = vocab_cross_entropy(logits, t["mlm_labels"])  # softmax statistics in fp32
        return loss, {"loss": float(loss.detach()), "accuracy": correct}
