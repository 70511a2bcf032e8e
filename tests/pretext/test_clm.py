"""Causal LM over real chitchat with a byte-level BPE tokenizer and GPT-2 / Llama decoders."""

from __future__ import annotations

import numpy as np
import pytest

from convssl.data.special_tokens import special_ids
from convssl.pretext import ObjectiveConfig, ObjectiveError, build_objective
from tests.pretext._train import mean, train_losses


def test_packed_blocks_are_full_dialogue_text(bpe_tok, chats_bpe):
    obj = build_objective(ObjectiveConfig(name="clm", max_length=64), bpe_tok)
    batches = list(obj.batches(iter(chats_bpe), 8, np.random.default_rng(0)))
    assert all(b.tensors["input_ids"].shape == (len(b.tensors["input_ids"]), 64) for b in batches)
    assert all("attention_mask" not in b.tensors for b in batches)  # packing: no padding at all
    stream = np.concatenate([b.tensors["input_ids"].numpy().ravel() for b in batches])
    ids = special_ids(bpe_tok)
    # The stream starts with the first dialogue: role, its first turn, end of turn.
    first = chats_bpe[0].turns[0]
    assert stream[0] == ids.roles[chats_bpe[0].roles[0]]
    assert stream[1 : 1 + len(first)].tolist() == first.tolist()
    assert stream[1 + len(first)] == ids.eot
    assert (stream == ids.eos).sum() >= len(chats_bpe) - 5  # dialogues end with <|endoftext|>
    assert bpe_tok.decode(stream[:40].tolist()).count("[EOT]") >= 1


def test_unpacked_rows_pad_and_ignore_padding(bpe_tok, chats_bpe):
    obj = build_objective(ObjectiveConfig(name="clm", packing=False, max_length=64), bpe_tok)
    batch = next(obj.batches(iter(chats_bpe), 8, np.random.default_rng(0)))
    mask = batch.tensors["attention_mask"]
    assert (mask == 0).any()
    assert (batch.tensors["labels"][mask == 0] == -100).all()
    assert batch.real_tokens == int(mask.sum())


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_clm_loss_falls(bpe_tok, chats_bpe, arch):
    obj = build_objective(ObjectiveConfig(name="clm", max_length=64), bpe_tok)
    losses = train_losses(obj, chats_bpe, steps=30, batch_size=8, arch=arch)
    assert mean(losses[-5:]) < mean(losses[:3]) - 1.0


def test_clm_refuses_an_encoder(bpe_tok, chats_bpe):
    obj = build_objective(ObjectiveConfig(name="clm"), bpe_tok)
    with pytest.raises(ObjectiveError, match="needs a decoder"):
        train_losses(obj, chats_bpe, steps=1, arch="bert")
