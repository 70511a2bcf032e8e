"""The cheaper dropout and attention compute the same maths as the stock modules."""

from __future__ import annotations

import pytest
import torch

from convssl.models import ModelConfig, build_pretext_model
from convssl.models.fast import ATTENTION_NAME, FastDropout, fast_dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_keep_mask_rate_and_independence(p):
    mask = keep_mask((1001, 999), p, torch.device("cpu")).float()
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
