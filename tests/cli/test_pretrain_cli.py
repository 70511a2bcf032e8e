"""`convssl pretrain` end to end through the command line, and its error messages."""

from __future__ import annotations

import json

import pytest

from convssl.cli import main
from convssl.train.metrics import read_metrics
from tests.train._data import prepared_data, tiny_overrides


@pytest.fixture
def data_dir(shared_data, tmp_path):
    return prepared_data(shared_data, tmp_path / "data")


def _overrides(data, **extra):
    return [o for o in tiny_overrides(data, **extra) if not o.startswith("data=")]


def test_pretrain_cli_runs_then_resume_continues_to_more_steps(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["pretrain", "--config", "pretrain_tiny", "--data", str(data_dir), "--out", str(run)]
    assert main([*args, *_overrides(data_dir, max_steps=12, checkpoint_every=6, eval_every=6)]) == 0
    first = capsys.readouterr().out
    assert json.loads(first[first.index("{"):])["steps"] == 12
    assert (run / "config.yaml").exists() and (run / "final" / "config.json").exists()
    assert f"run folder {run}" in first
    log = (run / "pretrain.log").read_text(encoding="utf-8")
    assert "step 12: loss" in log and "evaluation" in log and f"model in {run / 'final'}" in log
    # Without --resume an existing run is not overwritten.
    assert main([*args, *_overrides(data_dir, max_steps=12)]) == 2
    assert "--resume" in capsys.readouterr().err
    # --resume with no --config reuses RUN/config.yaml; a larger max_steps continues the run.
    assert main(["pretrain", "--out", str(run), "--resume", "max_steps=18"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["steps"] == 18
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(1, 19))


def test_pretrain_cli_reports_bad_input_clearly(data_dir, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["pretrain", "--config", "pretrain_tiny", "--out", out, "data=" + str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["pretrain", "--config", "pretrain_tiny", "--data", str(data_dir), "--out", out, "lrr=1"]) == 2
    assert "lrr" in capsys.readouterr().err
    assert main(["pretrain", "--config", "pretrain_tiny", "--data", str(data_dir), "--out", out, "schedule=step"]) == 2
    assert "schedule" in capsys.readouterr().err
    assert main(["pretrain", "--config", "no_such_preset", "--data", str(data_dir), "--out", out]) == 2
    assert "no_such_preset" in capsys.readouterr().err
    assert main(["pretrain", "--config", "pretrain_tiny", "--out", out]) == 2
    assert "data" in capsys.readouterr().err
    # A typo on the command line is blamed on the command line, with the key it probably meant.
    assert main(["pretrain", "--config", "pretrain_tiny", "--data", str(data_dir), "--out", out, "max_step=10"]) == 2
    assert "error: command line: max_step=10: unknown key max_step; did you mean max_steps?" in capsys.readouterr().err
    assert main(["pretrain", "--config", "pretrain_tiny", "--data", str(data_dir), "--out", out, "model.arch=bertt"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convssl pretrain: error: command line: model.arch: 'bertt' is not one of") and len(err.splitlines()) == 1
    assert main(["pretrain", "--config", "pretrain_tinny", "--data", str(data_dir), "--out", out]) == 2
    assert "did you mean pretrain_tiny?" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # no bad input left a run folder behind


def test_every_pretrain_preset_loads(tmp_path):
    from convssl.config import PRESET_DIR, load_config
    from convssl.train.config import PretrainConfig

    presets = sorted(p.stem for p in PRESET_DIR.glob("pretrain*.yaml"))
    assert {"pretrain_tiny", "pretrain_mini_mlm", "pretrain_mini_multitask", "pretrain_minilm_dapt"} <= set(presets)
    for name in presets:
        config = load_config(PretrainConfig, name, [f"data={tmp_path}"])
        config.validate()
        assert config.objectives


def test_resume_continues_a_run_saved_with_every_objective_setting(data_dir, tmp_path, capsys):
    """Run folders saved before settings were checked per objective list all of them in config.yaml."""
    import dataclasses

    import yaml

    from convssl.pretext.base import ObjectiveConfig

    run = tmp_path / "run"
    args = ["pretrain", "--config", "pretrain_tiny", "--data", str(data_dir), "--out", str(run)]
    assert main([*args, *_overrides(data_dir, max_steps=6, checkpoint_every=6, eval_every=6)]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    every = {f.name: getattr(ObjectiveConfig(), f.name) for f in dataclasses.fields(ObjectiveConfig)}
    saved["objectives"] = [{**every, **saved["objectives"][0]}]
    assert "view_drop" in saved["objectives"][0] and saved["objectives"][0]["name"] == "mlm"
    (run / "config.yaml").write_text(yaml.safe_dump(saved), encoding="utf-8")
    capsys.readouterr()
    assert main(["pretrain", "--out", str(run), "--resume", "max_steps=9"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["steps"] == 9
    # The same file given by hand is still refused: the setting belongs to another objective.
    assert main([*args[:-2], "--out", str(tmp_path / "other"), "--config", str(run / "config.yaml")]) == 2
    assert "view_drop" in capsys.readouterr().err


def test_freeze_layers_trains_only_the_top_blocks(data_dir, tmp_path, capsys):
    """`model.freeze_layers=1` on the 2-block tiny model: between two checkpoints of the run the
    embeddings and block 0 stay bit-identical while block 1 moves."""
    from safetensors.torch import load_file

    run = tmp_path / "run"
    args = ["pretrain", "--config", "pretrain_tiny", "--data", str(data_dir), "--out", str(run)]
    overrides = _overrides(data_dir, max_steps=6, checkpoint_every=3, eval_every=3, lr=3e-3)
    assert main([*args, *overrides, "model.freeze_layers=1"]) == 0
    assert "1 of 2 blocks train" in (run / "pretrain.log").read_text(encoding="utf-8")
    early = load_file(run / "checkpoints" / "step-3" / "model.safetensors")
    late = load_file(run / "final" / "model.safetensors")
    frozen = [k for k in early if "embeddings." in k or ".layer.0." in k]
    trained = [k for k in early if ".layer.1." in k and k.endswith("weight")]
    assert frozen and trained
    assert all(early[k].equal(late[k]) for k in frozen)
    assert all(not early[k].equal(late[k]) for k in trained)
    capsys.readouterr()
    # Freezing every block (or a negative count) leaves nothing sensible to train: one clear line.
    for bad, words in (("2", "would freeze all 2 blocks"), ("-1", "must be >= 0")):
        assert main([*args[:-1], str(tmp_path / f"bad{bad}"), *overrides, f"model.freeze_layers={bad}"]) == 2
        err = capsys.readouterr().err
        assert "model.freeze_layers" in err and words in err and len(err.strip().splitlines()) == 1, err


def test_a_prompted_response_encoder_saves_its_prompts_and_evaluation_uses_them(data_dir, shared_data, tmp_path,
                                                                               capsys):
    """`context_prompt` / `response_prompt` in a contrastive config: the final folder carries them
    as sentence-transformers prompts, and `convssl evaluate`'s response selection reads them."""
    from convssl.models.encoder import Encoder

    config = tmp_path / "response.yaml"
    config.write_text(
        "model: {preset: tiny, arch: bert}\n"
        "objectives:\n"
        "  - {name: contrastive, max_length: 48, role_tokens: false, min_context_turns: 1,\n"
        "     context_prompt: 'context: ', response_prompt: 'reply: '}\n"
        "batch_size: 8\nmax_steps: 4\nwarmup_steps: 1\neval_every: 4\neval_batches: 1\ncheckpoint_every: 4\n",
        encoding="utf-8")
    run = tmp_path / "run"
    assert main(["pretrain", "--config", str(config), "--data", str(data_dir), "--out", str(run),
                 *_overrides(data_dir)]) == 0
    saved = json.loads((run / "final" / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    assert saved["prompts"] == {"query": "context: ", "document": "reply: "}
    assert Encoder.load(run / "final").prompts == saved["prompts"]
    capsys.readouterr()
    dialogues = shared_data / "sgd" / "train" / "dialogues_030.json"
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(run / "final"), "--task", f"response:{dialogues}", "--no-random-baseline",
                 "--no-tfidf", "--out", str(out), "response.max_pairs=40"]) == 0
    rows = json.loads((out / "report.json").read_text(encoding="utf-8"))["rows"]
    assert [r["task_kind"] for r in rows] == ["response"] and rows[0]["metrics"]["pairs"] > 0
