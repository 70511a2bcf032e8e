"""A deployable intent classifier: one folder in, intents (or out-of-scope) out.

Serving is latency-bound, so the tokenizer and model are loaded once and `predict` does a single
batched forward pass. Two folder kinds share one loader so that a few-shot SetFit model and a
fully fine-tuned model can be swapped behind the same API:

* ``"kind": "sequence_classification"`` (default): a Hugging Face folder that
  ``AutoModelForSequenceClassification.from_pretrained`` opens; labels from ``config.id2label``.
* ``"kind": "pooled"`` (full fine-tuning, LP-FT) or ``"setfit"`` (few-shot): a sentence-encoder
  folder (``AutoModel``) plus ``head.safetensors`` (``weight`` [C, D], ``bias`` [C]) applied to
  pooled, L2-normalised embeddings; labels in ``convssl_intent.json``.

Both carry ``convssl_intent.json`` with the out-of-scope rule: a score per text where higher means
"more in scope" and a threshold; a text whose score is below the threshold is out of scope.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convssl.models.encoder import pool
from convssl.models.reference import check_model_folder

META_FILE = "convssl_intent.json"
HEAD_FILE = "head.safetensors"
OOS_STATS_FILE = "oos_stats.safetensors"
MEMORY_FILE = "memory.safetensors"
SCORES = ("max_softmax", "energy", "mahalanobis")
KINDS = ("sequence_classification", "pooled", "setfit")
POOLED_KINDS = ("pooled", "setfit")  # encoder + linear head on the normalised pooled embedding


@dataclass
class IntentPrediction:
    intent: str
    confidence: float
    top: list[tuple[str, float]]
    out_of_scope: bool


@dataclass
class IntentMeta:
    """The contents of ``convssl_intent.json``."""

    kind: str = "sequence_classification"
    oos_label: str = "oos"
    score: str = "max_softmax"
    threshold: float | None = None
    max_length: int = 64
    pooling: str = "mean"
    labels: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "kind": self.kind,
            "oos_label": self.oos_label,
            "score": self.score,
            "threshold": self.threshold,
            "max_length": self.max_length,
            "pooling": self.pooling,
            "labels": self.labels,
        }
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> IntentMeta:
        known = {"kind", "oos_label", "score", "threshold", "max_length", "pooling", "labels"}
        meta = cls(**{k: v for k, v in data.items() if k in known})
        meta.extra = {k: v for k, v in data.items() if k not in known}
        if meta.kind not in KINDS:
            raise ValueError(f"{where}: kind {meta.kind!r} is not one of {list(KINDS)}")
        if meta.score not in SCORES:
            raise ValueError(f"{where}: score {meta.score!r} is not one of {list(SCORES)}")
        if meta.threshold is not None:
            meta.threshold = float(meta.threshold)
        return meta


class IntentClassifier:
    """Texts in, intents out; rejects texts whose in-scope score falls below the threshold."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        meta: IntentMeta,
        head: tuple[torch.Tensor, torch.Tensor] | None = None,
        oos_stats: dict[str, torch.Tensor] | None = None,
        memory: ExampleMemory | None = None,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.meta = meta
        self.head = head
        self.oos_stats = oos_stats
        self.memory = memory
        if meta.kind == "sequence_classification" and not meta.labels:
            id2label = model.config.id2label
            meta.labels = [str(id2label[i]) for i in range(len(id2label))]
        if meta.kind in POOLED_KINDS and head is None:
            raise ValueError(f"a {meta.kind} classifier needs its linear head (weight, bias)")
        if memory is not None and (meta.kind not in POOLED_KINDS or meta.score != "max_softmax"):
            raise ValueError("an example memory needs a pooled classifier with the max_softmax score")

    # ----------------------------------------------------------------- properties
    @property
    def labels(self) -> list[str]:
        return list(self.meta.labels)

    @property
    def oos_label(self) -> str:
        return self.meta.oos_label

    @property
    def threshold(self) -> float | None:
        return self.meta.threshold

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        self.meta.threshold = None if value is None else float(value)

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path) -> IntentClassifier:
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

        folder = check_model_folder(path)
        meta_path = folder / META_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"{folder} is not a convssl intent classifier: {META_FILE} is missing")
        try:
            meta = IntentMeta.from_dict(json.loads(meta_path.read_text(encoding="utf-8")), str(meta_path))
        except (json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"{meta_path}: not a valid intent classifier description: {exc}") from exc
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        head = None
        if meta.kind in POOLED_KINDS:
            model = AutoModel.from_pretrained(str(folder), local_files_only=True)
            tensors = load_file(str(folder / HEAD_FILE))
            head = (tensors["weight"].float(), tensors["bias"].float())
        else:
            model = AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True)
        stats = None
        if (folder / OOS_STATS_FILE).exists():
            stats = {k: v.float() for k, v in load_file(str(folder / OOS_STATS_FILE)).items()}
        elif meta.score == "mahalanobis":
            raise ValueError(f"{folder}: score 'mahalanobis' needs {OOS_STATS_FILE} (class means and precision)")
        memory = ExampleMemory.load(folder / MEMORY_FILE) if (folder / MEMORY_FILE).exists() else None
        return cls(model, tokenizer, meta, head=head, oos_stats=stats, memory=memory)

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(folder), safe_serialization=True)
        self.tokenizer.save_pretrained(str(folder))
        if self.head is not None:
            save_file({"weight": self.head[0].contiguous(), "bias": self.head[1].contiguous()},
                      str(folder / HEAD_FILE))
        if self.oos_stats is not None:
            save_file({k: v.contiguous() for k, v in self.oos_stats.items()}, str(folder / OOS_STATS_FILE))
        if self.memory is not None:
            self.memory.save(folder / MEMORY_FILE)
        (folder / META_FILE).write_text(json.dumps(self.meta.to_dict(), indent=2, ensure_ascii=False),
                                        encoding="utf-8")
        return folder

    # ----------------------------------------------------------------- inference
    def _tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.meta.max_length, return_tensors="pt"
        )

    def _forward(self, texts: Sequence[str], want_features: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits [N, C] and (if asked) the pooled features the OOS statistics live on."""
        batch = self._tokenize(texts)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if "token_type_ids" in batch:
            inputs["token_type_ids"] = batch["token_type_ids"]
        if self.meta.kind in POOLED_KINDS:
            hidden = self.model(**inputs).last_hidden_state
            emb = pool(hidden, batch["attention_mask"], self.meta.pooling).float()
            emb = torch.nn.functional.normalize(emb, dim=-1)
            return self.head_logits(emb), emb
        out = self.model(**inputs, output_hidden_states=want_features)
        features = None
        if want_features:
            features = pool(out.hidden_states[-1], batch["attention_mask"], self.meta.pooling).float()
        return out.logits.float(), features

    def head_logits(self, emb: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """The head's logits on L2-normalised embeddings; with an example memory, the log of its
        mixture with the memory's neighbour vote (so that softmax gives the mixed probabilities).
        `exclude`: per row, a memory row that is the text itself (scoring the memory's own texts)."""
        weight, bias = self.head
        logits = emb @ weight.T + bias
        if self.memory is None:
            return logits
        return self.memory.mix(logits, emb, exclude)

    def _length_sorted_batches(self, texts: Sequence[str], batch_size: int, want_features: bool
                               ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor | None]]:
        """(row indices, logits, features) per batch of texts of similar length (less padding)."""
        n = len(texts)
        order = np.argsort([len(t) for t in texts], kind="stable") if n > batch_size else np.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield idx, *self._forward([texts[i] for i in idx], want_features)

    @torch.inference_mode()
    def logits(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Class logits alone: what closed-set accuracy needs, also before the out-of-scope
        statistics exist (a validation pass during training)."""
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        for idx, batch_logits, _ in self._length_sorted_batches(texts, batch_size, False):
            out[idx] = batch_logits.numpy()
        return out

    @torch.inference_mode()
    def logits_and_features(self, texts: Sequence[str], batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits and the pooled features (what the Mahalanobis statistics and an example
        memory are fitted on) of every text, in the texts' order."""
        logits = torch.zeros((len(texts), len(self.labels)))
        features = torch.zeros((len(texts), int(self.model.config.hidden_size)))
        for idx, batch_logits, batch_features in self._length_sorted_batches(texts, batch_size, True):
            rows = torch.from_numpy(idx)
            logits[rows], features[rows] = batch_logits.float(), batch_features.float()
        return logits, features

    @torch.inference_mode()
    def logits_and_scores(self, texts: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Class logits and the in-scope score of each text (higher = more in scope)."""
        logits = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        scores = np.zeros(len(texts), dtype=np.float32)
        want_features = self.meta.score == "mahalanobis"
        for idx, batch_logits, features in self._length_sorted_batches(texts, batch_size, want_features):
            logits[idx] = batch_logits.numpy()
            scores[idx] = self._score(batch_logits, features).numpy()
        return logits, scores

    def _score(self, logits: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        return in_scope_score(self.meta.score, logits, features, self.oos_stats)

    def predict(self, texts: Sequence[str], top_k: int = 3, batch_size: int = 64) -> list[IntentPrediction]:
        if isinstance(texts, str):
            raise TypeError("predict takes a list of texts, not one string")
        logits, scores = self.logits_and_scores(texts, batch_size=batch_size)
        return self.decide(logits, scores, top_k=top_k)

    def decide(self, logits: np.ndarray, scores: np.ndarray, top_k: int = 3) -> list[IntentPrediction]:
        """Turn logits and scores into predictions, applying the threshold."""
        if len(logits) == 0:
            return []
        probs = softmax(logits)
        k = max(1, min(top_k, probs.shape[1]))
        top_idx = np.argsort(-probs, axis=1)[:, :k]
        labels = self.labels
        threshold = self.meta.threshold
        out = []
        for row, idx in enumerate(top_idx):
            top = [(labels[j], float(probs[row, j])) for j in idx]
            rejected = threshold is not None and float(scores[row]) < threshold
            intent = self.oos_label if rejected else top[0][0]
            out.append(IntentPrediction(intent=intent, confidence=top[0][1], top=top, out_of_scope=rejected))
        return out


def read_labels(path: str | Path) -> list[str]:
    """The intents of a classifier folder without loading its weights (for checking inputs early)."""
    folder = Path(path)
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8")) if (folder / META_FILE).exists() else {}
    if meta.get("labels"):
        return [str(label) for label in meta["labels"]]
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    id2label = config.get("id2label") or {}
    return [str(id2label[k]) for k in sorted(id2label, key=int)]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def in_scope_score(
    score: str,
    logits: torch.Tensor,
    features: torch.Tensor | None = None,
    stats: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Higher = more in scope. max_softmax: top probability; energy: logsumexp of the logits;
    mahalanobis: minus the smallest class-conditional Mahalanobis distance (Lee et al. 2018),
    which uses the feature space rather than the head and so catches confident mistakes."""
    if score == "max_softmax":
        return torch.softmax(logits, dim=-1).max(dim=-1).values
    if score == "energy":
        return torch.logsumexp(logits, dim=-1)
    if score == "mahalanobis":
        if features is None or stats is None:
            raise ValueError("mahalanobis score needs features and class statistics")
        diff = features.unsqueeze(1) - stats["means"].unsqueeze(0)  # [N, C, D]
        dist = torch.einsum("ncd,de,nce->nc", diff, stats["precision"], diff)
        return -dist.min(dim=-1).values
    raise ValueError(f"unknown score {score!r}; known: {list(SCORES)}")


def fit_mahalanobis(features: np.ndarray, label_ids: np.ndarray, num_labels: int,
                    shrinkage: float = 1e-3) -> dict[str, torch.Tensor]:
    """Class means and a shared (tied) precision matrix from training features."""
    feats = features.astype(np.float64)
    dim = feats.shape[1]
    means = np.zeros((num_labels, dim))
    for c in range(num_labels):
        rows = feats[label_ids == c]
        means[c] = rows.mean(axis=0) if len(rows) else feats.mean(axis=0)
    centred = feats - means[label_ids]
    cov = centred.T @ centred / max(len(feats), 1)
    cov += shrinkage * (np.trace(cov) / dim + 1e-12) * np.eye(dim)
    precision = np.linalg.pinv(cov)
    return {"means": torch.from_numpy(means.astype(np.float32)),
            "precision": torch.from_numpy(precision.astype(np.float32))}


class ExampleMemory:
    """Labelled embeddings kept beside the head: a text's class probabilities mix the head's with
    a vote of its `k` nearest memory rows (cosine similarity, softmax-weighted at `temperature`).

    The pool recipe keeps its student's embeddings of the shots and of the pseudo-labelled pool
    utterances: the vote reads the pool's local structure, which a linear head smooths over.
    """

    def __init__(self, embeddings: torch.Tensor, labels: torch.Tensor, *, k: int = 10, weight: float = 0.3,
                 temperature: float = 0.05):
        if len(embeddings) != len(labels) or len(embeddings) == 0:
            raise ValueError("an example memory needs as many labels as embeddings, and at least one")
        if k < 1 or not 0 < weight <= 1 or temperature <= 0:
            raise ValueError("example memory: k >= 1, weight in (0, 1] and temperature > 0")
        self.embeddings = embeddings.float()
        self.labels = labels.long()
        self.k, self.weight, self.temperature = k, weight, temperature

    def settings(self) -> dict[str, float]:
        return {"memory_k": self.k, "memory_weight": self.weight, "memory_temperature": self.temperature}

    def vote(self, emb: torch.Tensor, num_labels: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """[N, C] class probabilities from each row's nearest memory rows."""
        sims = emb.float() @ self.embeddings.T
        if exclude is not None:  # a memory text is not its own neighbour
            rows = torch.nonzero(exclude >= 0).squeeze(1)
            sims[rows, exclude[rows]] = -float("inf")
        k = min(self.k, sims.shape[1] - (1 if exclude is not None else 0))
        top, idx = sims.topk(max(k, 1), dim=1)
        weights = torch.softmax(top / self.temperature, dim=1)
        votes = torch.zeros(len(emb), num_labels, dtype=weights.dtype)
        return votes.scatter_add_(1, self.labels[idx], weights)

    def mix(self, logits: torch.Tensor, emb: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        probs = (1 - self.weight) * torch.softmax(logits.float(), dim=-1)
        probs = probs + self.weight * self.vote(emb, logits.shape[-1], exclude)
        return torch.log(probs.clamp_min(1e-12))

    def save(self, path: Path) -> None:
        """The rows and, as the file's metadata, the settings: one file says how to use it."""
        from safetensors.torch import save_file

        save_file({"embeddings": self.embeddings.contiguous(), "labels": self.labels.contiguous()}, str(path),
                  metadata={key: str(value) for key, value in self.settings().items()})

    @classmethod
    def load(cls, path: Path) -> ExampleMemory:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            settings = handle.metadata() or {}
            embeddings, labels = handle.get_tensor("embeddings"), handle.get_tensor("labels")
        return cls(embeddings, labels, k=int(settings.get("memory_k", 10)),
                   weight=float(settings.get("memory_weight", 0.3)),
                   temperature=float(settings.get("memory_temperature", 0.05)))
