"""Settings of `convssl finetune`: one typed config for full fine-tuning and the SetFit recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class SetFitConfig:
    """Few-shot recipe (Tunstall et al. 2022): contrastive tuning of the encoder, then a linear head.

    Each contrastive step draws `batch_size` distinct labels and two examples of each (anchor and
    positive); the other labels' positives in the batch are the negatives (an in-batch
    MultipleNegativesRanking loss with no false negatives). `iterations` passes over the data.
    """

    iterations: int = 10
    batch_size: int = 32
    lr: float = 2e-5
    scale: float = 20.0
    head_c: float = 10.0
    normalize: bool = True


@dataclass
class FinetuneConfig:
    method: Literal["full", "setfit"] = "full"
    epochs: int = 10
    lr: float = 5e-5
    head_lr: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    label_smoothing: float = 0.0
    class_weights: bool = False
    patience: int = 3
    val_fraction: float = 0.1
    max_length: int = 64
    seed: int = 0
    bf16: bool = True
    threads: int = 0
    pooling: Literal["mean", "cls"] = "mean"
    oos_label: str = "oos"
    oos_score: Literal["max_softmax", "energy", "mahalanobis"] = "max_softmax"
    calibration: Literal["balanced", "joint_accuracy"] = "balanced"
    keep_fraction: float = 0.95
    k_shot: int = 0
    setfit: SetFitConfig = field(default_factory=SetFitConfig)
