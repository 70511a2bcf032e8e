"""Outlier exposure: texts known to be out of scope are trained toward a uniform prediction.

A classifier fine-tuned on in-scope intents alone learns to be confident everywhere: nothing in
its loss says what *not* to recognise, so "can I get a mortgage?" comes out as `failed_transfer`
at 0.6. Outlier exposure adds, at every step, a batch of out-of-scope texts (a set's labelled
out-of-scope train examples, and unlabeled logs from other domains passed as `--outliers`) whose
target is the uniform distribution over the intents, so the max-softmax score the threshold reads
learns to be low off-domain.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def uniform_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the softmax of `logits` against the uniform distribution, averaged.

    Args:
        logits: ``[batch, intents]`` scores for out-of-scope texts.

    Returns:
        A scalar: ``mean(logsumexp(z) - mean(z))``, which is ``log(intents)`` plus the KL divergence
        from uniform, so it is minimal (``log(intents)``) exactly when every intent is equally likely.

    Example:
        >>> round(float(uniform_cross_entropy(torch.zeros(2, 4))), 4)  # already uniform: log 4
        1.3863

    References:
        Hendrycks, Mazeika and Dietterich, "Deep Anomaly Detection with Outlier Exposure", ICLR 2019.
    """
    return (torch.logsumexp(logits, dim=-1) - logits.mean(dim=-1)).mean()


class OutlierBatches:
    """Random batches of outlier texts, one per training step, from a seeded generator.

    Texts, not token ids: a log of 250,000 chat lines is sampled a few thousand times in a run,
    so each batch is tokenised when drawn rather than the whole log up front."""

    def __init__(self, texts: Sequence[str], batch_size: int, seed: int) -> None:
        if not texts:
            raise ValueError("outlier exposure needs at least one outlier text")
        self.texts = list(texts)
        self.batch_size = max(1, min(batch_size, len(self.texts)))
        self.rng = np.random.default_rng(seed)

    def next(self) -> list[str]:
        picks = self.rng.choice(len(self.texts), size=self.batch_size, replace=False)
        return [self.texts[i] for i in picks]
