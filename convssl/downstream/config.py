"""Settings of `convssl finetune`: one typed config for full fine-tuning and the SetFit recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from convssl.config import NonNegativeInt, PositiveFloat, PositiveInt, Range


@dataclass
class SetFitConfig:
    """Few-shot recipe (Tunstall et al. 2022): contrastive tuning of the encoder, then a linear head.

    Each contrastive step draws `batch_size` distinct labels and two examples of each (anchor and
    positive); the other labels' positives in the batch are the negatives (an in-batch
    MultipleNegativesRanking loss with no false negatives). `iterations` passes over the data.
    """

    iterations: NonNegativeInt = 10
    """Passes of contrastive pairs over the data (0 still runs one step)."""
    batch_size: Annotated[int, Range(">= 2")] = 32
    """Distinct intents per contrastive batch."""
    lr: float = 2e-5
    """Learning rate of the contrastive tuning."""
    scale: float = 20.0
    """Similarity scale of the in-batch softmax (the inverse temperature)."""
    head_c: float = 10.0
    """Inverse L2 strength of the logistic-regression head."""
    normalize: bool = True
    """L2-normalise embeddings before the head."""


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
    With a pool, the saved classifier also keeps an example memory (`memory_k`): its probabilities mix
    the head's with a vote of the nearest shots and kept pool utterances.
    """

    top_layers: PositiveInt = 2
    """Top encoder layers tuned; the lower ones stay frozen and run once per text."""
    teacher_epochs: int = 0
    """Epochs of tuning the teacher on the shots before it labels the pool (0: a probe only)."""
    student_epochs: int = 2
    """Epochs of tuning the student on the shots plus the kept pool utterances."""
    rounds: NonNegativeInt = 2
    """Rounds of labelling and student training (the student teaches the next round)."""
    selection: Literal["agreement", "confident"] = "agreement"
    """Which pool utterances are kept: agreement (label propagation agrees) or confident."""
    confident_fraction: Annotated[float, Range("(0, 1]")] = 0.8
    """selection confident: share of each intent's most confident pool utterances kept."""
    knn: PositiveInt = 10
    """Neighbours of the pool's kNN graph for label propagation."""
    token_cutoff: Annotated[float, Range("[0, 1)")] = 0.1
    """Share of each text's tokens hidden from the tuned layers in a training step (cutoff noise)."""
    lr: float = 5.0e-5
    """Learning rate of the teacher and student tuning."""
    batch_size: int = 64
    """Examples per tuning batch."""
    min_steps: int = 50
    """Fewest tuning steps of a teacher or student, however few the shots (epochs x batches otherwise)."""
    scale: float = 20.0
    """Scale of the similarities (logits) in the tuning loss (an inverse temperature)."""
    head_c: float = 10.0
    """Inverse L2 strength of the logistic-regression head."""
    max_pool: Annotated[int, Range(">= 2")] = 30000
    """Pool utterances used at most (a seeded sample, an equal share per --unlabeled source)."""
    memory_k: NonNegativeInt = 10
    """Nearest examples whose vote the saved classifier mixes with its head (0: no memory); the memory
    holds the last student's embeddings of the shots and the kept pool utterances."""
    memory_weight: Annotated[float, Range("(0, 1]")] = 0.3
    """Share of the memory's vote in the class probabilities (the head has the rest)."""
    memory_temperature: Annotated[float, Range("> 0")] = 0.05
    """Temperature of the softmax over the nearest examples' cosine similarities in the vote."""


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
    """full: train the encoder with a classification head; setfit: contrastive tuning, then a logistic-regression
    head; pool: the few-shot recipe that also learns from an unlabeled pool (docs/ssl_recipe.md)."""
    head: Literal["pooled", "sequence_classification"] = "pooled"
    """pooled: linear head on the normalised pooled embedding, started from a probe (LP-FT); sequence_classification: the Hugging Face recipe."""
    probe_c: float = 10.0
    """Inverse L2 strength of the probe that starts the pooled head."""
    epochs: PositiveInt = 10
    """Passes over the training examples."""
    lr: PositiveFloat = 5e-5
    """AdamW learning rate of the encoder."""
    head_lr: PositiveFloat | None = None
    """Learning rate of the new head; empty means 10 x lr."""
    batch_size: PositiveInt = 32
    """Examples per batch (length-bucketed)."""
    weight_decay: float = 0.01
    """AdamW weight decay (not on biases and norms)."""
    warmup_ratio: float = 0.1
    """Share of the steps with a linear learning-rate warm-up."""
    label_smoothing: Annotated[float, Range("[0, 1)")] = 0.1
    """Label smoothing of the cross-entropy."""
    class_weights: bool = False
    """Inverse-frequency loss weights (mean 1), for imbalanced sets."""
    outlier_weight: Annotated[float, Range(">= 0")] = 0.5
    """Outlier exposure (method full): weight of the loss that pushes out-of-scope train texts and --outliers logs toward a uniform prediction; 0 = off."""
    memory_weights: list[Annotated[float, Range("(0, 1]")]] = field(default_factory=lambda: [0.1, 0.2, 0.3])
    """Method full, pooled head: example-memory weights tried on validation after training (a vote of the 10 nearest training examples mixed with the head); the most accurate, or none, is kept; [] = off."""
    patience: NonNegativeInt = 3
    """Stop after this many epochs without better validation accuracy and keep the best epoch (0: never)."""
    val_fraction: Annotated[float, Range("[0, 1)")] = 0.1
    """Share of each intent carved from train as validation when the data has none."""
    max_length: Annotated[int, Range("> 1")] = 64
    """Tokens per text."""
    seed: int = 0
    """Seeds the k-shot sample, the validation split, initialisation and batch order."""
    bf16: bool | Literal["auto"] = "auto"
    """bf16 autocast: true, false, or auto (bf16 where this CPU's bf16 matmuls are >= 1.25x fp32, measured)."""
    threads: int = 0
    """torch threads; 0 keeps torch's default."""
    pooling: Literal["mean", "cls"] = "mean"
    """Pooling of the pooled head, SetFit embeddings and Mahalanobis features: mean or cls."""
    oos_label: str = "oos"
    """The out-of-scope label of the data (CLINC150: oos)."""
    oos_score: Literal["max_softmax", "energy", "mahalanobis"] = "max_softmax"
    """In-scope score the threshold applies to: max_softmax, energy or mahalanobis."""
    calibration: Literal["balanced", "joint_accuracy", "oos_recall"] = "balanced"
    """How the threshold is chosen on validation out-of-scope texts: balanced, joint_accuracy, or oos_recall (best in-scope accuracy that rejects oos_recall_target of them)."""
    oos_recall_target: Annotated[float, Range("(0, 1]")] = 0.9
    """With calibration oos_recall: the share of validation out-of-scope texts the threshold must reject."""
    keep_fraction: Annotated[float, Range("(0, 1]")] = 0.95
    """Without out-of-scope validation examples: share of in-scope validation texts to accept."""
    k_shot: NonNegativeInt = 0
    """Train on k examples per intent, drawn with the seed; 0 uses all."""
    setfit: SetFitConfig = field(default_factory=SetFitConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
