"""The typed configuration of a pretraining run (`convssl pretrain --config FILE key=value ...`).

Everything that changes the result of a run lives here, so the resolved `RUN/config.yaml` is
enough to reproduce it and `--resume` can check that a run is continued with the same settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from convssl.config import ConfigError, NonNegativeInt, PositiveFloat, PositiveInt, check_values, require
from convssl.models.presets import ModelConfig, resolved_sizes
from convssl.models.presets import validate as validate_model
from convssl.pretext.base import ObjectiveConfig


@dataclass
class ProbeConfig:
    """A quick linear probe: logistic regression on mean-pooled embeddings of a labelled set.

    `path` is a JSONL (`{"text", "label"}` per line, optional `"split"`) or CSV (`text,label`
    header) file. Early stopping watches the probe accuracy, not the pretext loss, because a
    falling pretext loss does not mean the representation still improves for downstream use.
    """

    path: str | None = None
    """Labelled probe set: JSONL {text, label[, split]} or CSV text,label; empty: no probe."""
    every: int = 0
    """steps between probes (at evaluation steps); 0: at every evaluation"""
    max_examples: int = 2000
    """Examples of the probe set used at most."""
    test_fraction: float = 0.3
    """Share of the probe set held out to score the probe."""
    max_length: int = 64
    """Tokens per probe text."""
    patience: int = 0
    """evaluations without improvement before stopping; 0: never stop early"""


@dataclass
class PretrainConfig:
    data: str = ""
    """a folder written by `convssl prepare` (tokenizer/ + shards/)"""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Which network to pretrain."""
    objectives: list[ObjectiveConfig] = field(default_factory=lambda: [ObjectiveConfig(name="mlm")])
    """Pretext objectives; each step draws one batch per objective and optimises sum(weight x loss)."""
    batch_size: PositiveInt = 32
    """global examples per micro-batch and objective, split across ranks"""
    grad_accum: PositiveInt = 1
    """micro-batches per optimizer step"""
    max_steps: PositiveInt = 1000
    """Optimizer steps."""
    lr: PositiveFloat = 5e-4
    """Peak AdamW learning rate."""
    weight_decay: float = 0.01
    """Decoupled weight decay on weight matrices (not on biases and norms)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    """AdamW betas (two numbers)."""
    warmup_steps: NonNegativeInt = 100
    """Steps of linear learning-rate warm-up."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """cosine | linear | constant"""
    clip_norm: float = 1.0
    """0 disables clipping"""
    bf16: bool = True
    """bf16 autocast on CPU and GPU."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N"""
    log_every: PositiveInt = 10
    """Steps per metrics.jsonl record."""
    eval_every: int = 200
    """Steps between validation evaluations."""
    eval_batches: int = 20
    """Validation batches per evaluation."""
    checkpoint_every: int = 500
    """Steps between checkpoints."""
    keep_last: PositiveInt = 2
    """Checkpoints kept (the best is kept too)."""
    seed: int = 0
    """Seeds data order, masks, initialisation and dropout."""
    threads: int = 0
    """torch.set_num_threads when > 0"""
    data_parallel: Literal["split", "shard"] = "split"
    """split: every rank builds the global batch and keeps its slice; shard: ShardReader(rank, world_size)"""
    prefetch: int = 2
    """batches built ahead in a background thread (0: build in the loop)"""
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    """Linear probe on a labelled set during pretraining (early stopping)."""
    tensorboard: bool = True
    """Write TensorBoard logs to RUN/tb."""
    progress: bool = True
    """Show a progress bar."""
    plot: bool = True
    """Write the loss plot RUN/loss.png."""

    def validate(self) -> None:
        """Fail before any work with a message naming the field."""
        check_values(self)  # ranges and choices are on the fields; a config built in code is checked here
        require([
            (bool(self.data), "data: the prepared data folder is required (--data DIR or data=DIR)"),
            (len(self.betas) == 2, f"betas: needs two numbers, got {self.betas}"),
            (len(self.objectives) > 0, "objectives: at least one objective is required"),
        ])
        validate_model(self.model)
        if not self.model.init_from:
            resolved_sizes(self.model)  # the preset exists and its sizes fit together
        names = [o.name for o in self.objectives]
        if len(set(names)) != len(names):
            raise ConfigError(f"objectives: each objective may appear once, got {names}")
