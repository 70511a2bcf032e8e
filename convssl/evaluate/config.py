"""Settings of `convssl evaluate`: which models, which tasks, which modes, how many seeds.

One dataclass so that a report can be reproduced exactly from the `config.yaml` written beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args

from convssl.config import PositiveInt, Range, check_values

IntentMode = Literal["probe", "knn", "centroid", "kshot", "finetune", "setfit", "finetune_kshot"]
OOSScore = Literal["max_softmax", "mahalanobis", "centroid_cosine"]
INTENT_MODES = get_args(IntentMode)
OOS_SCORES = get_args(OOSScore)


@dataclass
class IntentSettings:
    """Intent classification on frozen embeddings (and optionally full fine-tuning)."""

    modes: list[IntentMode] = field(default_factory=lambda: ["probe", "knn", "centroid", "kshot"])
    """Intent modes: probe, knn, centroid, kshot (frozen encoder); finetune, setfit, finetune_kshot (trained)."""
    C: float = 10.0
    """inverse L2 strength of the logistic-regression probe"""
    max_iter: int = 1000
    """Iterations of the logistic-regression solver."""
    knn_k: int = 10
    """Neighbours of the kNN classifier."""
    kshot: list[PositiveInt] = field(default_factory=lambda: [1, 5, 10, 30])
    """Examples per class of the frozen k-shot probes."""
    seeds: PositiveInt = 3
    """k-shot repeats; each samples k examples per class with its own seed"""
    few_shot: list[PositiveInt] = field(default_factory=lambda: [5, 10])
    """k of the few-shot modes that train the encoder (setfit, finetune_kshot): each is one training run per seed, on the same k-shot draws as the frozen `kshot` probes"""
    top_confusions: int = 10
    """Most confused intent pairs listed in the report."""
    finetune: dict[str, Any] = field(default_factory=dict)
    """FinetuneConfig fields for the training modes"""


@dataclass
class OOSSettings:
    """Out-of-scope detection: rejection scores and how their threshold is picked on validation data."""

    scores: list[OOSScore] = field(default_factory=lambda: list(OOS_SCORES))
    """Out-of-scope scores to compare (max_softmax, energy, mahalanobis, ...)."""
    oos_label: str = "oos"
    """The out-of-scope label of the data (CLINC150: oos)."""
    calibrate: Literal["balanced", "f1"] = "balanced"
    """balanced: maximise (in-scope accuracy + OOS recall) / 2 on val; f1: maximise OOS F1 on val."""
    ece_bins: int = 15
    """Bins of the expected calibration error."""
    train_on_oos: bool = False
    """CLINC150 "oos_train": treat it as one more class when true"""


@dataclass
class ResponseSettings:
    """Response selection: rank the true next turn of each context among candidates of its batch."""

    context_turns: int = 3
    """context = the last k turns before the response, joined"""
    candidates: Annotated[int, Range(">= 2")] = 100
    """true response + (candidates - 1) others of the same batch"""
    max_pairs: int = 2000
    """pairs sampled (seeded) from the held-out dialogues; 0 = all"""


@dataclass
class PerplexitySettings:
    """Perplexity of causal language models on held-out dialogues, cut into windows."""

    max_length: int = 512
    """tokens per window"""
    max_dialogues: int = 500
    """0 = all"""
    batch_size: int = 8
    """Windows per forward pass."""


@dataclass
class EvaluateConfig:
    models: list[str] = field(default_factory=list)
    """Models to evaluate: model folders, pretraining run folders or installed model packages (--model)."""
    tasks: list[str] = field(default_factory=list)
    """Tasks as KIND:PATH: intent:PATH, oos:PATH, response:PATH or ppl:PATH (--task)."""
    baselines: list[str] = field(default_factory=list)
    """extra model folders shown as baselines"""
    random_baseline: bool = True
    """same architecture as each model, randomly initialised (no SSL)"""
    tfidf_baseline: bool = True
    """Show a TF-IDF + logistic-regression baseline (--no-tfidf turns it off)."""
    out: str = "runs/evaluate"
    """Output folder of the report (--out)."""
    pooling: Literal["mean", "cls"] = "mean"
    """How token states become one embedding: mean or cls (--pooling)."""
    normalize: bool = True
    """L2-normalise embeddings before probes / kNN / centroids"""
    max_length: int = 128
    """Tokens per text when embedding."""
    batch_size: int = 64
    """Texts per forward pass when embedding."""
    bf16: bool = False
    """bf16 autocast for embedding (faster on CPUs with AVX-512 BF16)"""
    seed: int = 0
    """Seeds subsamples, k-shot draws and the random-init baselines."""
    cache_dir: str | None = None
    """on-disk embedding cache shared by reruns (keyed by weights and settings)"""
    max_train: int | None = None
    """seeded, stratified subsample of train for quick runs"""
    max_test: int | None = None
    """Seeded, stratified subsample of validation and test for quick runs (--max-test)."""
    intent: IntentSettings = field(default_factory=IntentSettings)
    oos: OOSSettings = field(default_factory=OOSSettings)
    response: ResponseSettings = field(default_factory=ResponseSettings)
    perplexity: PerplexitySettings = field(default_factory=PerplexitySettings)
    plots: bool = True
    """Write plots beside the report (--no-plots turns them off)."""

    def validate(self) -> None:
        check_values(self)  # ranges and choices are on the fields; a config built in code is checked here
