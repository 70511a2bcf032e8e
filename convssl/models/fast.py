"""Cheaper kernels for the same maths: dropout, LayerNorm and eager attention on CPU.

Measured on a `mini` MLM training step (2-core AVX-512 CPU, bf16 autocast), the stock modules
spent a third of the step outside the matrix products:

- `torch.nn.functional.dropout` draws one Bernoulli sample per element (~11% of the step), and a
  boolean keep-mask multiplied into a bf16 tensor is converted element by element first. Here
  the mask is built in the tensor's own dtype from the positions of the dropped elements,
  drawn as geometric gaps (about p random numbers per element instead of one): the same
  inverted dropout (keep with probability 1-p, scale by 1/(1-p)).
  The scale 1/(1-p) is folded into the (small) weight of the projection before each dropout,
  and the hidden dropouts share one pass with their residual addition.
- autocast runs LayerNorm and softmax in fp32, so every bf16 activation is widened before and
  narrowed after them. Both kernels accumulate in fp32 internally anyway; here they read and
  write bf16 directly (LayerNorm keeps fp32 weights), as a pure-bf16 model would.
- the MLM/CLM loss over the vocabulary: one softmax in the logits' dtype and an fp32 log-sum-exp
  per row give loss, accuracy and gradient (`vocab_cross_entropy`) where the stock path swept
  the logits about seven times, in fp32.

On other devices the stock dropout is used. The attention function is transformers' eager
attention with this dropout and the scale applied to the queries (a tensor half the size of the
scores). Weights, parameter names and the function computed stay those of the model.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_NAME = "convssl_eager"
LOW_PRECISION = (torch.bfloat16, torch.float16)
FUSED_ATTENTION = True
FUSED_OUTPUT = True


def _gaps(count: int, p: float, device: torch.device) -> torch.Tensor:
    """`count` independent Geometric(p) gaps (kept elements before the next dropped one), by
    inversion: floor(log(1 - U) / log(1 - p)), with 1 - U = (2**31 - r) / 2**31 for 31 random
    bits r, so the logarithm never sees zero."""
    words = torch.empty((count + 1) // 2, dtype=torch.int64, device=device).random_()
    bits = words.view(torch.int32)[:count].bitwise_and_(0x7FFFFFFF)
    one_minus_u = bits.neg_().add_(0x7FFFFFFF).to(torch.float32).add_(1.0)
    scale = 1.0 / math.log1p(-p)
    return one_minus_u.log_().sub_(31 * math.log(2.0)).mul_(scale).floor_().to(torch.int64)


def keep_mask(
    shape: torch.Size | tuple[int, ...], p: float, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """1.0 with probability 1 - p, else 0.0, independently per element, in `dtype`.

    Instead of a random number per element, the positions of the dropped elements are drawn:
    the gaps between them are geometric, so about p * n random 31-bit numbers and a cumulative
    sum give them, and they are zero-filled in a tensor of ones.
    """
    n = math.prod(shape)
    mask = torch.ones(n, dtype=dtype, device=device)
    if p <= 0.0 or n == 0:
        return mask.view(shape)
    if p >= 1.0:
        return mask.zero_().view(shape)
    draws = int(n * p + 6.0 * math.sqrt(n * p * (1.0 - p))) + 16  # enough gaps but once in ~1e9
    positions = _gaps(draws, p, device).add_(1).cumsum_(0).sub_(1)
    while int(positions[-1]) < n:
        more = _gaps(draws, p, device).add_(1).cumsum_(0).add_(positions[-1])
        positions = torch.cat([positions, more])
    positions = positions[: int(torch.searchsorted(positions, n))]
    return mask.index_fill_(0, positions, 0).view(shape)


class _MaskedScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x.mul(keep).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None, None


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training=True)
    return _MaskedScale.apply(x, keep_mask(x.shape, p, x.device, x.dtype), 1.0 / (1.0 - p))


class FastDropout(nn.Dropout):
    """Drop-in for nn.Dropout (same `p`, same state dict: none) using `fast_dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


def _autocast_off(x: torch.Tensor) -> bool:
    """True when autocast would widen this low-precision tensor: run the op in its dtype instead."""
    return x.dtype in LOW_PRECISION and torch.is_autocast_enabled(x.device.type)


class LowPrecisionLayerNorm(nn.LayerNorm):
    """nn.LayerNorm (same parameters) whose output is in autocast's dtype under autocast: bf16
    input is normalised by the mixed-precision kernel (fp32 statistics, fp32 weight and bias)
    without being widened, fp32 input (the embeddings) is normalised in fp32 and then narrowed,
    so the residual stream of the whole encoder stays in bf16."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = x.device.type
        if not torch.is_autocast_enabled(device):
            return super().forward(x)
        with torch.autocast(device, enabled=False):
            out = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return out.to(torch.get_autocast_dtype(device))


def softmax_last(scores: torch.Tensor) -> torch.Tensor:
    if _autocast_off(scores):
        with torch.autocast(scores.device.type, enabled=False):
            return torch.softmax(scores, dim=-1)
    return torch.softmax(scores, dim=-1)


def eager_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """transformers' eager attention (additive mask, softmax, dropout) with cheaper kernels."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query * scaling, key.transpose(2, 3))
    if attention_mask is not None:
        scores = scores + attention_mask.to(scores.dtype)
    probs = fast_dropout(softmax_last(scores), dropout, module.training)
    out = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return out, None


class _SelfAttention(torch.autograd.Function):
    """Softmax attention with dropout over a fused [tokens, 3 x hidden] projection, by hand.

    The queries arrive scaled (the scale is folded into the projection). One permuted copy lays
    q, k and v out for batched matmuls and one lays their gradients back (autograd through views
    and `unbind` made six more copies and zero-filled buffers). The values arrive multiplied by
    the dropout scale 1/(1-p) (folded into their projection), so only the 0/1 keep-mask touches
    the [length x length] probabilities and nothing else is rescaled, forward or backward.
    """

    @staticmethod
    def forward(
        ctx: Any, qkv: torch.Tensor, shape: tuple[int, int, int, int], mask: torch.Tensor | None, p: float
    ) -> torch.Tensor:
        batch, length, heads, dim = shape
        qkv3 = qkv.view(batch, length, 3, heads, dim).permute(2, 0, 3, 1, 4).contiguous()
        q, k, v = qkv3.view(3, batch * heads, length, dim).unbind(0)
        scores = torch.bmm(q, k.transpose(1, 2))
        if mask is not None:
            scores = scores.view(batch, heads, length, length).add_(mask).view(batch * heads, length, length)
        probs = softmax_last(scores)
        keep = keep_mask(probs.shape, p, probs.device, probs.dtype) if p > 0 else None
        kept = probs if keep is None else probs.mul(keep)
        out = torch.bmm(kept, v)
        ctx.save_for_backward(qkv3, probs, kept, keep)
        ctx.shape = shape
        return out.view(batch, heads, length, dim).transpose(1, 2).reshape(batch * length, heads * dim)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        qkv3, probs, kept, keep = ctx.saved_tensors
        batch, length, heads, dim = ctx.shape
        q, k, v = qkv3.view(3, batch * heads, length, dim).unbind(0)
        g = grad_out.view(batch, length, heads, dim).transpose(1, 2).reshape(batch * heads, length, dim)
        grads = torch.empty_like(qkv3).view(3, batch * heads, length, dim)
        torch.bmm(kept.transpose(1, 2), g, out=grads[2])
        grad_probs = torch.bmm(g, v.transpose(1, 2))
        if keep is not None:
            grad_probs.mul_(keep)
        grad_scores = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)
        torch.bmm(grad_scores, k, out=grads[0])
        torch.bmm(grad_scores.transpose(1, 2), q, out=grads[1])
        grad_qkv = grads.view(3, batch, heads, length, dim).permute(1, 3, 0, 2, 4).reshape(batch * length, -1)
        return grad_qkv, None, None, None


def fused_self_attention(module: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """BertSelfAttention's output from one q/k/v projection (the three weights concatenated,
    the query's with the attention scale and the value's with the dropout scale folded in)."""
    batch, length, width = hidden.shape
    scale = module.scaling
    p = module.dropout.p if module.training else 0.0
    kept = 1.0 / (1.0 - p)  # inverted dropout's scale, carried by the values
    weight = torch.cat([module.query.weight * scale, module.key.weight, module.value.weight * kept])
    bias = torch.cat([module.query.bias * scale, module.key.bias, module.value.bias * kept])
    qkv = F.linear(hidden.reshape(batch * length, width), weight, bias)
    mask = None if attention_mask is None else attention_mask.to(qkv.dtype)
    shape = (batch, length, module.num_attention_heads, module.attention_head_size)
    return _SelfAttention.apply(qkv, shape, mask, p).view(batch, length, -1)


class _DropoutResidual(torch.autograd.Function):
    """`residual + keep * y` in one pass (addcmul), and `grad * keep` as the only backward work."""

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor, keep: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(keep)
        return torch.addcmul(residual, y, keep)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, torch.Tensor]:
        (keep,) = ctx.saved_tensors
        return grad * keep, None, grad


def _output_forward(self: nn.Module, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
    """BertSelfOutput / BertOutput: LayerNorm(dropout(dense(h)) + residual), with the dropout
    scale folded into the (small) dense weight and the keep-mask and residual applied together."""
    p = self.dropout.p
    if not self.training or not 0.0 < p < 1.0 or hidden_states.device.type != "cpu":
        return type(self).forward(self, hidden_states, input_tensor)
    kept = 1.0 / (1.0 - p)
    y = F.linear(hidden_states, self.dense.weight * kept, self.dense.bias * kept)
    keep = keep_mask(y.shape, p, y.device, y.dtype)
    return self.LayerNorm(_DropoutResidual.apply(y, keep, input_tensor.to(y.dtype)))


def _fused_forward(self: nn.Module, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                   *args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
    stock = args or kwargs.get("cache") is not None or hidden_states.device.type != "cpu"
    if stock or (self.training and self.dropout.p >= 1.0):
        return type(self).forward(self, hidden_states, attention_mask, *args, **kwargs)
    return fused_self_attention(self, hidden_states, attention_mask), None


def register_attention() -> None:
    """Make `convssl_eager` a transformers attention implementation (with eager's masks)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTENTION_NAME, eager_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)


def speed_up_encoder(backbone: nn.Module, *, low_precision_norm: bool = True) -> None:
    """Swap in the cheaper dropout, LayerNorm and attention; weights and maths stay the model's.
    `low_precision_norm=False` keeps the stock LayerNorm, so the residual stream stays fp32 under
    autocast."""
    register_attention()
    for module in list(backbone.modules()):
        for attr, sub in list(module.named_children()):
            if type(sub) is nn.Dropout:
                fast = FastDropout(sub.p)
                fast.train(sub.training)  # a new module starts in training mode: keep the model's mode
                setattr(module, attr, fast)
            elif type(sub) is nn.LayerNorm and low_precision_norm:
                sub.__class__ = LowPrecisionLayerNorm
        name = type(module).__name__
        if name == "BertSelfAttention" and FUSED_ATTENTION:
            module.forward = _fused_forward.__get__(module)
        elif name in ("BertSelfOutput", "BertOutput") and FUSED_OUTPUT:
            module.forward = _output_forward.__get__(module)
    backbone.config._attn_implementation = ATTENTION_NAME


TINY_PROBABILITY = 1e-30
"""Below this a label's fp32 probability is near underflow; such rows take their log-sum-exp
instead, so the loss stays exact for any logit gap."""


def _chunked_softmax(logits: torch.Tensor, labels: torch.Tensor, chunk_bytes: int = 1 << 21
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(softmax in the logits' dtype, each label's fp32 probability, whether the label is the
    row's top logit) in one sweep, a few rows at a time: each chunk is widened to fp32 in cache
    (one fp32 copy of all the logits is tens of MB of fresh pages), its softmax taken there, the
    label's probability read off and the rest narrowed into the output."""
    probs = torch.empty_like(logits)
    p_label = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
    correct = torch.empty(logits.shape[0], dtype=torch.bool, device=logits.device)
    rows = max(1, chunk_bytes // (4 * logits.shape[1]))
    for start in range(0, logits.shape[0], rows):
        part = slice(start, start + rows)
        p = torch.softmax(logits[part].float(), dim=1)
        torch.gather(p, 1, labels[part].unsqueeze(1), out=p_label[part].unsqueeze(1))
        torch.ge(p_label[part], p.amax(dim=1), out=correct[part])  # exp is monotonic: top p = top logit
        probs[part].copy_(p)
    return probs, p_label, correct


class _VocabCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of low-precision logits with fp32 statistics.

    The stock path widens the [tokens x vocabulary] logits to fp32, takes log_softmax, gathers,
    zero-fills a gradient, scatters into it, runs log_softmax's backward and narrows the result
    again: about seven sweeps of the biggest tensor in a small model's step, plus an argmax for
    the accuracy. Here one chunked sweep takes the softmax in fp32 and keeps it in the logits'
    dtype, so the loss (-log of the label's fp32 probability) and the label's gradient p - 1 are
    fp32-exact; the other gradients are p / n rounded to bf16, where autocast rounded the fp32
    ones anyway. The backward scales the saved probabilities in place: no second big tensor.
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs, p_label, correct = _chunked_softmax(logits, labels)
        log_p = p_label.log()
        tiny = (p_label < TINY_PROBABILITY).nonzero().squeeze(1)
        if tiny.numel():
            rows = logits.index_select(0, tiny).float()
            exact = rows.gather(1, labels.index_select(0, tiny).unsqueeze(1)).squeeze(1) - rows.logsumexp(1)
            log_p.index_copy_(0, tiny, exact)
        ctx.save_for_backward(probs, p_label, labels)
        ctx.mark_non_differentiable(correct)
        return -log_p.mean(), correct

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, _: Any) -> tuple[torch.Tensor, None]:
        probs, p_label, labels = ctx.saved_tensors
        n = probs.shape[0]
        scale = grad / n
        out = probs.mul_(scale)  # the probabilities are not needed again
        # At the labels p - 1 is taken in fp32: p rounded to bf16 first would cancel badly when p ~ 1.
        out[torch.arange(n, device=probs.device), labels] = ((p_label - 1.0) * scale).to(out.dtype)
        return out, None


def vocab_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(mean cross-entropy, accuracy) over the rows of [tokens x vocabulary] logits.

    Low-precision logits take the fused path above; fp32 logits take F.cross_entropy. Labels
    of -100 (F.cross_entropy's ignore_index) are left out.
    """
    if bool((labels < 0).any()):
        kept = (labels >= 0).nonzero().squeeze(1)
        logits, labels = logits.index_select(0, kept), labels.index_select(0, kept)
    if labels.numel() == 0:
        return logits.sum() * 0.0, 0.0
    if logits.dtype not in LOW_PRECISION:
        loss = F.cross_entropy(logits, labels)
        correct = logits.detach().argmax(-1) == labels
    else:
        loss, correct = _VocabCrossEntropy.apply(logits, labels)
    return loss, float(correct.float().mean())
