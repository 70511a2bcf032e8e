"""Throughput of one `mini` MLM training step (run with `pytest -m slow -s tests/pretext/test_speed.py`).

Measures CPU time of this process, so other work on a shared machine barely moves the number.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from convssl.models import ModelConfig, build_pretext_model
from convssl.pretext import ObjectiveConfig, build_objective
from tests.pretext._data import chitchat_dialogues, tokenize, trained_tokenizer


@pytest.mark.slow
def test_mini_mlm_step_throughput():
    torch.set_num_threads(1)
    tok = trained_tokenizer("wordpiece", 16000, 3000)
    obj = build_objective(ObjectiveConfig(name="mlm"), tok)
    batches = list(obj.batches(iter(tokenize(tok, chitchat_dialogues(600))), 32, np.random.default_rng(0)))[
        :8
    ]
    assert all(b.real_tokens == 32 * 128 for b in batches)  # packed: no padding at all
    torch.manual_seed(0)
    model = build_pretext_model(ModelConfig(preset="mini"), tok, [obj]).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)

    def step(batch):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = model(batch, obj)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for batch in batches[:2]:
        step(batch)
    cpu, wall = time.process_time(), time.perf_counter()
    for batch in batches[2:]:
        step(batch)
    tokens = sum(b.real_tokens for b in batches[2:])
    cpu_rate = tokens / (time.process_time() - cpu)
    wall_rate = tokens / (time.perf_counter() - wall)
    print(
        f"\nmini MLM, batch 32x128, bf16 autocast, 1 thread: {cpu_rate:.0f} real tokens/s of CPU time, "
        f"{wall_rate:.0f} tokens/s wall clock"
    )
    assert cpu_rate > 1000
