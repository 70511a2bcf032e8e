"""Next-utterance prediction on real chitchat: balanced labels, honest negatives, a loss that falls."""

from __future__ import annotations

import numpy as np
import pytest

from convssl.pretext import ObjectiveConfig, build_objective
from tests.pretext._train import mean, train_losses


def _examples(tok, dialogues, **cfg):
    obj = build_objective(ObjectiveConfig(name="nup", **cfg), tok)
    return obj, list(obj.examples(iter(dialogues), np.random.default_rng(0)))


def _parts(obj, row, n_context):
    context, candidate = row[:n_context], row[n_context:-1]
    return context, candidate


def _turn_index(dialogues):
    """Turn text -> set of dialogue indices containing it."""
    index: dict[tuple, set[int]] = {}
    for i, d in enumerate(dialogues):
        for t in d.turns:
            index.setdefault(tuple(t.tolist()), set()).add(i)
    return index


def test_labels_balanced_and_positives_are_true_next_turns(wp_tok, chats):
    obj, examples = _examples(wp_tok, chats[:64], context_turns=2)
    labels = np.array([label for _, _, label in examples])
    assert labels.mean() == pytest.approx(0.5, abs=0.05)
    follows: dict[tuple, set[tuple]] = {}
    for d in chats[:64]:
        for i in range(1, len(d.turns)):
            follows.setdefault(tuple(d.turns[i - 1].tolist()), set()).add(tuple(d.turns[i].tolist()))
    checked = 0
    for row, n, label in examples:
        context, candidate = _parts(obj, row, n)
        assert context[0] == obj.ids.bos and context[-1] == obj.ids.eos and row[-1] == obj.ids.eos
        eots = np.flatnonzero(context == obj.ids.eot)
        start = eots[-2] + 1 if len(eots) > 1 else 1
        previous = tuple(context[start + 1 : eots[-1]].tolist())  # the last context turn, no role/EOT
        if label and previous in follows and len(candidate) < obj.config.max_length // 2:
            assert tuple(candidate[1:-1].tolist()) in follows[previous]
            checked += 1
    assert checked > 100


def test_negatives_come_from_other_dialogues_with_the_true_role(wp_tok, chats):
    dialogues = chats[:64]
    obj, examples = _examples(wp_tok, dialogues, same_dialogue_negatives=0.0)
    index = _turn_index(dialogues)
    for row, n, label in examples:
        if label == 0:
            _, candidate = _parts(obj, row, n)
            assert candidate[0] in obj.ids.roles.values()
            assert tuple(candidate[1:-1].tolist()) in index or len(candidate) >= obj.config.max_length // 2


def test_same_dialogue_negatives(wp_tok, chats):
    dialogues = chats[:64]
    obj, examples = _examples(wp_tok, dialogues, same_dialogue_negatives=1.0, context_turns=1)
    index = _turn_index(dialogues)
    by_context: dict[tuple, set[int]] = {}
    for i, d in enumerate(dialogues):
        for t in d.turns:
            by_context.setdefault(tuple(t.tolist()), set()).add(i)
    shared = 0
    for row, n, label in examples:
        context, candidate = _parts(obj, row, n)
        if label == 0 and len(candidate) < obj.config.max_length // 2 and n < obj.config.max_length // 2:
            ctx_dialogues = by_context.get(tuple(context[2:-2].tolist()), set())
            shared += bool(ctx_dialogues & index.get(tuple(candidate[1:-1].tolist()), set()))
    negatives = sum(1 for *_, label in examples if label == 0)
    assert shared > 0.8 * negatives * 0.9


def test_batches_carry_segments(wp_tok, chats):
    obj = build_objective(ObjectiveConfig(name="nup"), wp_tok)
    batch = next(obj.batches(iter(chats), 16, np.random.default_rng(0)))
    types = batch.tensors["token_type_ids"]
    assert types.shape == batch.tensors["input_ids"].shape
    assert (types[:, 0] == 0).all() and (types.sum(1) > 0).all()
    assert set(batch.tensors["labels"].tolist()) <= {0, 1}


def test_nup_loss_falls(wp_tok, chats):
    obj = build_objective(ObjectiveConfig(name="nup", max_length=64), wp_tok)
    losses = train_losses(obj, chats, steps=40, n_batches=2, lr=3e-3)
    assert mean(losses[-8:]) < mean(losses[:4]) - 0.2
