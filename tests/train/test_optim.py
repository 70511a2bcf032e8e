"""Weight decay groups and the learning-rate schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from convssl.train.optim import (
    build_optimizer,
    build_scheduler,
    clip_gradients,
    clipped_step,
    lr_factor,
    split_decay_parameters,
)


def _bert(dropout: float = 0.0):
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, hidden_dropout_prob=dropout)
    return BertModel(cfg, add_pooling_layer=False)


def test_biases_and_norm_weights_get_no_weight_decay():
    model = _bert()
    decay, no_decay = split_decay_parameters(model)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay}
    decay_names = {names[id(p)] for p in decay}
    assert all(n.endswith(".bias") or "LayerNorm" in n for n in no_decay_names)
    assert "embeddings.LayerNorm.weight" in no_decay_names
    assert "encoder.layer.0.attention.self.query.weight" in decay_names
    assert not any("LayerNorm" in n or n.endswith(".bias") for n in decay_names)
    assert len(decay) + len(no_decay) == len(list(model.parameters()))


def test_decoupled_weight_decay_leaves_biases_alone_without_gradient():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    opt = build_optimizer(model, lr=0.1, weight_decay=0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    after = dict(model.named_parameters())
    assert torch.allclose(after["0.weight"], before["0.weight"] * (1 - 0.1 * 0.5))  # decoupled decay
    for name in ("0.bias", "1.weight", "1.bias"):
        assert torch.equal(after[name], before[name])


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_warmup_then_decay_to_zero(schedule):
    factors = [lr_factor(s, 10, 110, schedule) for s in range(111)]
    assert factors[0] == pytest.approx(0.1)
    assert factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0)
    assert factors[110] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    midpoint = factors[60]
    assert midpoint == pytest.approx(0.5 if schedule == "linear" else 0.5 * (1 + math.cos(math.pi / 2)))


def test_scheduler_drives_optimizer_lr_and_rejects_unknown_schedule():
    model = nn.Linear(2, 2)
    opt = build_optimizer(model, lr=1.0, weight_decay=0.0)
    sched = build_scheduler(opt, warmup_steps=2, max_steps=4, schedule="linear")
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 0.5])
    with pytest.raises(ValueError, match="schedule"):
        build_scheduler(opt, 2, 4, "exponential")


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_gradients_steps_like_clip_grad_norm(fused, max_norm):
    """The fused optimizer clips through its grad_scale; the result is clip_grad_norm_'s step."""
    torch.manual_seed(0)
    grads = [torch.randn(20, 10) * 3, torch.randn(20) * 3]
    models = [nn.Linear(10, 20) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    ours = torch.optim.AdamW(models[0].parameters(), lr=0.1, fused=fused, foreach=None if fused else True)
    stock = torch.optim.AdamW(models[1].parameters(), lr=0.1, fused=fused, foreach=None if fused else True)
    for _ in range(3):
        for model in models:
            for p, g in zip(model.parameters(), grads):
                p.grad = g.clone()
        clipped_step(ours, max_norm)
        assert getattr(ours, "grad_scale", None) is None  # the scale lived for that step only
        torch.nn.utils.clip_grad_norm_(models[1].parameters(), max_norm)
        stock.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_clip_gradients_bounds_the_update_of_a_huge_gradient():
    """SGD shows the clipping itself: the step is lr x max_norm long, whatever the gradient."""
    weight = nn.Parameter(torch.zeros(4))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    weight.grad = torch.tensor([300.0, 400.0, 0.0, 0.0])
    clip_gradients(optimizer, 2.0)
    optimizer.step()
    assert weight.detach().norm().item() == pytest.approx(2.0, rel=1e-5)
