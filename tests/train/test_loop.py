"""The loop trains a real (tiny) model on real dialogue shards and leaves a usable run folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convssl.config import load_config
from convssl.train.checkpoint import list_checkpoints, read_best
from convssl.train.config import PretrainConfig
from convssl.train.loop import pretrain
from convssl.train.metrics import read_metrics
from tests.train._data import tiny_overrides


def _config(data, **extra):
    return load_config(PretrainConfig, "pretrain_tiny", tiny_overrides(data, **extra))


def test_tiny_mlm_run_learns_and_writes_an_hf_folder(data_dir, tmp_path):
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

    config = _config(data_dir, max_steps=60, lr=3e-3, warmup_steps=5, eval_every=30, checkpoint_every=30,
                     tensorboard=True)
    run = tmp_path / "run"
    result = pretrain(config, run)
    records = read_metrics(run / "metrics.jsonl")
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == list(range(1, 61))
    first, last = np.mean([r["loss"] for r in train[:5]]), np.mean([r["loss"] for r in train[-10:]])
    assert last < first - 0.8, (first, last)
    assert {"lr", "real_tokens", "tokens_per_s", "elapsed", "loss.mlm", "mlm.accuracy"} <= set(train[-1])
    assert train[-1]["real_tokens"] == result.tokens_seen > 60 * 8 * 10
    evals = [r for r in records if "val.loss" in r]
    assert [r["step"] for r in evals] == [30, 60] and evals[-1]["val.loss"] < evals[0]["val.loss"] + 0.5
    assert 0.0 <= evals[-1]["val.mlm.accuracy"] <= 1.0
    assert (run / "loss.png").stat().st_size > 5000
    assert list((run / "tb").glob("events.out.tfevents.*"))
    final = run / "final"
    model = AutoModel.from_pretrained(final, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(final, local_files_only=True)
    out = model(**tok(["hi there, how are you?"], return_tensors="pt"))
    assert out.last_hidden_state.shape[-1] == 32
    assert AutoModelForMaskedLM.from_pretrained(final, local_files_only=True) is not None
    card = (final / "README.md").read_text()
    assert "optimizer steps: 60" in card and "mlm" in card and str(data_dir) in card
    assert f"{result.tokens_seen:,}" in card
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 60


def test_checkpoints_keep_last_k_and_best(data_dir, tmp_path):
    config = _config(data_dir, max_steps=25, checkpoint_every=5, eval_every=5, keep_last=2, log_every=5)
    run = tmp_path / "run"
    pretrain(config, run)
    steps = [s for s, _ in list_checkpoints(run / "checkpoints")]
    best = read_best(run / "checkpoints")
    assert best is not None and best["metric"] == "val.loss" and best["step"] in steps
    evals = {r["step"]: r["val.loss"] for r in read_metrics(run / "metrics.jsonl") if "val.loss" in r}
    assert best["value"] == pytest.approx(min(evals.values()))
    assert steps[-2:] == [20, 25] and set(steps) == {20, 25, best["step"]}
    from transformers import AutoModel

    AutoModel.from_pretrained(run / "checkpoints" / f"step-{best['step']}", local_files_only=True)


def test_probe_drives_best_and_early_stopping(data_dir, tmp_path, shared_data):
    import csv

    probe = tmp_path / "probe.csv"
    with (shared_data / "banking77" / "train.csv").open(encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["category"] in {"card_arrival", "lost_or_stolen_card", "top_up_failed"}]
    with probe.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        per_label: dict[str, int] = {}
        for r in rows:
            if per_label.setdefault(r["category"], 0) < 40:
                per_label[r["category"]] += 1
                writer.writerow([r["text"], r["category"]])
    config = _config(data_dir, max_steps=60, eval_every=5, checkpoint_every=0, lr=1e-6, **{
        "probe.path": str(probe), "probe.patience": 2, "probe.max_examples": 120, "probe.every": 10})
    run = tmp_path / "run"
    result = pretrain(config, run)
    evals = [r for r in read_metrics(run / "metrics.jsonl") if "val.probe_accuracy" in r]
    assert all(0.2 < r["val.probe_accuracy"] <= 1.0 for r in evals)
    assert evals and all(r["step"] % 10 == 0 for r in evals)  # probe.every, while validation runs every 5
    best = read_best(run / "checkpoints")
    assert best["metric"] == "val.probe_accuracy"
    assert best["value"] == pytest.approx(max(r["val.probe_accuracy"] for r in evals))
    # lr 1e-6 barely moves the weights: the probe plateaus and patience 2 stops the run early.
    assert result.stopped_early and result.steps < 60


def test_a_probe_at_chance_level_is_logged_as_a_warning(caplog):
    from convssl.train.probe import warn_if_probe_at_chance

    labels = [f"intent{i % 77}" for i in range(770)]
    with caplog.at_level("WARNING", logger="convssl.train"):
        assert warn_if_probe_at_chance(0.015, labels, 50) is not None
        assert warn_if_probe_at_chance(0.41, labels, 100) is None
    flagged = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(flagged) == 1 and flagged[0].startswith("step 50: probe accuracy 1.5% is at chance level (1.3%")
