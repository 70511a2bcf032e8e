"""Contrastive turn views on real dialogues: the two views, duplicate texts, and the loss falling."""

from __future__ import annotations

import numpy as np
import pytest

from convssl.pretext import ObjectiveConfig, ObjectiveError, build_objective
from tests.pretext._train import mean, train_losses


def test_views_are_corrupted_copies_of_one_turn(wp_tok, chats):
    obj = build_objective(ObjectiveConfig(name="turn_views", max_length=64, view_drop=0.3), wp_tok)
    batch = next(obj.batches(iter(chats), 8, np.random.default_rng(0)))
    t = batch.tensors
    assert t["first_input_ids"].shape[0] == t["second_input_ids"].shape[0] == 8
    ids = obj.ids
    for first, second in zip(t["first_input_ids"].tolist(), t["second_input_ids"].tolist()):
        first = [x for x in first if x != ids.pad]
        second = [x for x in second if x != ids.pad]
        assert first[0] == second[0] == ids.bos and first[-1] == second[-1] == ids.eos
        # both views come from one turn: together they share most tokens
        overlap = len(set(first[1:-1]) & set(second[1:-1])) / max(1, len(set(first[1:-1]) | set(second[1:-1])))
        assert overlap > 0.2
    turns = [len(x) for d in chats for x in d.turns if len(x) >= 3]
    assert batch.real_tokens < 2 * (sum(sorted(turns)[-8:]) + 16)


def test_no_drop_gives_identical_views(wp_tok, chats):
    obj = build_objective(ObjectiveConfig(name="turn_views", max_length=64, view_drop=0.0), wp_tok)
    t = next(obj.batches(iter(chats), 8, np.random.default_rng(0))).tensors
    assert (t["first_input_ids"] == t["second_input_ids"]).all()


def test_turn_views_loss_falls_and_recall_rises(wp_tok, chats):
    obj = build_objective(ObjectiveConfig(name="turn_views", max_length=64), wp_tok)
    losses = train_losses(obj, chats, steps=40, n_batches=2, lr=3e-3)
    assert mean(losses[-8:]) < mean(losses[:4]) - 0.5
    recalls = train_losses(obj, chats, steps=40, n_batches=2, lr=3e-3, metric="recall@1")
    assert mean(recalls[-8:]) >= 0.95  # each view finds its twin among the batch's other turns


def test_bad_settings_are_named(wp_tok):
    with pytest.raises(ObjectiveError, match="view_drop"):
        build_objective(ObjectiveConfig(name="turn_views", view_drop=1.0), wp_tok)
