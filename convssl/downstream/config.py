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
class PoolConfig:
    """`method: pool`: the few-shot recipe that learns from an unlabeled pool (docs/ssl_recipe.md).

    The encoder's lower layers stay frozen and are run once per text (`top_layers` are tuned over
    their cached output). A teacher (logistic regression on the shots' embeddings, optionally after
    `teacher_epochs` of tuning on the shots) labels the pool; a pool utterance is kept only when
    label propagation over the pool's kNN graph (`knn` neighbours) agrees (`selection: agreement`)
    or, as in plain self-training, when it is among the teacher's most confident `confident_fraction`
    of its intent (`selection: confident`). A student (the original top layers) is tuned on the
    shots plus the kept pool utterances for `student_epochs`, then a logistic-regression head is
    fitted on its embeddings; `rounds` repeats labelling and student training with the student
    as the next teacher. With no pool only the teacher is trained: the same recipe without the pool.
    """

    top_layers: int = 2
    teacher_epochs: int = 0
    student_epochs: int = 2
    rounds: int = 1
    selection: Literal["agreement", "confident"] = "agreement"
    confident_fraction: float = 0.8
    knn: int = 10
    lr: float = 5.0e-5
    batch_size: int = 64
    min_steps: int = 50
    scale: float = 20.0
    head_c: float = 10.0
    max_pool: int = 30000


@dataclass
class FinetuneConfig:
    """`method: full` trains the whole encoder with a classification head.

    `head: pooled` (default) puts a linear head on the L2-normalised mean-pooled embedding and
    starts it from a logistic-regression probe of the frozen encoder (C = `probe_c`), then tunes
    everything (LP-FT, Kumar et al. 2022): the encoder starts from a good solution instead of
    being pulled around by a random head, which on BANKING77 with all-MiniLM-L6-v2 took test
    accuracy from the frozen probe's 92.9 to 93.4 after two epochs, where a 5-epoch fine-tune of
    a randomly initialised `[CLS]` head stayed below the probe. `head: sequence_classification`
    is the Hugging Face `AutoModelForSequenceClassification` recipe (pooler + random head).
    `head_lr` defaults to 10 x `lr`.
    """

    method: Literal["full", "setfit", "pool"] = "full"
    head: Literal["pooled", "sequence_classification"] = "pooled"
    probe_c: float = 10.0
    epochs: int = 10
    lr: float = 5e-5
    head_lr: float | None = None
    batch_size: int = 32
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    label_smoothing: float = 0.1
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
    pool: PoolConfig = field(default_factory=PoolConfig)
