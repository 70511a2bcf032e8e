"""A second opinion on "is this in scope?", in the serve encoder's frozen space.

A fine-tuned classifier can be confident about a question its intents do not cover ("can I get a
mortgage from you?" -> `failed_transfer` at 0.62): fine-tuning pulls every banking-sounding text
toward some intent. The frozen sentence encoder the bot already runs on every turn keeps such a
question farther from the training questions. So a turn whose predicted intent's nearest training
questions are not near enough counts as not understood, whatever the classifier's probability.

"Near enough" is calibrated on the training questions themselves, leave-one-out: each question's
mean cosine to the `neighbours` nearest *other* questions of its own intent; the threshold is the
value that `keep_fraction` of them reach. No out-of-scope data and no test data are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


class ScopeCheck:
    """The embedded training questions per intent; `scores(embeddings, intents)` per turn.

    Args:
        texts: the training questions (the train split of the classifier's labelled data).
        labels: their intents.
        encoder: the serve encoder (anything with `embed(texts, normalize=True)`).
        neighbours: how many nearest questions of the predicted intent are averaged.
        keep_fraction: share of the training questions (left out one at a time) the threshold keeps.
    """

    def __init__(self, texts: Sequence[str], labels: Sequence[str], encoder: Any, *, neighbours: int = 3,
                 keep_fraction: float = 0.95, batch_size: int = 64):
        if len(texts) != len(labels) or not texts:
            raise ValueError("scope check: needs at least one labelled training question")
        if neighbours < 1 or not 0 < keep_fraction <= 1:
            raise ValueError("scope check: neighbours must be >= 1 and keep_fraction in (0, 1]")
        self.neighbours = neighbours
        embedded = encoder.embed(list(texts), batch_size=batch_size, normalize=True)
        rows: dict[str, list[int]] = {}
        for i, label in enumerate(labels):
            rows.setdefault(label, []).append(i)
        self.examples = {label: np.asarray(embedded[idx], dtype=np.float32) for label, idx in rows.items()}
        held_out = np.concatenate([self._leave_one_out(e) for e in self.examples.values()])
        self.threshold = float(np.quantile(held_out, 1.0 - keep_fraction)) if len(held_out) else 0.0

    def _leave_one_out(self, examples: np.ndarray) -> np.ndarray:
        """Each question's score against the other questions of its intent (none when it is alone)."""
        if len(examples) < 2:
            return np.zeros(0, dtype=np.float32)
        sims = examples @ examples.T
        np.fill_diagonal(sims, -np.inf)  # a question is not its own neighbour
        return top_mean(sims, min(self.neighbours, len(examples) - 1))

    def scores(self, embeddings: np.ndarray, intents: Sequence[str | None]) -> np.ndarray:
        """Mean cosine of each turn to the nearest training questions of its predicted intent (0 for
        an intent without training questions)."""
        out = np.zeros(len(intents), dtype=np.float32)
        for i, intent in enumerate(intents):
            examples = self.examples.get(intent or "")
            if examples is not None:
                out[i] = top_mean(embeddings[i : i + 1] @ examples.T, min(self.neighbours, len(examples)))[0]
        return out

    def accepts(self, embeddings: np.ndarray, intents: Sequence[str | None]) -> np.ndarray:
        """Which turns are near enough to their predicted intent's training questions."""
        return self.scores(embeddings, intents) >= self.threshold


def top_mean(sims: np.ndarray, k: int) -> np.ndarray:
    """Mean of each row's `k` largest values."""
    return -np.partition(-sims, k - 1, axis=1)[:, :k].mean(axis=1)


def read_scope_examples(paths: Sequence[str], labels: Sequence[str]) -> tuple[list[str], list[str]]:
    """The train split of labelled data, kept to the classifier's own intents (an out-of-scope label
    or an intent the classifier lacks has no answer to be near)."""
    from convssl.data.readers import read_inputs

    for path in paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"scope.examples: {path} does not exist")
    try:
        examples = read_inputs(list(paths)).intents
    except ValueError as exc:
        raise ValueError(f"scope.examples: {exc}") from exc
    known = set(labels)
    train = [e for e in examples if e.split == "train" and e.label in known]
    if not train:
        raise ValueError(f"scope.examples {', '.join(paths)}: no training questions with the classifier's intents "
                         f"(read {len(examples)} labelled examples); expected the data the classifier was trained on")
    return [e.text for e in train], [e.label for e in train]
