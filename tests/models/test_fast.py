"""The cheaper dropout and attention compute the same maths as the stock modules."""

from __future__ import annotations

import pytest
import torch

from convssl.models import ModelConfig, build_pretext_model
from convssl.models.fast import (
    ATTENTION_NAME,
    FastDropout,
    LowPrecisionLayerNorm,
    _chunked_softmax,
    fast_dropout,
    fused_self_attention,
    keep_mask,
    speed_up_encoder,
    vocab_cross_entropy,
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("p", [0.1, 0.3])
def test_keep_mask_rate_and_independence(p, dtype):
    raw = keep_mask((1001, 999), p, torch.device("cpu"), dtype)
    assert raw.dtype == dtype and set(torch.unique(raw).tolist()) == {0.0, 1.0}
    mask = raw.float()
    assert mask.mean().item() == pytest.approx(1 - p, abs=0.003)
    for start in range(4):  # every fourth element, from each offset, has the right rate
        assert mask.view(-1)[start::4].mean().item() == pytest.approx(1 - p, abs=0.006)
    flat = mask.view(-1)
    for lag in (1, 2, 7):  # neighbours are independent
        assert abs(torch.corrcoef(torch.stack([flat[:-lag], flat[lag:]]))[0, 1].item()) < 0.01


def test_keep_mask_has_the_exact_rate_and_binomial_spread():
    """Drawn as geometric gaps between dropped elements: over 20 masks of 1M elements the rate
    is p (not p rounded) and the count varies as a binomial count does."""
    rates = []
    for seed in range(20):
        torch.manual_seed(seed)
        rates.append(1 - keep_mask((1024, 1024), 0.1, torch.device("cpu"), torch.bfloat16).float().mean().item())
    sd = (0.1 * 0.9 / 2**20) ** 0.5
    assert abs(sum(rates) / 20 - 0.1) < 4 * sd / 20**0.5
    assert 0.5 * sd < torch.tensor(rates).std().item() < 1.6 * sd
    assert torch.equal(keep_mask((3, 5), 0.0, torch.device("cpu")), torch.ones(3, 5))
    assert torch.equal(keep_mask((3, 5), 1.0, torch.device("cpu")), torch.zeros(3, 5))


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


def _tiny_bert(dropout: float, hidden_dropout: float = 0.1):
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=64, attention_probs_dropout_prob=dropout,
                        hidden_dropout_prob=hidden_dropout)
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


def test_fused_attention_gradient_with_dropout_matches_finite_differences():
    """With the same masks each call (reseeded), the hand-written backward through dropout is the
    numerical gradient of the forward (torch.autograd.gradcheck, float64)."""
    attention = _tiny_bert(0.3).encoder.layer[0].attention.self.double().train()
    hidden = torch.randn(2, 5, 32, dtype=torch.float64, requires_grad=True)

    def reseeded(x):
        torch.manual_seed(11)
        return fused_self_attention(attention, x, None)

    assert not torch.allclose(reseeded(hidden), fused_self_attention(attention.eval(), hidden, None))
    attention.train()
    assert torch.autograd.gradcheck(reseeded, (hidden,), eps=1e-6, atol=1e-6)


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


@pytest.mark.parametrize("part", ["attention.output", "output"])
def test_output_dropout_with_residual_is_the_stock_maths_with_the_same_mask(part):
    """dense -> dropout -> + residual -> LayerNorm, with the scale folded into the weight: the
    output and every gradient match the stock expression under the same keep-mask."""
    bert = _tiny_bert(0.0, hidden_dropout=0.25).double()
    speed_up_encoder(bert)
    module = bert.encoder.layer[0].get_submodule(part).train()
    assert "forward" in vars(module)  # the fused forward is installed on the module
    width = module.dense.in_features
    x = torch.randn(3, 5, width, dtype=torch.float64, requires_grad=True)
    residual = torch.randn(3, 5, 32, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(7)
    fused = module(x, residual)
    torch.manual_seed(7)
    keep = keep_mask((3, 5, 32), 0.25, x.device, x.dtype)
    stock = module.LayerNorm(module.dense(x) * keep / 0.75 + residual)
    assert 0 < keep.sum() < keep.numel()
    assert torch.allclose(fused, stock, atol=1e-12)
    weights = [x, residual, *module.parameters()]
    got = torch.autograd.grad(fused.square().sum(), weights)
    want = torch.autograd.grad(stock.square().sum(), weights)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, atol=1e-10)
    module.eval()
    assert torch.equal(module(x, residual), module.LayerNorm(module.dense(x) + residual))


@pytest.mark.parametrize("autocast", [False, True])
def test_vocab_cross_entropy_matches_the_stock_loss_gradient_and_accuracy(autocast):
    torch.manual_seed(0)
    logits = (torch.randn(64, 500) * 4).bfloat16()
    labels = torch.randint(0, 500, (64,))
    labels[:8] = logits[:8].float().argmax(1)  # some rows predicted right
    labels[60:] = -100  # ignored, as F.cross_entropy ignores them
    ours = logits.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss, accuracy = vocab_cross_entropy(ours, labels)
    loss.backward()
    ref = logits.clone().requires_grad_()
    stock = torch.nn.functional.cross_entropy(ref.float(), labels)
    stock.backward()
    kept = labels >= 0
    assert loss.item() == pytest.approx(stock.item(), rel=1e-6)
    assert accuracy == pytest.approx((logits.float().argmax(1) == labels)[kept].float().mean().item())
    assert ours.grad.dtype == torch.bfloat16
    assert torch.allclose(ours.grad.float(), ref.grad.float(), atol=1e-6, rtol=1e-2)
    assert torch.all(ours.grad[~kept] == 0)


def test_vocab_cross_entropy_keeps_a_confident_label_gradient_precise():
    """p ~ 1 at the label: p - 1 is taken in fp32, not from p rounded to bf16 first."""
    logits = torch.zeros(2, 100)
    logits[:, 3] = 9.0
    ours = logits.bfloat16().requires_grad_()
    loss, accuracy = vocab_cross_entropy(ours, torch.tensor([3, 3]))
    loss.backward()
    ref = logits.clone().requires_grad_()
    torch.nn.functional.cross_entropy(ref, torch.tensor([3, 3])).backward()
    assert accuracy == 1.0
    assert ours.grad[0, 3].item() == pytest.approx(ref.grad[0, 3].item(), rel=1e-2)
    fp32_loss, _ = vocab_cross_entropy(logits, torch.tensor([3, 3]))  # fp32 logits: the stock path
    assert fp32_loss.item() == pytest.approx(loss.item(), rel=1e-4)


def test_vocab_cross_entropy_stays_exact_when_the_label_probability_underflows():
    """A logit gap past fp32's exp range: the row falls back to its log-sum-exp, no inf."""
    logits = torch.zeros(3, 50)
    logits[0, 7] = 120.0  # label 0 of row 0 is ~e^-120 likely
    logits[1, 2] = 3.0
    logits[2, 9] = 1.0
    labels = torch.tensor([0, 2, 5])
    ours = logits.bfloat16().requires_grad_()
    loss, accuracy = vocab_cross_entropy(ours, labels)
    loss.backward()
    ref = logits.clone().requires_grad_()
    stock = torch.nn.functional.cross_entropy(ref, labels)
    stock.backward()
    assert torch.isfinite(loss) and loss.item() == pytest.approx(stock.item(), rel=1e-6)
    assert accuracy == pytest.approx(1 / 3)
    assert torch.allclose(ours.grad.float(), ref.grad, atol=1e-3)


def test_vocab_cross_entropy_chunks_give_the_same_answer_as_one_sweep():
    torch.manual_seed(1)
    logits = (torch.randn(37, 300) * 3).bfloat16()
    labels = torch.randint(0, 300, (37,))
    whole = _chunked_softmax(logits, labels, chunk_bytes=1 << 30)
    chunked = _chunked_softmax(logits, labels, chunk_bytes=4 * 300 * 5)  # 5 rows at a time
    for a, b in zip(whole, chunked):
        assert torch.equal(a, b)
    assert torch.allclose(whole[0].float(), torch.softmax(logits.float(), 1), atol=4e-3)
