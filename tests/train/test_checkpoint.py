"""Atomic checkpoints, retention of the last K and the best, and the RNG round trip."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from convssl.train import checkpoint as ckpt
from convssl.train.optim import build_optimizer, build_scheduler


def _parts():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    opt = build_optimizer(model, lr=0.01, weight_decay=0.1)
    sched = build_scheduler(opt, 2, 10, "cosine")
    loss = model(torch.randn(3, 4)).sum()
    loss.backward()
    opt.step()
    sched.step()
    return model, opt, sched


def _save(tmp_path, step, model, opt, sched, write=lambda out: (out / "config.json").write_text("{}")):
    return ckpt.save_checkpoint(
        tmp_path, step, write, model, opt, sched, {"tokens_seen": step * 10}, [ckpt.capture_rng_state()]
    )


def test_checkpoint_round_trip_restores_weights_optimizer_schedule_and_rng(tmp_path):
    model, opt, sched = _parts()
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    folder = _save(tmp_path, 7, model, opt, sched)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    model2, opt2, sched2 = _parts()
    with torch.no_grad():
        for p in model2.parameters():
            p.add_(1.0)
    state = ckpt.load_checkpoint(folder, model2, opt2, sched2)
    assert state["step"] == 7 and state["tokens_seen"] == 70
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    assert sched2.last_epoch == sched.last_epoch
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"]) for k in s1)


def test_failed_write_leaves_no_visible_checkpoint_and_is_cleaned(tmp_path):
    model, opt, sched = _parts()

    def crash(out):
        (out / "config.json").write_text("{}")
        raise OSError("disk full")

    with pytest.raises(OSError):
        _save(tmp_path, 5, model, opt, sched, write=crash)
    assert not (tmp_path / "step-5").exists()
    assert ckpt.list_checkpoints(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    ckpt.remove_stale_temporaries(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_retention_keeps_last_k_and_the_best(tmp_path):
    model, opt, sched = _parts()
    for step in (10, 20, 30, 40, 50):
        _save(tmp_path, step, model, opt, sched)
    ckpt.write_best(tmp_path, 20, "val.loss", 1.5)
    removed = ckpt.apply_retention(tmp_path, keep_last=2, best_step=ckpt.read_best(tmp_path)["step"])
    assert sorted(p.name for p in removed) == ["step-10", "step-30"]
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [20, 40, 50]
    assert ckpt.latest_checkpoint(tmp_path).name == "step-50"
    assert json.loads((tmp_path / "best.json").read_text())["path"] == "step-20"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
