"""`convssl evaluate` end to end: every task kind, baselines beside the model, report and plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convssl.cli import main
from convssl.config import load_config
from convssl.evaluate.config import EvaluateConfig
from convssl.evaluate.tasks import parse_task
from tests.evaluate import slices

# The same session fixtures as tests/evaluate (real data slices, tiny models built in tmp).
banking_slice, clinc_slice, sgd_slice = slices.banking_slice, slices.clinc_slice, slices.sgd_slice
tiny_bert, tiny_gpt2, constant_bert = slices.tiny_bert, slices.tiny_gpt2, slices.constant_bert

REPO = Path(__file__).resolve().parents[2]


def test_evaluate_all_tasks_writes_report_and_plots(tiny_bert, tiny_gpt2, banking_slice, clinc_slice, sgd_slice,
                                                    tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main([
        "evaluate", "--model", str(tiny_bert), "--model", str(tiny_gpt2),
        "--task", f"intent:{banking_slice}", "--task", f"oos:{clinc_slice}",
        "--task", f"response:{sgd_slice}", "--task", f"ppl:{sgd_slice}",
        "--out", str(out), "response.max_pairs=200", "intent.kshot=[1,5]",
    ])
    assert rc == 0
    assert str(out / "report.md") in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    kinds = {r["kind"] for r in report["representations"]}
    assert kinds == {"model", "random-init", "tfidf"}
    rows = report["rows"]
    assert {r["task_kind"] for r in rows} == {"intent", "oos", "response", "ppl"}
    for r in rows:
        assert r["seconds"] >= 0
    tfidf_probe = next(r for r in rows if r["kind"] == "tfidf" and r["mode"] == "probe")
    assert 0.5 < tfidf_probe["metrics"]["accuracy"] <= 1.0
    kshot = next(r for r in rows if r["model"] == "tiny-bert" and r["mode"] == "kshot-5")
    assert len(kshot["metrics"]["runs"]) == 3
    resp = next(r for r in rows if r["model"] == "tiny-bert" and r["task_kind"] == "response")
    assert resp["metrics"]["recall@10"] >= resp["metrics"]["recall@1"]
    ppl = next(r for r in rows if r["model"] == "tiny-gpt2" and r["task_kind"] == "ppl")
    assert ppl["metrics"]["perplexity"] > 1
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "tfidf+logreg" in md and "random-init(tiny-bert)" in md and " ± " in md and "seconds" in md
    for plot in ("kshot_intent_banking77", "confusions_intent_banking77", "reliability_intent_banking77",
                 "reliability_oos_clinc150", "oos_hist_oos_clinc150"):
        assert (out / "plots" / f"{plot}.png").stat().st_size > 1000, plot
    assert (out / "config.yaml").exists()
    assert load_config(EvaluateConfig, out / "config.yaml").intent.kshot == [1, 5]


def test_finetune_mode_uses_the_downstream_trainer(tiny_bert, banking_slice, tmp_path):
    out = tmp_path / "ft"
    rc = main(["evaluate", "--model", str(tiny_bert), "--task", f"intent:{banking_slice}", "--modes", "probe,finetune",
               "--no-random-baseline", "--no-tfidf", "--no-plots", "--out", str(out),
               "intent.finetune.epochs=1", "intent.finetune.bf16=false"])
    assert rc == 0
    rows = json.loads((out / "report.json").read_text(encoding="utf-8"))["rows"]
    ft = next(r for r in rows if r["mode"] == "finetune")
    assert 0.0 <= ft["metrics"]["accuracy"] <= 1.0
    assert (Path(ft["metrics"]["classifier"]) / "config.json").exists()


def test_trained_few_shot_modes_and_finetuned_oos_rows(tiny_bert, banking_slice, clinc_slice, tmp_path):
    """SetFit and plain fine-tuning at k-shot (one run per seed), and the fine-tuned classifier's
    own calibrated threshold on the OOS task, trained once and shared with the intent task."""
    out = tmp_path / "trained"
    rc = main(["evaluate", "--model", str(tiny_bert), "--task", f"intent:{banking_slice}",
               "--task", f"intent:{clinc_slice}", "--task", f"oos:{clinc_slice}",
               "--modes", "kshot,setfit,finetune_kshot,finetune", "--no-tfidf", "--no-plots", "--seeds", "2",
               "--out", str(out), "intent.few_shot=[2]", "intent.kshot=[2]", "intent.finetune.epochs=1",
               "intent.finetune.setfit.iterations=1", "intent.finetune.bf16=false"])
    assert rc == 0
    rows = json.loads((out / "report.json").read_text(encoding="utf-8"))["rows"]
    for model in ("tiny-bert", "random-init(tiny-bert)"):
        mine = {(r["task"], r["mode"]): r for r in rows if r["model"] == model}
        for mode in ("setfit-2", "finetune_kshot-2"):
            row = mine[("intent:banking77", mode)]
            assert len(row["metrics"]["runs"]) == 2 and row["metrics"]["seeds"] == [0, 1]
            assert 0.0 <= row["metrics"]["accuracy"] <= 1.0
        oos = mine[("oos:clinc150", "oos-finetune-max_softmax")]["metrics"]
        assert oos["calibrated_on"] == "validation" and 0.0 <= oos["oos_recall"] <= 1.0
        assert oos["threshold"] > float("-inf")
        # the intent task on the same file reuses the classifier the oos task scores
        assert mine[("intent:clinc150", "finetune")]["metrics"]["classifier"].endswith("-clinc150-data_full")
    finetuned = sorted(p.name for p in (out / "finetuned").iterdir())
    assert finetuned == ["random-init_tiny-bert_-banking77", "random-init_tiny-bert_-clinc150-data_full",
                         "random-init_tiny-bert_-init", "tiny-bert-banking77", "tiny-bert-clinc150-data_full"]


def test_bad_inputs_fail_with_one_clear_line(tiny_bert, banking_slice, tmp_path, capsys):
    assert main(["evaluate", "--model", str(tmp_path / "nope"), "--task", f"intent:{banking_slice}",
                 "--out", str(tmp_path / "a")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tiny_bert), "--task", "sentiment:x", "--out", str(tmp_path / "b")]) == 2
    assert "KIND:PATH" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tiny_bert), "--task", f"intent:{banking_slice}", "--modes", "probe,magic",
                 "--out", str(tmp_path / "c")]) == 2
    assert "magic" in capsys.readouterr().err
    assert main(["evaluate", "--task", f"intent:{banking_slice}", "--out", str(tmp_path / "d")]) == 2
    assert "--model" in capsys.readouterr().err
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("models: [x]\nintent:\n  Cee: 3\n", encoding="utf-8")
    assert main(["evaluate", "--config", str(cfg), "--out", str(tmp_path / "e")]) == 2
    assert "Cee" in capsys.readouterr().err


@pytest.mark.parametrize("preset", ["evaluate", "evaluate_quick"])
def test_presets_load_and_name_existing_data(preset, shared_data, monkeypatch):
    monkeypatch.chdir(REPO)
    config = load_config(EvaluateConfig, preset)
    config.validate()
    specs = [parse_task(task) for task in config.tasks]
    assert specs and specs[0].kind == "intent"
    for spec in specs:  # every task names a file or folder of the shared data sets that exists
        path = Path(spec.path).resolve()
        assert path.exists() and path.is_relative_to(shared_data.resolve()), spec


def test_disk_cache_lets_a_rerun_skip_embedding(tiny_bert, banking_slice, tmp_path):
    args = ["evaluate", "--model", str(tiny_bert), "--task", f"intent:{banking_slice}", "--modes", "probe",
            "--no-tfidf", "--no-plots", "--cache", str(tmp_path / "cache")]
    assert main(args + ["--out", str(tmp_path / "one")]) == 0
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2  # the model and its random-init copy
    assert main(args + ["--out", str(tmp_path / "two")]) == 0
    first, second = ((tmp_path / d / "run.log").read_text(encoding="utf-8") for d in ("one", "two"))
    assert "new texts" in first and "new texts" not in second and "cached embeddings" in second
    rows = [json.loads((tmp_path / d / "report.json").read_text(encoding="utf-8"))["rows"] for d in ("one", "two")]
    assert [r["metrics"]["accuracy"] for r in rows[0]] == [r["metrics"]["accuracy"] for r in rows[1]]
    for cached in (tmp_path / "cache").glob("*.npz"):  # a damaged cache is ignored, not fatal
        cached.write_bytes(b"not an npz")
    assert main(args + ["--out", str(tmp_path / "three")]) == 0
    assert "ignoring unreadable embedding cache" in (tmp_path / "three" / "run.log").read_text(encoding="utf-8")


def test_a_rerun_with_the_same_out_reuses_finished_training_runs(tiny_bert, banking_slice, tmp_path):
    """An evaluation killed after some trained runs finished starts again where it stopped: the
    fine-tuned classifier and each finished few-shot seed are reused; a changed setting retrains."""
    out = tmp_path / "resumable"
    args = ["evaluate", "--model", str(tiny_bert), "--task", f"intent:{banking_slice}", "--modes", "setfit,finetune",
            "--no-random-baseline", "--no-tfidf", "--no-plots", "--seeds", "2", "--out", str(out),
            "intent.few_shot=[2]", "intent.finetune.setfit.iterations=1", "intent.finetune.bf16=false"]
    assert main([*args, "intent.finetune.epochs=1"]) == 0
    first = json.loads((out / "report.json").read_text(encoding="utf-8"))["rows"]
    weights = out / "finetuned" / "tiny-bert-banking77" / "model.safetensors"
    trained_at = weights.stat().st_mtime_ns
    seeds = sorted((out / "fewshot").glob("*.json"))
    assert [p.name for p in seeds] == ["tiny-bert-banking77-setfit-2-seed0.json", "tiny-bert-banking77-setfit-2-seed1.json"]
    seeds[1].unlink()  # as if killed while training the second seed

    assert main([*args, "intent.finetune.epochs=1"]) == 0
    log = (out / "run.log").read_text(encoding="utf-8")
    assert "reusing the fine-tuned classifier" in log
    assert "setfit-2 seed 0: reusing" in log and "setfit-2 seed 1: reusing" not in log
    assert weights.stat().st_mtime_ns == trained_at
    second = json.loads((out / "report.json").read_text(encoding="utf-8"))["rows"]
    assert [r["metrics"]["accuracy"] for r in second] == [r["metrics"]["accuracy"] for r in first]
    assert [r["seconds"] for r in second][0] == pytest.approx([r["seconds"] for r in first][0], abs=1.0)

    assert main([*args, "intent.finetune.epochs=2"]) == 0  # another setting: nothing to reuse
    assert weights.stat().st_mtime_ns != trained_at
    assert "epochs_run" in json.loads((out / "report.json").read_text(encoding="utf-8"))["rows"][0]["metrics"]


def test_an_encoder_at_chance_level_is_flagged_in_report_and_console(constant_bert, banking_slice, tmp_path, caplog):
    """A model that learned nothing scores what guessing scores; the report and the console must
    say so, the baselines must not."""
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(constant_bert), "--task", f"intent:{banking_slice}", "--modes", "probe",
                 "--no-random-baseline", "--no-plots", "--out", str(out)]) == 0
    rows = json.loads((out / "report.json").read_text(encoding="utf-8"))["rows"]
    model = next(r for r in rows if r["model"] == "constant-bert")
    tfidf = next(r for r in rows if r["kind"] == "tfidf")
    assert model["metrics"]["accuracy"] == pytest.approx(0.1)  # 10 balanced intents
    assert "at chance level (10.0% by guessing, 100 examples)" in model["warning"]
    assert tfidf["metrics"]["accuracy"] > 0.5 and not tfidf["warning"]
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "**Warning:** constant-bert, probe: accuracy 10.0% is at chance level" in md
    assert "tfidf+logreg, probe" not in md
    assert any("at chance level" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
