"""Two CPU processes (torchrun, gloo, DistributedDataParallel) train like one process on the same batches."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convssl.train.checkpoint import list_checkpoints
from convssl.train.metrics import read_metrics
from tests.train._data import tiny_overrides

REPO = Path(__file__).resolve().parents[2]
# Dropout off so that the per-rank dropout streams cannot explain a difference.
SETTINGS = {"max_steps": 8, "batch_size": 8, "log_every": 1, "eval_every": 4, "checkpoint_every": 4,
            "model.dropout": 0.0, "lr": 2e-3, "warmup_steps": 2}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(data: Path, run: Path, nproc: int, preset: str = "pretrain_tiny", **extra) -> str:
    cli = ["-m", "convssl", "pretrain", "--config", preset, "--out", str(run)]
    cli += tiny_overrides(data, **{**SETTINGS, **extra})
    if nproc > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                    "--nnodes=1", f"--master_port={_free_port()}", "--master_addr=127.0.0.1"]
        cli = launcher + cli
    else:
        cli = [sys.executable, *cli]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(cli, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize("preset", ["pretrain_tiny", "pretrain_mini_multitask"])
def test_two_processes_match_one_process_with_the_same_global_batch(preset, data_dir, tmp_path):
    """MLM alone, and MLM + contrastive (one DDP forward per micro-batch runs both objectives)."""
    one, two = tmp_path / "one", tmp_path / "two"
    _run(data_dir, one, 1, preset)
    _run(data_dir, two, 2, preset)
    a = [r for r in read_metrics(one / "metrics.jsonl") if "loss" in r]
    b = [r for r in read_metrics(two / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 9))
    # The two ranks' slices together are exactly the one-process batch.
    assert [r["real_tokens"] for r in a] == [r["real_tokens"] for r in b]
    losses_a, losses_b = np.array([r["loss"] for r in a]), np.array([r["loss"] for r in b])
    # Each rank averages over its own masked tokens, so the mean of rank means differs slightly
    # from the one-process token mean; gradients are averaged the same way.
    np.testing.assert_allclose(losses_b, losses_a, rtol=0.02)
    assert losses_b[-1] < losses_b[0]
    val_a = [r["val.loss"] for r in read_metrics(one / "metrics.jsonl") if "val.loss" in r]
    val_b = [r["val.loss"] for r in read_metrics(two / "metrics.jsonl") if "val.loss" in r]
    np.testing.assert_allclose(val_b, val_a, rtol=0.02)
    # Rank 0 alone wrote checkpoints, and they hold both ranks' random states.
    from safetensors.torch import load_file

    latest = list_checkpoints(two / "checkpoints")[-1][1]
    assert {"rank0.torch", "rank1.torch"} <= set(load_file(latest / "rng_states.safetensors"))
    assert (two / "final" / "config.json").exists()


@pytest.mark.slow
def test_shard_mode_two_processes_train(data_dir, tmp_path):
    """Each rank reads its own dialogues (ShardReader rank/world_size): no common batch, but it learns."""
    run = tmp_path / "shard"
    _run(data_dir, run, 2, data_parallel="shard", max_steps=12)
    losses = [r["loss"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert len(losses) == 12 and losses[-1] < losses[0]
