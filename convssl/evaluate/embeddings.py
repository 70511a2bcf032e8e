"""Representations under test: texts in, feature matrix out, each text embedded once per model.

An evaluation asks for the same texts many times (probe, kNN, centroid, every k-shot seed, the OOS
task sharing CLINC's train split): a per-model cache keyed by text makes all of those reuse one
forward pass, so k-shot probes with many seeds cost only logistic-regression fits.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convssl.models.encoder import Encoder, folder_fingerprint
from convssl.utils.compute import autocast
from convssl.utils.progress import progress_bar

LOG = logging.getLogger("convssl.evaluate")


@dataclass
class Representation:
    """Base: a named feature extractor. `kind` is model, baseline, random-init or tfidf."""

    name: str
    kind: str
    path: str | None = None

    def fit(self, texts: Sequence[str]) -> None:
        """Unsupervised fitting on a task's texts (TF-IDF vocabulary); encoders ignore it."""

    def features(self, texts: Sequence[str]) -> Any:
        raise NotImplementedError

    def prompted(self, texts: Sequence[str], prompt_name: str) -> list[str]:
        """`texts` as this representation's model expects them for one role ("query": contexts,
        "document": replies); only encoders saved with prompts change them."""
        return list(texts)

    @property
    def is_encoder(self) -> bool:
        return False


@dataclass
class EncoderRepresentation(Representation):
    """A frozen Hugging Face encoder with an in-memory embedding cache."""

    encoder: Encoder | None = None
    batch_size: int = 64
    normalize: bool = True
    bf16: bool = False
    cache: dict[str, np.ndarray] = field(default_factory=dict)
    embed_seconds: float = 0.0
    cache_file: Path | None = None  # on-disk copy of `cache`, so reruns skip the forward passes
    _loaded: bool = False

    @property
    def is_encoder(self) -> bool:
        return True

    def prompted(self, texts: Sequence[str], prompt_name: str) -> list[str]:
        return self.encoder.prompted(texts, prompt_name) if self.encoder else list(texts)

    def features(self, texts: Sequence[str]) -> np.ndarray:
        import time

        self._load_disk_cache()
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            assert self.encoder is not None
            start = time.perf_counter()
            LOG.info("%s: embedding %d new texts", self.name, len(missing))
            with autocast(self.bf16):
                vectors = self._embed_with_progress(missing)
            if self.normalize:
                vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            self.cache.update(zip(missing, vectors))
            self.embed_seconds += time.perf_counter() - start
            self._save_disk_cache()
        if not texts:
            return np.zeros((0, self.encoder.dim if self.encoder else 0), dtype=np.float32)
        return np.stack([self.cache[t] for t in texts]).astype(np.float32, copy=False)

    def _load_disk_cache(self) -> None:
        if self._loaded or self.cache_file is None:
            return
        self._loaded = True
        if self.cache_file.exists():
            try:
                with np.load(self.cache_file, allow_pickle=False) as data:
                    texts = json.loads(data["texts_json"].tobytes().decode("utf-8"))
                    self.cache.update(zip(texts, data["vectors"]))
            except (OSError, KeyError, ValueError) as exc:  # truncated or older layout: embed again
                LOG.warning("%s: ignoring unreadable embedding cache %s (%s)", self.name, self.cache_file, exc)
                return
            LOG.info("%s: %d cached embeddings from %s", self.name, len(self.cache), self.cache_file)

    def _save_disk_cache(self) -> None:
        if self.cache_file is None:
            return
        import os

        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_name(self.cache_file.stem + f".tmp{os.getpid()}.npz")
        # Texts as one UTF-8 JSON blob: a fixed-width numpy string array would pad every text to the longest.
        blob = np.frombuffer(json.dumps(list(self.cache), ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
        np.savez(tmp, texts_json=blob, vectors=np.stack(list(self.cache.values())))
        os.replace(tmp, self.cache_file)

    def use_disk_cache(self, cache_dir: str | Path, *identity: Any) -> None:
        """Key the cache file by everything that changes a vector: weights, pooling, length, dtype."""
        import hashlib

        assert self.encoder is not None
        h = hashlib.sha1()
        parts: list[Any] = [self.kind, self.encoder.pooling, self.encoder.max_length, self.normalize, self.bf16, *identity,
                            *folder_fingerprint(self.path or None)]
        h.update(repr(parts).encode())
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in self.name)
        self.cache_file = Path(cache_dir) / f"{safe}-{h.hexdigest()[:12]}.npz"

    def _embed_with_progress(self, texts: list[str]) -> np.ndarray:
        """Embed in chunks under a progress bar; the encoder length-sorts inside each chunk."""
        assert self.encoder is not None
        chunk = max(self.batch_size * 16, 1024)
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.encoder.dim), dtype=np.float32)
        with progress_bar(len(texts), f"embed {self.name}", unit="text", enabled=len(texts) >= 2000) as bar:
            for start in range(0, len(texts), chunk):
                idx = order[start : start + chunk]
                out[idx] = self.encoder.embed([texts[i] for i in idx], batch_size=self.batch_size)
                bar.update(len(idx))
        return out


def load_encoder_representation(
    path: str | Path,
    name: str,
    kind: str,
    pooling: str = "mean",
    max_length: int = 128,
    batch_size: int = 64,
    normalize: bool = True,
    bf16: bool = False,
) -> EncoderRepresentation:
    encoder = Encoder.load(path, pooling=pooling, max_length=max_length)  # type: ignore[arg-type]
    ensure_pad_token(encoder.tokenizer)
    return EncoderRepresentation(
        name=name, kind=kind, path=str(path), encoder=encoder, batch_size=batch_size,
        normalize=normalize, bf16=bf16,
    )


def ensure_pad_token(tokenizer: Any) -> None:
    """GPT-2 style tokenizers ship without a pad token; padding with EOS is harmless under the mask."""
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token


def display_name(path: str | Path) -> str:
    """`runs/ssl-1` for a run folder (not `final`), the folder name for a model folder."""
    p = Path(path)
    if p.name in {"final", "model"} and p.parent.name:
        return p.parent.name
    return p.name or str(p)
