"""The cheaper dropout and attention compute the same maths as the stock modules."""

from __future__ import annotations

import pytest
import torch

from convssl.models import ModelConfig, build_pretext_model
from convssl.models.fast import (
    ATTENTION_NAME,
    FastDropout,
    LowPrecisionLayerNorm,
    fast_dropout,
    fused_self_attention,
    keep_mask,
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("p", [0.1, 0.3])
def test_keep_mask_rate_and_independence(p, dtype):
    raw = keep_mask((1001, 999), p, torch.device("cpu"), dtype)
    assert raw.dtype == dtype and set(torch.unique(raw).tolist()) == {0.0, 1.0}
    mask = raw.float()
    assert mask.mean().item() == pytest.approx(1 - p, abs=0.003)
    for lane in range(4):  # each 16-bit lane of the random words has the right rate
        assert mask.view(-1)[lane::4].mean().item() == pytest.approx(1 - p, abs=0.006)
    flat = mask.view(-1)
    assert abs(torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1].item()) < 0.01


def test_fast_dropout_is_inverted_dropout_with_matching_gradient():
    x = torch.ones(400, 500, requires_grad=True)
    y = fast_dropout(x, 0.2, training=True)
    assert torch.unique(y).tolist() == pytest.approx([0.0, 1.25])
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # gradient flows exactly where the input was kept
    assert torch.equal(fast_dropout(x, 0.2, training=False), x)


def test_encoder_uses_fast_modules_and_matches_stock_attention(wp_tok):
    torch.manual_seed(0)
    fast = build_pretext_model(ModelConfig(preset="tiny"), wp_tok, []).eval()
    stock = build_pretext_model(ModelConfig(preset="tiny", attention="sdpa"), wp_tok, []).eval()
    stock.load_state_dict(fast.state_dict())
    assert fast.config._attn_implementation == ATTENTION_NAME
    assert any(isinstance(m, FastDropout) for m in fast.modules())
    ids = torch.randint(10, len(wp_tok), (3, 20))
    mask = torch.ones(3, 20, dtype=torch.long)
    mask[1, 12:] = 0
    with torch.no_grad():
        for m in (None, mask):
            assert torch.allclose(fast.encode(ids, m), stock.encode(ids, m), atol=1e-5)


def _tiny_bert(dropout: float):
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=64, attention_probs_dropout_prob=dropout)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return BertModel(config, add_pooling_layer=False)


@pytest.mark.parametrize("padded", [False, True])
def test_fused_attention_matches_stock_attention_and_its_gradients(padded):
    """The hand-written backward gives the gradients autograd gives through the stock module."""
    attention = _tiny_bert(0.0).encoder.layer[0].attention.self.double().train()
    hidden = torch.randn(3, 7, 32, dtype=torch.float64, requires_grad=True)
    mask = None
    if padded:
        keep = torch.ones(3, 7, dtype=torch.float64)
        keep[1, 4:] = 0
        mask = ((1 - keep) * torch.finfo(torch.float64).min)[:, None, None, :]
    stock = attention(hidden, mask)[0]
    grads = torch.autograd.grad(stock.square().sum(), [hidden, *attention.parameters()])
    fused = fused_self_attention(attention, hidden, mask)
    fused_grads = torch.autograd.grad(fused.square().sum(), [hidden, *attention.parameters()])
    assert torch.allclose(fused, stock, atol=1e-10)
    for got, want in zip(fused_grads, grads):
        assert torch.allclose(got, want, atol=1e-9)


def test_fused_attention_dropout_is_unbiased_and_masks_the_gradient():
    attention = _tiny_bert(0.3).encoder.layer[0].attention.self.train()
    hidden = torch.randn(2, 6, 32)
    with torch.no_grad():
        clean = fused_self_attention(attention.eval(), hidden, None)
        attention.train()
        draws = torch.stack([fused_self_attention(attention, hidden, None) for _ in range(3000)])
    assert not torch.allclose(draws[0], clean, atol=1e-3)  # dropout is applied in training
    assert torch.allclose(draws.mean(0), clean, atol=0.02)  # inverted dropout keeps the expectation
    torch.manual_seed(5)
    a = fused_self_attention(attention, hidden, None)
    torch.manual_seed(5)
    b = fused_self_attention(attention, hidden, None)
    assert torch.equal(a, b)  # the mask comes from torch's generator: seeded runs repeat exactly


def test_low_precision_layer_norm_stays_in_bf16_under_autocast():
    norm = torch.nn.LayerNorm(64)
    fast = LowPrecisionLayerNorm(64)
    fast.load_state_dict(norm.state_dict())
    x = torch.randn(8, 64) * 3 + 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fast(x.bfloat16())
        widened = fast(x)
    assert out.dtype == torch.bfloat16 and widened.dtype == torch.bfloat16
    assert torch.allclose(out.float(), norm(x), atol=0.05)
    assert torch.equal(fast(x), norm(x))  # without autocast it is nn.LayerNorm
