"""Next-utterance prediction: does this turn follow this context? (BERT NSP, at turn level.)

Half of the candidates are the true next turn, half are turns from other dialogues of the same
window (or, for a configurable share, other turns of the same dialogue, which are harder). The
candidate always carries the role token of the true reply, so the role cannot give the answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from convssl.pretext.base import (
    Batch,
    DialogueLike,
    PretextObjective,
    accuracy,
    pad_rows,
    register_objective,
)
from convssl.pretext.batching import context_row, dialogue_segments, grouped, windows, with_role

if TYPE_CHECKING:
    from convssl.models.pretext_model import PretextModel

WINDOW = 64  # dialogues whose turns serve as each other's negatives


class BinaryHead(nn.Module):
    """BERT's pooler + NSP classifier on the [CLS] state."""

    def __init__(self, hidden: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, 2)

    def forward(self, cls_state: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.tanh(self.dense(cls_state))))


@register_objective
class NextUtterance(PretextObjective):
    name = "nup"
    needs = "encoder"
    settings = ("context_turns", "same_dialogue_negatives")

    def __init__(self, config, tokenizer) -> None:
        super().__init__(config, tokenizer)
        self.require(0.0 <= config.same_dialogue_negatives <= 1.0, "same_dialogue_negatives", "in [0, 1]")
        self.require(config.context_turns >= 1, "context_turns", ">= 1")

    def _negative(
        self, window: list[list[np.ndarray]], d: int, i: int, rng: np.random.Generator
    ) -> np.ndarray:
        own = window[d]
        same = len(own) > 2 and (len(window) == 1 or rng.random() < self.config.same_dialogue_negatives)
        if same:
            j = int(rng.integers(len(own) - 1))
            return own[j if j < i else j + 1]
        other = int(rng.integers(len(window) - 1))
        other = other if other < d else other + 1
        segs = window[other]
        return segs[int(rng.integers(len(segs)))]

    def examples(
        self, dialogues: Iterator[DialogueLike], rng: np.random.Generator
    ) -> Iterator[tuple[np.ndarray, int, int]]:
        """(row, context length incl. [CLS]/[SEP], label) with label 1 for the true next turn."""
        half = self.config.max_length // 2
        k = self.config.context_turns
        for group in windows(dialogues, WINDOW):
            window = [dialogue_segments(d, self.ids, half) for d in group]
            found = []
            for d, segs in enumerate(window):
                for i in range(1, len(segs)):
                    label = int(rng.random() < 0.5)
                    candidate = segs[i] if label else with_role(self._negative(window, d, i, rng), segs[i][0])
                    context = context_row(
                        segs[max(0, i - k) : i], self.ids, self.config.max_length - len(candidate) - 3
                    )
                    found.append((np.concatenate([context, candidate, [self.ids.eos]]), len(context), label))
            for j in rng.permutation(len(found)):
                yield found[j]

    def batches(
        self, dialogues: Iterator[DialogueLike], batch_size: int, rng: np.random.Generator
    ) -> Iterator[Batch]:
        for group in grouped(self.examples(dialogues, rng), batch_size):
            ids, mask = pad_rows([row for row, _, _ in group], self.ids.pad)
            types = (
                np.arange(ids.shape[1])[None, :] >= np.array([n for _, n, _ in group])[:, None]
            ) & mask.astype(bool)
            tensors = {
                "input_ids": torch.from_numpy(ids),
                "token_type_ids": torch.from_numpy(types.astype(np.int64)),
                "labels": torch.tensor([label for _, _, label in group], dtype=torch.long),
            }
            yield Batch.of_padded_rows(tensors, mask, self.name)

    def add_heads(self, model: PretextModel) -> None:
        self.check_model(model)
        if "nup" not in model.heads:
            model.heads["nup"] = BinaryHead(model.hidden_size, model.config.hidden_dropout_prob)

    def loss(self, model: PretextModel, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        t = batch.tensors
        hidden = model.encode(t["input_ids"], t.get("attention_mask"), t["token_type_ids"])
        logits = model.heads["nup"](model.cls_pool(hidden))
        loss = F.cross_entropy(logits.float(), t["labels"])
        return loss, {"loss": float(loss.detach()), "accuracy": accuracy(logits, t["labels"])}
