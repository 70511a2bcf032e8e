"""Tuning the top layers over cached lower-layer states is the same network as the full encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convssl.downstream.prototype_training import (
    cut_tokens,
    drop_cut_tokens,
    length_bucketed_batches,
    train_top_layers,
)
from convssl.downstream.top_layers import TopLayerEncoder, UnsupportedEncoderError
from convssl.models.encoder import Encoder
from convssl.models.fast import speed_up_encoder
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


def test_length_bucketed_batches_cover_every_row_once_with_little_padding():
    lengths = np.random.default_rng(1).integers(3, 60, size=1000)
    batches = length_bucketed_batches(lengths, 32, np.random.default_rng(0), bucket=10)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(1000))
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    shuffled = np.array_split(np.random.default_rng(0).permutation(1000), len(batches))
    assert padded < 0.6 * sum(int(lengths[b].max()) * len(b) for b in shuffled)
    again = length_bucketed_batches(lengths, 32, np.random.default_rng(0), bucket=10)
    assert [b.tolist() for b in again] == [b.tolist() for b in batches]  # seeded: a rerun sees the same batches


def test_token_cutoff_hides_about_that_share_but_never_the_first_token():
    mask = torch.ones((400, 20), dtype=torch.long)
    mask[:, 15:] = 0  # padding stays padding
    cut = cut_tokens(mask, 0.1, torch.Generator().manual_seed(0))
    assert torch.all(cut[:, 0] == 1) and torch.all(cut[:, 15:] == 0)
    hidden = 1 - cut[:, 1:15].float().mean().item()
    assert 0.08 < hidden < 0.12
    again = cut_tokens(mask, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(cut, again)  # seeded: a resumed or repeated run hides the same tokens
    assert cut_tokens(mask, 0.0, torch.Generator()) is mask


def test_training_with_token_cutoff_still_learns_and_is_seeded(tiny_bert):
    def run() -> list[float]:
        torch.manual_seed(0)
        encoder = Encoder.load(tiny_bert, max_length=32)
        top = TopLayerEncoder(encoder.model, encoder.tokenizer, top=1, max_length=32, bf16=False)
        return train_top_layers(top, top.cache(TEXTS), np.arange(6), np.arange(6), 6, epochs=1, min_steps=30,
                                batch_size=6, lr=1e-3, scale=20.0, label_smoothing=0.0, weight_decay=0.0,
                                seed=0, token_cutoff=0.3)
    losses = run()
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert run() == losses


def test_a_cached_batch_is_zero_padded_and_masked(tiny_bert):
    encoder = Encoder.load(tiny_bert, max_length=32)
    top = TopLayerEncoder(encoder.model, encoder.tokenizer, top=1, max_length=32, bf16=False)
    cached = top.cache(TEXTS)
    hidden, mask = cached.batch([1, 0])
    lengths = [cached.states[1].shape[0], cached.states[0].shape[0]]
    assert hidden.dtype == torch.float32 and hidden.shape[:2] == mask.shape == (2, max(lengths))
    assert mask.sum(1).tolist() == lengths
    assert torch.equal(hidden[0, : lengths[0]], cached.states[1].float())
    assert torch.all(hidden[mask == 0] == 0)


def test_dropping_the_cut_tokens_leaves_the_embeddings_unchanged(tiny_bert):
    """The student skips the cut tokens instead of masking them: the same embeddings, less compute."""
    encoder = Encoder.load(tiny_bert, max_length=32)
    top = TopLayerEncoder(encoder.model, encoder.tokenizer, top=2, max_length=32, bf16=False)
    cached = top.cache(TEXTS)
    hidden, mask = cached.batch(range(len(TEXTS)))
    cut = cut_tokens(mask, 0.3, torch.Generator().manual_seed(0))
    narrow, narrow_mask = drop_cut_tokens(hidden, cut)
    assert narrow.shape[1] == int(cut.sum(1).max()) < hidden.shape[1]
    assert narrow_mask.sum(1).tolist() == cut.sum(1).tolist()
    with torch.no_grad():
        masked, dropped = top.forward_top(hidden, cut), top.forward_top(narrow, narrow_mask)
    assert torch.allclose(masked, dropped, atol=1e-5)


def test_the_fast_kernels_compute_the_same_top_layers(tiny_bert):
    """The pool recipe swaps in the pretraining kernels; outside training they are the same function."""
    encoder = Encoder.load(tiny_bert, max_length=32)
    top = TopLayerEncoder(encoder.model, encoder.tokenizer, top=2, max_length=32, bf16=False)
    cached = top.cache(TEXTS)
    stock, stock_full = top.embed(cached), encoder.embed(TEXTS, normalize=True)
    speed_up_encoder(encoder.model, low_precision_norm=False)
    # the model is in eval mode: the swapped-in dropout must be too (no re-`eval()` in between)
    assert np.abs(encoder.embed(TEXTS, normalize=True) - stock_full).max() < 1e-5
    assert np.abs(top.embed(cached) - stock).max() < 1e-5
