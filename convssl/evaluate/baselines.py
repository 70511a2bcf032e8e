"""Baselines printed beside every model, so a number is never read without its floor.

* TF-IDF + logistic regression: what a bag of words gets with no neural network at all.
* The same architecture randomly initialised (seeded): what the architecture and tokenizer get
  without any (self-)supervised pretraining. An SSL run that does not beat it has learnt nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from convssl.evaluate.embeddings import EncoderRepresentation, Representation, ensure_pad_token
from convssl.models.encoder import Encoder
from convssl.models.reference import resolve_model_path


@dataclass
class TfidfRepresentation(Representation):
    """Word uni+bigram TF-IDF (sublinear tf, L2-normalised rows), fitted on each task's own texts."""

    vectorizer: Any = None
    fitted_on: int = 0
    settings: dict[str, Any] = field(default_factory=lambda: {"ngram_range": (1, 2), "sublinear_tf": True, "min_df": 1})

    def fit(self, texts: Sequence[str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(lowercase=True, **self.settings)
        self.vectorizer.fit(list(texts))
        self.fitted_on = len(texts)

    def features(self, texts: Sequence[str]):
        if self.vectorizer is None:
            raise RuntimeError("TF-IDF baseline used before fit()")
        return self.vectorizer.transform(list(texts)).tocsr().astype("float32")


def tfidf_baseline() -> TfidfRepresentation:
    return TfidfRepresentation(name="tfidf+logreg", kind="tfidf")


def random_init_encoder(
    path: str | Path,
    seed: int = 0,
    pooling: str = "mean",
    max_length: int = 128,
    batch_size: int = 64,
    normalize: bool = True,
    bf16: bool = False,
    name: str | None = None,
) -> EncoderRepresentation:
    """The model's architecture and tokenizer with fresh, seeded weights (no pretraining)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    folder = resolve_model_path(path)
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    ensure_pad_token(tokenizer)
    torch.manual_seed(seed)
    model = AutoModel.from_config(config)
    encoder = Encoder(model, tokenizer, pooling=pooling, max_length=max_length)  # type: ignore[arg-type]
    return EncoderRepresentation(
        name=name or f"random-init({Path(folder).name if Path(folder).name != 'final' else Path(folder).parent.name})",
        kind="random-init", path=str(folder), encoder=encoder, batch_size=batch_size,
        normalize=normalize, bf16=bf16,
    )


def save_random_init(rep: EncoderRepresentation, out_dir: Path) -> Path:
    """Write a random-init encoder as an HF folder so that fine-tuning can start from it."""
    assert rep.encoder is not None
    out_dir.mkdir(parents=True, exist_ok=True)
    rep.encoder.model.save_pretrained(str(out_dir), safe_serialization=True)
    rep.encoder.tokenizer.save_pretrained(str(out_dir))
    return out_dir
