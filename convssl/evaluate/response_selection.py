"""Response selection: pick the true next turn among 100 candidates (Henderson et al. 2019 style).

Pairs (context = last k turns joined, response = next turn) come from held-out dialogues, are
shuffled with a seed and cut into batches of `candidates`; within a batch the other pairs'
responses are the distractors, and each context ranks all responses of its batch by cosine
similarity. Chance recall@1 is 1 / candidates.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from convssl.data.dialogue import Dialogue
from convssl.evaluate.intent import similarities


def placed_pairs(dialogues: list[Dialogue], context_turns: int, max_pairs: int,
                 seed: int) -> list[tuple[int, int, str, str]]:
    """(dialogue index, turn index, context, response) for every turn after the first, shuffled with
    `seed`; a sample when capped. Where each pair sits lets a caller read the turn's annotations."""
    pairs = []
    for d, dialogue in enumerate(dialogues):
        texts = [t.text.strip() for t in dialogue.turns]
        for i in range(1, len(texts)):
            context = " ".join(t for t in texts[max(0, i - context_turns) : i] if t)
            if context and texts[i]:
                pairs.append((d, i, context, texts[i]))
    random.Random(seed).shuffle(pairs)
    if max_pairs > 0:
        pairs = pairs[:max_pairs]
    return pairs


def make_pairs(dialogues: list[Dialogue], context_turns: int, max_pairs: int, seed: int) -> list[tuple[str, str]]:
    """(context, response) for every turn after the first; a seeded sample when capped."""
    return [(context, response) for _, _, context, response in placed_pairs(dialogues, context_turns, max_pairs, seed)]


def recall_at_k(ctx: Any, resp: Any, candidates: int, ks: tuple[int, ...] = (1, 10)) -> dict[str, Any]:
    """Rank of the true response within each full batch; a short tail batch is dropped.

    With fewer pairs than `candidates`, one batch of all pairs is used and the smaller candidate
    count is reported, so small test slices still give a number with its own chance level.
    """
    n = ctx.shape[0]
    size = candidates if n >= candidates else n
    batches = max(n // size, 1)
    hits = {k: 0 for k in ks}
    ranks = []
    for b in range(batches):
        sl = slice(b * size, (b + 1) * size)
        sims = similarities(ctx[sl], resp[sl])
        true = np.diag(sims)
        rank = (sims > true[:, None]).sum(axis=1)  # 0 = ranked first
        ranks.extend(rank.tolist())
        for k in ks:
            hits[k] += int(np.sum(rank < k))
    total = batches * size
    out: dict[str, Any] = {f"recall@{k}": hits[k] / total for k in ks}
    out["candidates"] = size
    out["pairs"] = total
    out["mrr"] = float(np.mean(1.0 / (np.array(ranks) + 1)))
    out["chance_recall@1"] = 1.0 / size
    return out
