"""Causal language modelling over whole dialogues (GPT-2 / DialoGPT style).

Dialogues become one token stream `[ROLE] text [EOT] ... <|endoftext|>` cut into full blocks, so a
decoder learns to continue a conversation, including who speaks next and where a turn ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch

from convssl.models.fast import vocab_cross_entropy
from convssl.pretext.base import (
    Batch,
    DialogueLike,
    PretextObjective,
    pad_rows,
    register_objective,
)
from convssl.pretext.batching import dialogue_segments, grouped, stream_blocks

if TYPE_CHECKING:
    from convssl.models.pretext_model import PretextModel


@register_objective
class CausalLM(PretextObjective):
    name = "clm"
    needs = "decoder"
    settings = ("packing",)

    def _rows(self, dialogues: Iterator[DialogueLike]) -> Iterator[np.ndarray]:
        """Packed: full blocks of the stream. Unpacked: one dialogue per row, cut to max_length."""
        length = self.config.max_length
        if self.config.packing:
            yield from stream_blocks(dialogues, self.ids, length)
            return
        for dialogue in dialogues:
            segments = dialogue_segments(dialogue, self.ids, length - 1)
            flat = np.concatenate([[self.ids.bos], *segments]).astype(np.int64)
            for start in range(0, len(flat), length):
                chunk = flat[start : start + length]
                if len(chunk) > 1:
                    yield chunk

    def batches(
        self, dialogues: Iterator[DialogueLike], batch_size: int, rng: np.random.Generator
    ) -> Iterator[Batch]:
        for group in grouped(self._rows(dialogues), batch_size):
            ids, mask = pad_rows(group, self.ids.pad)
            labels = np.where(mask.astype(bool), ids, -100)
            tensors = {"input_ids": torch.from_numpy(ids), "labels": torch.from_numpy(labels)}
            yield Batch.of_padded_rows(tensors, mask, self.name)

    def add_heads(self, model: PretextModel) -> None:
        self.check_model(model)  # the decoder's own (tied) LM head is used

    def loss(self, model: PretextModel, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        t = batch.tensors
        hidden = model.encode(t["input_ids"], t.get("attention_mask"))
        targets = t["labels"][:, 1:].reshape(-1)
        hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1])
        if "attention_mask" in t:  # project only positions with a real next token
            keep = (targets != -100).nonzero().squeeze(1)
            hidden, targets = hidden.index_select(0, keep), targets.index_select(0, keep)
        loss, correct = vocab_cross_entropy(model.lm_logits(hidden), targets)  # fp32 softmax statistics
        return loss, {
            "loss": float(loss.detach()),
            "accuracy": correct,
            "perplexity": float(torch.exp(loss.detach().clamp(max=20))),
        }
