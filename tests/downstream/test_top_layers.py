"""Tuning the top layers over cached lower-layer states is the same network as the full encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convssl.downstream.prototype_training import train_top_layers
from convssl.downstream.top_layers import TopLayerEncoder, UnsupportedEncoderError
from convssl.models.encoder import Encoder
from tests.evaluate import slices

tiny_bert = slices.tiny_bert

TEXTS = ["my card has not arrived yet", "what is the exchange rate today?", "I want to change my PIN",
         "my top up failed twice", "please close my account", "someone stole my card"]


def test_cached_top_embeddings_match_the_full_encoder(tiny_bert):
    encoder = Encoder.load(tiny_bert, max_length=32)
    full = encoder.embed(TEXTS, normalize=True)
    top = TopLayerEncoder(encoder.model, encoder.tokenizer, top=1, max_length=32, bf16=False)
    cached = top.cache(TEXTS)
    assert np.abs(top.embed(cached) - full).max() < 5e-3  # bf16 cache of the bottom's output


def test_training_moves_only_the_top_layers(tiny_bert):
    encoder = Encoder.load(tiny_bert, max_length=32)
    top = TopLayerEncoder(encoder.model, encoder.tokenizer, top=1, max_length=32, bf16=False)
    before = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    cached = top.cache(TEXTS)
    losses = train_top_layers(top, cached, np.arange(6), np.arange(6), 6, epochs=1, min_steps=30, batch_size=6,
                              lr=1e-3, scale=20.0, label_smoothing=0.0, weight_decay=0.0, seed=0)
    assert losses[-1] < losses[0]
    after = encoder.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("encoder.layer.1.") for k in changed)


def test_non_bert_encoders_are_refused_by_name():
    with pytest.raises(UnsupportedEncoderError, match="Linear has no BERT-style"):
        TopLayerEncoder(torch.nn.Linear(2, 2), None, top=1, max_length=8)
