"""Contrastive response selection on real dialogues: alignment, negatives, loss and ranks."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from convssl.pretext import ObjectiveConfig, build_objective
from tests.pretext._train import mean, train_losses


def test_context_is_the_last_k_turns_and_response_the_next(wp_tok, sgd):
    obj = build_objective(ObjectiveConfig(name="contrastive", context_turns=2), wp_tok)
    ids = obj.ids
    pairs = list(obj.pairs(iter(sgd[:5]), np.random.default_rng(0)))
    expected = [(d, i) for d in sgd[:5] for i in range(1, len(d.turns))]
    assert len(pairs) == len(expected)
    for (context, response, _, _), (d, i) in zip(pairs, expected):
        want_ctx = [ids.bos]
        for j in range(max(0, i - 2), i):
            want_ctx += [ids.roles[d.roles[j]], *d.turns[j].tolist(), ids.eot]
        if len(want_ctx) + 1 <= obj.config.max_length:
            assert context.tolist() == [*want_ctx, ids.eos]
        want_rsp = [ids.bos, ids.roles[d.roles[i]], *d.turns[i].tolist(), ids.eot, ids.eos]
        assert response.tolist() == want_rsp[: len(response)]
        assert response[1] in (ids.roles["user"], ids.roles["agent"])


def test_batches_keep_pairs_aligned_after_shuffling(wp_tok, sgd):
    obj = build_objective(ObjectiveConfig(name="contrastive"), wp_tok)
    follows = {}
    for d in sgd:
        for i in range(1, len(d.turns)):
            follows.setdefault(tuple(d.turns[i - 1].tolist()), set()).add(tuple(d.turns[i].tolist()))
    batch = next(obj.batches(iter(sgd), 32, np.random.default_rng(0)))
    ctx, rsp = batch.tensors["context_input_ids"], batch.tensors["response_input_ids"]
    assert ctx.shape[0] == rsp.shape[0] == 32
    for c, r in zip(ctx.tolist(), rsp.tolist()):
        c = [t for t in c if t != obj.ids.pad]
        r = [t for t in r if t != obj.ids.pad]
        last_start = len(c) - 2 - c[::-1][2:].index(obj.ids.eot) if obj.ids.eot in c[:-2] else 1
        last = tuple(c[last_start + 1 : -2])
        assert tuple(r[2:-2]) in follows[last]


def test_hard_negatives_come_from_the_same_dialogue(wp_tok, sgd):
    obj = build_objective(ObjectiveConfig(name="contrastive", hard_negatives=True), wp_tok)
    turns_of = [{tuple(t.tolist()) for t in d.turns} for d in sgd[:3]]
    for _context, response, hard, _ in obj.pairs(iter(sgd[:3]), np.random.default_rng(0)):
        assert hard[1] == response[1]  # same role token as the true reply
        assert any(tuple(hard[2:-2].tolist()) in turns for turns in turns_of)
    batch = next(obj.batches(iter(sgd), 16, np.random.default_rng(0)))
    assert batch.tensors["negative_input_ids"].shape[0] == 16


def test_duplicate_replies_are_not_negatives(wp_tok, sgd):
    """Two identical replies in a batch: the loss must not push them apart."""
    obj = build_objective(ObjectiveConfig(name="contrastive", symmetric=False), wp_tok)
    group = list(obj.pairs(iter(sgd[:2]), np.random.default_rng(0)))[:4]
    group[1] = (group[1][0], group[0][1], None, group[0][3])
    from convssl.models import ModelConfig, build_pretext_model

    model = build_pretext_model(ModelConfig(preset="tiny"), wp_tok, [obj]).eval()
    batch = obj.make_batch(group)
    with torch.no_grad():
        loss, _ = obj.loss(model, batch)
        c = obj.embed(model, batch, "context_")
        r = obj.embed(model, batch, "response_")
        logits = c @ r.T / obj.config.temperature
        logits[0, 1] = logits[1, 0] = float("-inf")
        expected = torch.nn.functional.cross_entropy(logits, torch.arange(4))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_contrastive_loss_falls_and_recall_rises(wp_tok, chats):
    obj = build_objective(ObjectiveConfig(name="contrastive", max_length=64), wp_tok)
    losses = train_losses(obj, chats, steps=40, n_batches=2, lr=3e-3)
    assert mean(losses[-8:]) < mean(losses[:4]) - 0.5
    recalls = train_losses(obj, chats, steps=40, n_batches=2, lr=3e-3, metric="recall@1")
    assert mean(recalls[-8:]) > mean(recalls[:4]) + 0.2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_loss(rank, world, port, state, batches, tok, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from convssl.models import ModelConfig, build_pretext_model

        obj = build_objective(ObjectiveConfig(name="contrastive"), tok)
        model = build_pretext_model(ModelConfig(preset="tiny", dropout=0.0), tok, [obj])
        model.load_state_dict(state)
        loss, _ = obj.loss(model, batches[rank])
        loss.backward()
        grad = model.backbone.embeddings.word_embeddings.weight.grad.clone()
        torch.distributed.all_reduce(grad)
        out[rank] = (loss.item(), grad / world)
    finally:
        torch.distributed.destroy_process_group()


def test_negatives_are_gathered_across_ranks(wp_tok, sgd):
    """Two gloo ranks with half a batch each compute the same loss and gradient as one process
    with the whole batch: every rank's replies are negatives for every context."""
    from convssl.models import ModelConfig, build_pretext_model

    obj = build_objective(ObjectiveConfig(name="contrastive"), wp_tok)
    group = list(obj.pairs(iter(sgd[:4]), np.random.default_rng(0)))[:16]
    whole, halves = obj.make_batch(group), [obj.make_batch(group[:8]), obj.make_batch(group[8:])]
    torch.manual_seed(0)
    model = build_pretext_model(ModelConfig(preset="tiny", dropout=0.0), wp_tok, [obj])
    loss, _ = obj.loss(model, whole)
    loss.backward()
    out = mp.Manager().dict()
    mp.spawn(_rank_loss, args=(2, _free_port(), model.state_dict(), halves, wp_tok, out), nprocs=2)
    assert (out[0][0] + out[1][0]) / 2 == pytest.approx(loss.item(), rel=1e-4)
    assert torch.allclose(out[0][1], model.backbone.embeddings.word_embeddings.weight.grad, atol=1e-6)


def test_plain_text_pairs_carry_no_role_or_turn_markers(wp_tok, sgd):
    """`role_tokens: false` gives the inputs `convssl evaluate` and the serving bank embed:
    `[CLS] turn turn turn [SEP]` for the context, `[CLS] reply [SEP]` for the response."""
    obj = build_objective(ObjectiveConfig(name="contrastive", context_turns=3, role_tokens=False), wp_tok)
    ids = obj.ids
    markers = {ids.eot, *ids.roles.values()}
    pairs = list(obj.pairs(iter(sgd[:5]), np.random.default_rng(0)))
    expected = [(d, i) for d in sgd[:5] for i in range(1, len(d.turns)) if len(d.turns[i])]
    assert len(pairs) == len(expected)
    for (context, response, _, _), (d, i) in zip(pairs, expected):
        assert not markers & set(context.tolist()) and not markers & set(response.tolist())
        want = [t for j in range(max(0, i - 3), i) for t in d.turns[j].tolist()]
        budget = obj.config.max_length - 2
        assert context.tolist() == [ids.bos, *want[-budget:], ids.eos]  # the most recent tokens kept
        assert response.tolist() == [ids.bos, *d.turns[i].tolist()[: budget - 2], ids.eos]


def test_plain_text_contrastive_loss_falls(wp_tok, chats):
    obj = build_objective(ObjectiveConfig(name="contrastive", max_length=64, role_tokens=False), wp_tok)
    recalls = train_losses(obj, chats, steps=40, n_batches=2, lr=3e-3, metric="recall@1")
    assert mean(recalls[-8:]) > mean(recalls[:4]) + 0.2


def test_min_context_turns_mixes_context_lengths(wp_tok, sgd):
    """`min_context_turns: 1` with `context_turns: 3`: every context is the last 1, 2 or 3 turns before
    its reply (plain text, so the tokens tell), and all three lengths occur; without it, always 3."""
    def context_sizes(**settings) -> list[int]:
        obj = build_objective(ObjectiveConfig(name="contrastive", context_turns=3, role_tokens=False,
                                              max_length=512, **settings), wp_tok)
        sizes = []
        pairs = list(obj.pairs(iter(sgd[:8]), np.random.default_rng(0)))
        expected = [(d, i) for d in sgd[:8] for i in range(1, len(d.turns)) if len(d.turns[i])]
        for (context, _, _, _), (d, i) in zip(pairs, expected, strict=True):
            sizes.append(next(k for k in (1, 2, 3) if i - k <= 0 or context.tolist()[1:-1] == [
                t for j in range(i - k, i) for t in d.turns[j].tolist()]))
            if i >= 3:  # a context shorter than 3 turns is the later part of the 3-turn one
                full = [t for j in range(i - 3, i) for t in d.turns[j].tolist()]
                assert full[len(full) - len(context) + 2:] == context.tolist()[1:-1]
        return [s for s, (_, i) in zip(sizes, expected) if i >= 3]

    assert set(context_sizes()) == {3}
    assert set(context_sizes(min_context_turns=1)) == {1, 2, 3}


def test_min_context_turns_out_of_range_is_refused(wp_tok):
    for bad in (-1, 4):
        with pytest.raises(ValueError, match=r"min_context_turns must be between 0 and context_turns \(3\)"):
            build_objective(ObjectiveConfig(name="contrastive", context_turns=3, min_context_turns=bad), wp_tok)


def test_prompts_open_every_context_and_reply_as_the_tokenizer_writes_them(wp_tok, sgd):
    """`context_prompt` / `response_prompt`: each row is what the tokenizer makes of the prompt
    followed by the text, which is how evaluation and the response bank feed the saved model."""
    plain = build_objective(ObjectiveConfig(name="contrastive", role_tokens=False), wp_tok)
    obj = build_objective(ObjectiveConfig(name="contrastive", role_tokens=False, context_prompt="context: ",
                                          response_prompt="reply: "), wp_tok)
    assert obj.prompts() == {"query": "context: ", "document": "reply: "}
    rng = np.random.default_rng(0)
    prompted = list(obj.pairs(iter(sgd[:3]), rng))
    unprompted = list(plain.pairs(iter(sgd[:3]), np.random.default_rng(0)))
    assert len(prompted) == len(unprompted) > 10
    bos, eos = obj.ids.bos, obj.ids.eos
    for (context, response, _, _), (plain_context, plain_response, _, _) in zip(prompted, unprompted):
        context_text = wp_tok.decode(plain_context[1:-1].tolist())
        reply_text = wp_tok.decode(plain_response[1:-1].tolist())
        want_context = wp_tok("context: " + context_text)["input_ids"]
        want_reply = wp_tok("reply: " + reply_text)["input_ids"]
        # the prompt takes room from the oldest context tokens, never from the reply's turn
        assert context.tolist() == want_context or context.tolist()[-20:] == want_context[-20:]
        assert response.tolist() == want_reply and response[0] == bos and response[-1] == eos


def test_prompts_need_plain_text_and_room(wp_tok):
    with pytest.raises(ValueError, match="role_tokens must be false when context_prompt or response_prompt is set"):
        build_objective(ObjectiveConfig(name="contrastive", context_prompt="context: "), wp_tok)
    with pytest.raises(ValueError, match="max_length must be >= 8 tokens more than the context prompt"):
        build_objective(ObjectiveConfig(name="contrastive", role_tokens=False, max_length=10,
                                        context_prompt="the conversation so far reads: "), wp_tok)
