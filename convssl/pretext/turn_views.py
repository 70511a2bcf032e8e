"""Contrastive turn views (SimCSE / ConSERT style): two corrupted copies of one turn are pulled
together, every other turn of the batch pushed away.

Each view drops a random share of the turn's tokens (`view_drop`) and passes through the
encoder with its own dropout, so the encoder must map paraphrase-like variants of an utterance to
one point. Unlike response selection, this asks what a turn *says*, which is what intent
classification reads from a frozen encoder; it needs no dialogue structure at all, so single-turn
logs (intent sets without labels) train it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from convssl.pretext.base import (
    Batch,
    DialogueLike,
    PretextObjective,
    encoder_inputs,
    register_objective,
)
from convssl.pretext.batching import grouped, shuffled
from convssl.pretext.contrastive import (
    SHUFFLE_BATCHES,
    gather_across_ranks,
    mask_repeated_texts,
    pooled_embedding,
)

if TYPE_CHECKING:
    from convssl.models.pretext_model import PretextModel

MIN_TOKENS = 3  # shorter turns ("ok", "lol") have no second view worth learning from


@register_objective
class TurnViews(PretextObjective):
    name = "turn_views"
    needs = "encoder"
    settings = ("temperature", "symmetric", "view_drop")

    def __init__(self, config, tokenizer) -> None:
        super().__init__(config, tokenizer)
        self.require(config.temperature > 0, "temperature", "> 0")
        self.require(0.0 <= config.view_drop < 1.0, "view_drop", "in [0, 1)")

    def turns(self, dialogues: Iterator[DialogueLike]) -> Iterator[np.ndarray]:
        """The token ids of every turn long enough to corrupt, cut to fit `[CLS] ... [SEP]`."""
        budget = self.config.max_length - 2
        for dialogue in dialogues:
            for turn in dialogue.turns:
                tokens = np.asarray(turn, dtype=np.int64)[:budget]
                if tokens.size >= MIN_TOKENS:
                    yield tokens

    def view(self, tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        keep = rng.random(tokens.size) >= self.config.view_drop
        if not keep.any():
            keep[rng.integers(tokens.size)] = True
        return np.concatenate([[self.ids.bos], tokens[keep], [self.ids.eos]])

    def batches(
        self, dialogues: Iterator[DialogueLike], batch_size: int, rng: np.random.Generator
    ) -> Iterator[Batch]:
        """Full batches only (ranks gather equal shapes); a lone partial batch is kept for tiny data."""
        yielded = False
        for group in grouped(shuffled(self.turns(dialogues), SHUFFLE_BATCHES * batch_size, rng), batch_size):
            if len(group) < batch_size and yielded:
                return
            yielded = True
            first = [self.view(t, rng) for t in group]
            second = [self.view(t, rng) for t in group]
            tensors = {
                **encoder_inputs(first, self.ids.pad, "first_"),
                **encoder_inputs(second, self.ids.pad, "second_"),
                "keys": torch.tensor([hash(t.tobytes()) & 0x7FFFFFFFFFFFFFFF for t in group], dtype=torch.long),
            }
            real = sum(len(r) for r in first) + sum(len(r) for r in second)
            yield Batch(tensors, real_tokens=real, objective=self.name)

    def add_heads(self, model: PretextModel) -> None:
        self.check_model(model)  # no head: the mean-pooled embedding is the product

    def loss(self, model: PretextModel, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        first = pooled_embedding(model, batch, "first_")
        second = pooled_embedding(model, batch, "second_")
        keys = batch.tensors["keys"]
        n = first.shape[0]
        all_second, rank = gather_across_ranks(second)
        all_keys, _ = gather_across_ranks(keys)
        targets = torch.arange(n, device=first.device) + rank * n
        logits, duplicate = mask_repeated_texts(first @ all_second.T / self.config.temperature, keys, all_keys, targets)
        loss = F.cross_entropy(logits, targets)
        if self.config.symmetric:
            all_first, _ = gather_across_ranks(first)
            back = (second @ all_first.T / self.config.temperature).masked_fill(duplicate, float("-inf"))
            loss = (loss + F.cross_entropy(back, targets)) / 2
        with torch.no_grad():
            recall = float((logits.argmax(-1) == targets).float().mean())
        return loss, {"loss": float(loss.detach()), "recall@1": recall}
