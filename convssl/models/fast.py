"""Cheaper kernels for the same maths: dropout and eager attention on CPU.

On CPU, `torch.nn.functional.dropout` draws one Bernoulli sample per element, which took ~11% of
a `mini` MLM training step. Here the keep-mask comes from 16-bit lanes of bulk 64-bit random
words compared with a threshold: the same inverted dropout (keep with probability 1-p, scale by
1/(1-p)) with p rounded to 1/32768 at worst, several times cheaper to draw. On other
devices the stock dropout is used. The attention function is transformers' eager attention with
this dropout and the scale applied to the queries (a tensor half the size of the scores).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_NAME = "convssl_eager"


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device) -> torch.Tensor:
    """Boolean mask, True with probability 1 - p.

    `random_()` on int64 gives 63 uniform bits: the three low 16-bit lanes of each word are
    uniform over int16 and the top lane over [0, 32767], so each lane gets its own threshold and
    one comparison over a (words, 4) view makes four mask bits per random word, with no copy.
    """
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_()
    lanes = words.view(torch.int16).view(-1, 4)
    low = -32768 + round(p * 65536)
    high = min(round(p * 32768), 32767)
    threshold = torch.tensor([low, low, low, high], dtype=torch.int16, device=device)
    return (lanes >= threshold).view(-1)[:n].view(shape)


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
    return _MaskedScale.apply(x, keep_mask(x.shape, p, x.device), 1.0 / (1.0 - p))


class FastDropout(nn.Dropout):
    """Drop-in for nn.Dropout (same `p`, same state dict: none) using `fast_dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


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
        scores = scores + attention_mask
    probs = fast_dropout(torch.softmax(scores, dim=-1), dropout, module.training)
    out = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return out, None


def register_attention() -> None:
    """Make `convssl_eager` a transformers attention implementation (with eager's masks)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTENTION_NAME, eager_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)


def speed_up_encoder(backbone: nn.Module) -> None:
    """Swap in the cheaper dropout and attention; weights and maths stay those of the model."""
    register_attention()
    for name, child in list(backbone.named_modules()):
        for attr, sub in list(child.named_children()):
            if type(sub) is nn.Dropout:
                setattr(child, attr, FastDropout(sub.p))
        del name
    backbone.config._attn_implementation = ATTENTION_NAME
