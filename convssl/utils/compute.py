"""Reproducible, CPU-friendly torch settings: seeding, thread count and bf16 autocast.

Every training and inference path goes through these, so that "bf16" or "seed" mean the same
thing in pretraining, fine-tuning, evaluation and serving.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (numpy takes 32 bits)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def set_threads(threads: int) -> None:
    """Use `threads` intra-op threads; 0 or less keeps torch's default."""
    if threads > 0:
        torch.set_num_threads(threads)


def autocast(enabled: bool, device_type: str = "cpu") -> contextlib.AbstractContextManager:
    """bf16 autocast on `device_type` when `enabled`, else a no-op context.

    A fresh context each call: autocast state is per thread, and the serving pool runs model
    calls on worker threads."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
