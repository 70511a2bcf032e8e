"""Several objectives trained together: one step = one sub-batch of each, loss = weighted sum.

Configured as `ObjectiveConfig(name="multitask", tasks=[ObjectiveConfig(name="mlm", weight=1.0),
ObjectiveConfig(name="contrastive", weight=0.5)])`, or in YAML a `tasks:` list under the objective.
Every sub-objective reads the same dialogue stream. They consume dialogues at different rates
(MLM packs a dialogue into one row, contrastive makes one example per turn), so the stream is
shared through a bounded buffer: the epoch ends when any sub-objective runs out, and a slow one
skips dialogues rather than holding the corpus in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from convssl.pretext.base import (
    Batch,
    DialogueLike,
    ObjectiveConfig,
    ObjectiveError,
    PretextObjective,
    build_objective,
    register_objective,
)
from convssl.pretext.batching import BoundedTee

if TYPE_CHECKING:
    from convssl.models.pretext_model import PretextModel

MAX_LAG = 4096  # dialogues a slow sub-objective may fall behind


@register_objective
class MultiTask(PretextObjective):
    name = "multitask"
    needs = "any"
    settings = ("tasks",)

    def __init__(self, config: ObjectiveConfig, tokenizer: Any) -> None:
        super().__init__(config, tokenizer)
        if not config.tasks:
            raise ObjectiveError("multitask: `tasks` must list at least one objective config")
        names = [t.name for t in config.tasks]
        if "multitask" in names:
            raise ObjectiveError("multitask: tasks cannot themselves be multitask")
        if len(set(names)) != len(names):
            raise ObjectiveError(f"multitask: each objective may appear once, got {names}")
        if any(t.weight < 0 for t in config.tasks) or not any(t.weight > 0 for t in config.tasks):
            raise ObjectiveError("multitask: weights must be >= 0 and at least one > 0")
        self.tasks: list[PretextObjective] = [build_objective(t, tokenizer) for t in config.tasks]

    def batches(
        self, dialogues: Iterator[DialogueLike], batch_size: int, rng: np.random.Generator
    ) -> Iterator[Batch]:
        tee = BoundedTee(dialogues, len(self.tasks), MAX_LAG)
        rngs = rng.spawn(len(self.tasks))
        streams = [
            task.batches(tee.consumer(i), batch_size, r) for i, (task, r) in enumerate(zip(self.tasks, rngs))
        ]
        for parts in zip(*streams):
            yield Batch(
                {}, real_tokens=sum(p.real_tokens for p in parts), objective=self.name, parts=list(parts)
            )

    def add_heads(self, model: PretextModel) -> None:
        for task in self.tasks:
            task.check_model(model)
            task.add_heads(model)

    def check_model(self, model: PretextModel) -> None:
        for task in self.tasks:
            task.check_model(model)

    def loss(self, model: PretextModel, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        total: torch.Tensor | None = None
        metrics: dict[str, float] = {}
        for task, part in zip(self.tasks, batch.parts):
            loss, sub = task.loss(model, part)
            weighted = loss * task.config.weight
            total = weighted if total is None else total + weighted
            metrics.update({f"{task.name}/{k}": v for k, v in sub.items()})
        assert total is not None
        metrics["loss"] = float(total.detach())
        return total, metrics
