"""A run killed (SIGKILL) or stopped (Ctrl-C) and resumed logs exactly the losses of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from convssl.train.checkpoint import TRAINER_STATE, list_checkpoints
from convssl.train.metrics import read_metrics
from tests.train._data import tiny_overrides

REPO = Path(__file__).resolve().parents[2]
# Dropout stays on (0.1) so that restoring the torch generator is part of what is checked;
# evaluation every 10 steps checks that evaluation does not move any generator.
SETTINGS = {"max_steps": 70, "checkpoint_every": 10, "eval_every": 10, "log_every": 1, "keep_last": 3}


def _losses(run: Path) -> list[tuple[int, dict[str, float]]]:
    keys = ("loss", "loss.mlm", "mlm.accuracy", "lr", "val.loss", "val.mlm.accuracy", "real_tokens")
    return [(r["step"], {k: r[k] for k in keys if k in r}) for r in read_metrics(run / "metrics.jsonl")]


def _launch(data: Path, run: Path, resume: bool = False) -> subprocess.Popen:
    args = [sys.executable, "-m", "convssl", "pretrain", "--config", "pretrain_tiny", "--out", str(run)]
    args += ["--resume"] if resume else []
    args += tiny_overrides(data, **SETTINGS)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_checkpoint(proc: subprocess.Popen, run: Path, step: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = list_checkpoints(run / "checkpoints")
        # Whatever is visible under a checkpoint name is complete (atomic rename).
        assert all((path / TRAINER_STATE).exists() and (path / "model.safetensors").exists() for _, path in found)
        if any(s >= step for s, _ in found):
            return
        if proc.poll() is not None:
            pytest.fail(f"run ended before step {step}: {proc.stdout.read()}")
        time.sleep(0.01)
    pytest.fail("no checkpoint appeared")


@pytest.fixture
def reference(data_dir, tmp_path) -> list:
    run = tmp_path / "uninterrupted"
    proc = _launch(data_dir, run)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    losses = _losses(run)
    assert [s for s, _ in losses if "loss" in _] == list(range(1, 71))
    return losses


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_or_interrupted_run_resumes_with_identical_losses(sig, data_dir, tmp_path, reference):
    run = tmp_path / "interrupted"
    proc = _launch(data_dir, run)
    _wait_for_checkpoint(proc, run, 20)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130, out
        assert "--resume" in out
        # Ctrl-C saved the step it had finished, so nothing is lost.
        last_logged = max(r["step"] for r in read_metrics(run / "metrics.jsonl"))
        assert list_checkpoints(run / "checkpoints")[-1][0] == last_logged
    stopped_at = list_checkpoints(run / "checkpoints")[-1][0]
    assert 20 <= stopped_at < 70
    resumed = _launch(data_dir, run, resume=True)
    out, _ = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, out
    got = _losses(run)
    first_diff = next((i for i, (a, b) in enumerate(zip(got, reference)) if a != b), None)
    assert got == reference, (sig, stopped_at, first_diff, got[first_diff : first_diff + 2], reference[first_diff : first_diff + 2])  # bit-identical: every loss, accuracy, lr and token count
    assert (run / "final" / "config.json").exists()
