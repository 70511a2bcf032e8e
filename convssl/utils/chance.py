"""Is a score at chance level? One rule for every report that prints an accuracy or a recall.

A 50-step smoke run gives an encoder whose intent accuracy is 1.4% on BANKING77's 77 intents: a
number that looks like a result but is what guessing gives. Reports say so beside the number,
so that nobody reads a broken run as a finished one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable

# Standard errors above chance within which a score counts as chance: 3 keeps the false alarm rate
# of a real guesser below ~0.2%, while a model that learned anything clears it easily.
NOISE_SIGMAS = 3.0


def chance_accuracy(labels: Iterable[Hashable]) -> float:
    """Accuracy of always answering the most frequent label (1/K when the K labels are balanced)."""
    counts = Counter(labels)
    total = sum(counts.values())
    return max(counts.values()) / total if total else 0.0


def near_chance(score: float, chance: float, n: int) -> bool:
    """`score` (a share in [0, 1] over `n` trials) is within noise of `chance`: below chance plus
    NOISE_SIGMAS binomial standard errors, and never less than one trial's worth above it. False
    when `n` is too small for the rule to tell anything (3 test texts at 3 intents)."""
    if n <= 0 or not 0.0 < chance < 1.0:
        return False
    noise = NOISE_SIGMAS * math.sqrt(chance * (1.0 - chance) / n)
    if chance + noise >= 1.0:
        return False  # too few trials: not even a perfect score could be told from guessing, so say nothing
    return score <= chance + max(noise, 1.0 / n)


def chance_warning(what: str, score: float, chance: float, n: int, hint: str = "") -> str | None:
    """One line for reports and the console when `score` is at chance level, else None."""
    if not near_chance(score, chance, n):
        return None
    line = (f"{what} {100 * score:.1f}% is at chance level ({100 * chance:.1f}% by guessing, {n} examples): "
            "the model has learned nothing usable for this task")
    return f"{line}; {hint}" if hint else line


UNDERTRAINED_HINT = ("an encoder pretrained for a few steps (a smoke run) does this: train longer, or use the "
                     "pretrain_mini_views preset, which lifts the frozen encoder within 50 steps")
