"""MLM batches from real chitchat: masking statistics, packing, and a loss that falls."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convssl.data.special_tokens import EOT, ROLE_TOKENS
from convssl.pretext import ObjectiveConfig, ObjectiveError, build_objective
from convssl.pretext.mlm import word_start_table
from tests.pretext._train import mean, train_losses


def _batches(tok, dialogues, **cfg):
    obj = build_objective(ObjectiveConfig(name="mlm", **cfg), tok)
    return obj, list(obj.batches(iter(dialogues), 16, np.random.default_rng(0)))


def _original(obj, batch) -> np.ndarray:
    """Undo the masking with the labels, to compare inputs with the real text."""
    ids = batch.tensors["input_ids"].numpy().copy().ravel()
    ids[batch.tensors["mlm_positions"].numpy()] = batch.tensors["mlm_labels"].numpy()
    return ids.reshape(batch.tensors["input_ids"].shape)


def test_rows_are_packed_dialogue_turns(wp_tok, chats):
    obj, batches = _batches(wp_tok, chats)
    first = batches[0]
    assert first.tensors["input_ids"].shape == (16, 128)
    row = [t for t in wp_tok.convert_ids_to_tokens(_original(obj, first)[0].tolist()) if t != "[PAD]"]
    assert row[0] == "[CLS]" and row[1] in ROLE_TOKENS.values() and row[-1] == "[SEP]"
    assert row.count(EOT) >= 2  # several turns share one row
    # The first row starts with the first turn of the first dialogue, word for word.
    first_turn = chats[0].turns[0].tolist()
    assert _original(obj, first)[0, 2 : 2 + len(first_turn)].tolist() == first_turn[:126]
    # Every token of the data is in some row: nothing is dropped by packing.
    data_tokens = sum(int((~np.isin(t, obj.ids.all_special)).sum()) for d in chats for t in d.turns)
    special = np.isin(np.concatenate([_original(obj, b).ravel() for b in batches]), obj.ids.all_special)
    assert int((~special).sum()) == data_tokens


def test_packing_keeps_padding_low(wp_tok, chats):
    _, packed = _batches(wp_tok, chats)
    _, unpacked = _batches(wp_tok, chats, packing=False)

    def pad_share(batches):
        return 1 - sum(b.real_tokens for b in batches) / sum(b.tensors["input_ids"].numel() for b in batches)

    assert pad_share(packed[:-1]) < 0.03
    assert pad_share(unpacked) > 2 * pad_share(packed) + 0.05
    assert "attention_mask" not in packed[0].tensors  # full rows: attention skips the mask


def test_mask_rate_and_80_10_10(wp_tok, chats):
    obj, batches = _batches(wp_tok, chats, mask_rate=0.2)
    chosen = masked = randomised = kept = candidates = 0
    for batch in batches:
        original = _original(obj, batch)
        inputs = batch.tensors["input_ids"].numpy().ravel()
        pos = batch.tensors["mlm_positions"].numpy()
        labels = batch.tensors["mlm_labels"].numpy()
        assert not np.isin(labels, obj.ids.all_special).any(), "a special or pad token was masked"
        candidates += int((~np.isin(original, obj.ids.all_special)).sum())
        chosen += len(pos)
        masked += int((inputs[pos] == obj.ids.mask).sum())
        kept += int((inputs[pos] == labels).sum())
        randomised += int(((inputs[pos] != labels) & (inputs[pos] != obj.ids.mask)).sum())
    assert chosen / candidates == pytest.approx(0.2, abs=0.015)
    assert masked / chosen == pytest.approx(0.8, abs=0.03)
    assert randomised / chosen == pytest.approx(0.1, abs=0.025)
    assert kept / chosen == pytest.approx(0.1, abs=0.025)  # a random pick of the same id counts here too


def test_whole_word_masks_all_pieces_of_a_word(wp_tok, chats):
    obj, batches = _batches(wp_tok, chats, whole_word=True)
    starts = word_start_table(wp_tok)
    split_words = 0
    for batch in batches[:5]:
        original = _original(obj, batch).ravel()
        chosen = np.zeros(original.size, dtype=bool)
        chosen[batch.tensors["mlm_positions"].numpy()] = True
        for i in np.flatnonzero(~starts[original]):  # a continuation piece ("##...")
            if i > 0 and not np.isin(original[i - 1 : i + 1], obj.ids.all_special).any():
                split_words += 1
                assert chosen[i] == chosen[i - 1], f"word split by masking at {i}"
    assert split_words > 50  # the check saw many multi-piece words


def test_batches_are_deterministic(wp_tok, chats):
    _, a = _batches(wp_tok, chats)
    _, b = _batches(wp_tok, chats)
    assert all(torch.equal(x.tensors["input_ids"], y.tensors["input_ids"]) for x, y in zip(a, b))


def test_mlm_needs_a_mask_token(bpe_tok):
    with pytest.raises(ObjectiveError, match="MASK"):
        build_objective(ObjectiveConfig(name="mlm"), bpe_tok)


def test_mlm_loss_falls(wp_tok, chats):
    obj = build_objective(ObjectiveConfig(name="mlm"), wp_tok)
    losses = train_losses(obj, chats, steps=40)
    assert mean(losses[-8:]) < mean(losses[:4]) - 1.0


def test_sgd_roles_use_user_and_system_tokens(wp_tok, sgd):
    obj, batches = _batches(wp_tok, sgd)
    tokens = set(wp_tok.convert_ids_to_tokens(_original(obj, batches[0]).ravel().tolist()))
    assert {"[USR]", "[SYS]"} <= tokens and not {"[A]", "[B]"} & tokens


@pytest.mark.parametrize("max_length", [8, 16, 64])
def test_packed_rows_never_exceed_max_length(wp_tok, chats, max_length):
    obj, batches = _batches(wp_tok, chats[:40], max_length=max_length)
    assert all(b.tensors["input_ids"].shape[1] <= max_length for b in batches)
    assert sum(b.real_tokens for b in batches) >= sum(d.num_tokens for d in chats[:40])
