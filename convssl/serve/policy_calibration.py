"""Choose the policy's own thresholds on validation data, never on the conversation tests.

* `clarify_margin`: the top-1 minus top-2 margin below which asking "A or B?" beats answering,
  scored on the classifier's validation questions with a simple utility: a right answer +1, a wrong
  answer -1, a clarifying question +0.5 when it offers the right intent (one more turn to get
  there) and -0.5 when it does not; a fallback 0.
* detector thresholds (small talk, frustration): the score that at most `rate` of in-domain
  validation questions reach, so ordinary questions are almost never taken for small talk or
  frustration; never below `floor`.
* `rephrase_threshold`: the cosine that at most `rate` (5%) of pairs of validation questions with
  *different* intents reach, so a new question is rarely taken for the user re-asking the last one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RIGHT, WRONG, CLARIFY_HIT, CLARIFY_MISS = 1.0, -1.0, 0.5, -0.5


def clarify_utility(probs: np.ndarray, labels: np.ndarray, understood: np.ndarray, margin: float,
                    floor: float | None, answerable: np.ndarray | None = None) -> float:
    """Mean utility of the policy with `margin` over validation rows (`probs` [N, C], true `labels`)."""
    order = np.argsort(-probs, axis=1)[:, :2]
    p1 = probs[np.arange(len(probs)), order[:, 0]]
    p2 = probs[np.arange(len(probs)), order[:, 1]]
    close = (p1 - p2) < margin
    if answerable is not None:
        close &= answerable[order[:, 0]] & answerable[order[:, 1]]
    if floor is not None:
        close &= understood | (p1 + p2 >= floor)
    else:
        close &= understood
    hit = (order[:, 0] == labels) | (order[:, 1] == labels)
    utility = np.where(understood, np.where(order[:, 0] == labels, RIGHT, WRONG), 0.0)
    utility = np.where(close, np.where(hit, CLARIFY_HIT, CLARIFY_MISS), utility)
    return float(utility.mean())


def choose_clarify_margin(probs: np.ndarray, labels: np.ndarray, understood: np.ndarray, floor: float | None,
                          answerable: np.ndarray | None = None,
                          grid: Sequence[float] = tuple(np.round(np.arange(0.0, 0.51, 0.01), 2))) -> tuple[float, dict]:
    """The margin of the grid with the best validation utility (ties: the smallest, which asks least)."""
    scores = {float(m): clarify_utility(probs, labels, understood, float(m), floor, answerable) for m in grid}
    best = max(scores, key=lambda m: (scores[m], -m))
    return best, scores


def false_alarm_threshold(in_domain_scores: np.ndarray, rate: float = 0.005, floor: float = 0.5) -> float:
    """A detector threshold that at most `rate` of in-domain questions reach."""
    scores = np.asarray(in_domain_scores, dtype=np.float64)
    if len(scores) == 0:
        return floor
    return max(floor, float(np.quantile(scores, 1.0 - rate)) + 1e-3)


def rephrase_threshold(embeddings: np.ndarray, labels: np.ndarray, rate: float = 0.05) -> float:
    """The cosine that at most `rate` of pairs of questions with different intents reach (L2-normalised rows)."""
    sims = embeddings @ embeddings.T
    upper = np.triu_indices(len(labels), 1)
    different = (labels[:, None] != labels[None, :])[upper]
    return false_alarm_threshold(sims[upper][different], rate, floor=0.0)
