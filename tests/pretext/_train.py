"""A minimal training loop for tests: does an objective's loss fall on a tiny model?"""

from __future__ import annotations

import numpy as np
import torch

from convssl.models import ModelConfig, build_pretext_model
from convssl.pretext import PretextObjective


def train_losses(
    objective: PretextObjective,
    dialogues: list,
    steps: int = 40,
    batch_size: int = 16,
    n_batches: int = 4,
    arch: str = "bert",
    lr: float = 2e-3,
    metric: str = "loss",
) -> list[float]:
    """`metric` per step when cycling over a few fixed batches (memorising them must work)."""
    batches = list(objective.batches(iter(dialogues), batch_size, np.random.default_rng(0)))[:n_batches]
    assert batches, "the objective made no batches"
    torch.manual_seed(0)
    model = build_pretext_model(ModelConfig(preset="tiny", arch=arch), objective.tokenizer, [objective])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    values = []
    for step in range(steps):
        loss, metrics = model(batches[step % len(batches)], objective)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        values.append(metrics[metric])
    return values


def mean(values: list[float]) -> float:
    return float(np.mean(values))
