"""The optimisation pieces full fine-tuning and SetFit share: one AdamW recipe, one step.

One rule for weight decay (none on biases and norms), one warm-up/decay schedule and one
clipped optimiser step, so that both methods differ only in their loss.
"""

from __future__ import annotations

import numpy as np
import torch

from convssl.train.optim import fused_adamw


def linear_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def param_groups(model: torch.nn.Module, lr: float, head_lr: float, weight_decay: float) -> list[dict]:
    """No decay on biases and norms; the freshly initialised head learns faster than the body."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_head = name.startswith(("classifier", "score", "head"))
        no_decay = param.ndim < 2 or "norm" in name.lower() or name.endswith("bias")
        groups.setdefault((is_head, no_decay), []).append(param)
    return [
        {"params": params, "lr": head_lr if is_head else lr, "weight_decay": 0.0 if no_decay else weight_decay}
        for (is_head, no_decay), params in groups.items()
    ]


def adamw_with_schedule(model: torch.nn.Module, lr: float, weight_decay: float, warmup: int, total: int,
                        head_lr: float | None = None) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over `param_groups` and its linear warm-up/decay schedule."""
    optimizer = fused_adamw(param_groups(model, lr, lr if head_lr is None else head_lr, weight_decay),
                            next(model.parameters()).device)
    return optimizer, linear_schedule(optimizer, warmup, total)


def optimizer_step(model: torch.nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                   scheduler: torch.optim.lr_scheduler.LRScheduler, max_grad_norm: float = 1.0) -> float:
    """Backward, clip, step, schedule, clear; returns the loss as a float."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def class_weight_tensor(label_ids: np.ndarray, num_labels: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1, so rare intents are not drowned out."""
    counts = np.bincount(label_ids, minlength=num_labels).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (num_labels * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights / weights[counts > 0].mean(), dtype=torch.float32)


def fit_head(embeddings: np.ndarray, label_ids: np.ndarray, num_labels: int, c: float,
             seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression; returns (weight [C, D], bias [C]) for a torch linear map."""
    from sklearn.linear_model import LogisticRegression

    present = np.unique(label_ids)
    lr = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    lr.fit(embeddings, label_ids)
    dim = embeddings.shape[1]
    weight = np.zeros((num_labels, dim), dtype=np.float32)
    bias = np.full(num_labels, -1e4, dtype=np.float32)  # labels without examples are never chosen
    if len(present) == 2:  # sklearn keeps one row for two classes: logits [0, w.x + b]
        weight[present[1]], bias[present[1]], bias[present[0]] = lr.coef_[0], lr.intercept_[0], 0.0
    else:
        weight[lr.classes_], bias[lr.classes_] = lr.coef_, lr.intercept_
    return torch.from_numpy(weight), torch.from_numpy(bias)
