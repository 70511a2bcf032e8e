"""Sentence embeddings from any local Hugging Face encoder folder.

Evaluation (probes, kNN, response selection) and serving (response bank) both need the same
thing: a frozen encoder turned into one vector per text, with the pooling the model was trained
with. Keeping it in one place keeps their numbers comparable.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from convssl.models.reference import resolve_model_path

Pooling = Literal["mean", "cls"]


WEIGHT_SUFFIXES = {".json", ".safetensors", ".bin", ".txt", ".model"}
PROMPTS_FILE = "config_sentence_transformers.json"  # sentence-transformers keeps its prompts here


def folder_fingerprint(path: str | Path | None) -> list[Any]:
    """The model folder's resolved path with the name, size and mtime of its weight, config and
    vocabulary files: it changes when the folder is retrained in place, so caches keyed by it
    (embeddings, finished evaluation runs) never serve another model's results."""
    if path is None:
        return []
    folder = resolve_model_path(path)
    parts: list[Any] = [str(folder.resolve())]
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix in WEIGHT_SUFFIXES:
            st = f.stat()
            parts.append([f.name, st.st_size, int(st.st_mtime)])
    return parts


class Encoder:
    """A frozen encoder: texts in, L2-normalisable float32 vectors out."""

    def __init__(self, model: torch.nn.Module, tokenizer, pooling: Pooling = "mean", max_length: int = 128,
                 prompts: dict[str, str] | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = max_length
        #: name -> text put before an input: a response encoder's "query" (contexts) and "document" (replies)
        self.prompts = dict(prompts or {})

    @classmethod
    def load(cls, path: str | Path, pooling: Pooling = "mean", max_length: int = 128) -> Encoder:
        from transformers import AutoModel, AutoTokenizer

        folder = resolve_model_path(path)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        return cls(model, tokenizer, pooling=pooling, max_length=max_length, prompts=read_prompts(folder))

    def prompted(self, texts: Sequence[str], prompt_name: str) -> list[str]:
        """`texts` with the model's prompt of that name in front (unchanged when it has none)."""
        prompt = self.prompts.get(prompt_name, "")
        return [prompt + t for t in texts] if prompt else list(texts)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], batch_size: int = 64, normalize: bool = False) -> np.ndarray:
        """Embed texts in length-sorted batches so that little compute goes to padding."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            batch = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            hidden = self.model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).last_hidden_state
            out[idx] = pool(hidden, batch["attention_mask"], self.pooling).float().numpy()
        if normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


def read_prompts(folder: str | Path) -> dict[str, str]:
    """The prompts in a model folder's `config_sentence_transformers.json` ({} without one)."""
    path = Path(folder) / PROMPTS_FILE
    if not path.exists():
        return {}
    try:
        prompts = json.loads(path.read_text(encoding="utf-8")).get("prompts") or {}
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a sentence-transformers settings file ({exc})") from exc
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise ValueError(f"{path}: 'prompts' must map names to strings")
    return {str(k): v for k, v in prompts.items()}


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling = "mean") -> torch.Tensor:
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
