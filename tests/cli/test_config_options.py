"""What every verb offers about its settings: keys with descriptions in --help, the resolved
config, the presets, and options that land on their keys."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from convssl.cli import main
from convssl.config import describe_fields

VERBS = {
    "prepare": ("convssl.data.config", "PrepareConfig"),
    "pretrain": ("convssl.train.config", "PretrainConfig"),
    "evaluate": ("convssl.evaluate.config", "EvaluateConfig"),
    "finetune": ("convssl.cli.finetune", "FinetuneRunConfig"),
    "serve": ("convssl.serve.config", "ServeConfig"),
}


def _config_class(verb: str) -> type:
    import importlib

    module, name = VERBS[verb]
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_help_describes_every_config_key(verb, capsys):
    undescribed = [key for key, _, _, doc in describe_fields(_config_class(verb)) if not doc]
    assert not undescribed, f"{verb}: config keys without a description: {undescribed}"
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    text = capsys.readouterr().out
    for key, _, _, doc in describe_fields(_config_class(verb)):
        assert f"\n  {key} (" in text, f"{verb} --help does not list {key}"
        first_line = textwrap.wrap(doc, width=92, initial_indent="      ")[0]
        assert f"\n{first_line}" in text, f"{verb} --help does not describe {key}"
    assert "--print-config" in text and "--list-presets" in text


def test_list_presets_names_the_verbs_presets(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["finetune", "--list-presets"])
    assert stop.value.code == 0
    listed = capsys.readouterr().out.split()
    assert {"finetune", "finetune_demo", "finetune_setfit"} <= set(listed)  # the shipped presets
    assert all(name.startswith("finetune") for name in listed) and listed == sorted(listed)  # only this verb's


def test_print_config_shows_preset_overrides_and_options_resolved(tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["evaluate", "--config", "evaluate_quick", "--model", "some/model", "--task", "intent:x",
                 "--no-tfidf", "--modes", "probe,knn", "--out", str(out), "--print-config", "intent.C=2"])
    assert code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["models"] == ["some/model"] and printed["tasks"] == ["intent:x"]
    assert printed["tfidf_baseline"] is False and printed["random_baseline"] is True
    assert printed["intent"]["modes"] == ["probe", "knn"] and printed["intent"]["C"] == 2.0
    assert printed["out"] == str(out) and not out.exists()


def test_print_config_masks_secrets(capsys):
    assert main(["serve", "--print-config", "agent_token=s3cret", "--port", "9001"]) == 0
    printed = capsys.readouterr().out
    assert "s3cret" not in printed
    config = yaml.safe_load(printed)
    assert config["agent_token"] == "***" and config["port"] == 9001


def test_a_bad_option_value_is_one_line_naming_the_key(capsys):
    assert main(["finetune", "--model", "m", "--data", "d", "--out", "o", "--k-shot", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "convssl finetune: error: command line: k_shot: must be >= 0, got -1"


def test_evaluate_checks_its_models_before_creating_the_output_folder(tmp_path, capsys):
    task = tmp_path / "intents.csv"
    task.write_text("text,label\nhi,greet\n", encoding="utf-8")
    out = tmp_path / "report"
    assert main(["evaluate", "--model", str(tmp_path / "no_model"), "--task", f"intent:{task}", "--out", str(out)]) == 2
    assert "no_model does not exist" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("argv, words", [
    (["prepare", "chitchat"], "no output folder given: pass --out DIR"),
    (["pretrain", "--config", "pretrain_tiny", "--out", "never-made"], "no data given: pass --data DIR"),
    (["evaluate", "--task", "intent:x"], "no model given: pass --model PATH"),
    (["finetune", "--model", "m", "--out", "never-made"], "no labelled data given: pass --data PATH"),
    (["serve"], "no intent classifier: pass classifier_path=DIR"),
])
def test_a_missing_input_is_one_line_naming_its_option_yet_the_config_still_prints(argv, words, capsys, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert main([*argv, "--print-config"]) == 0  # what a run would use, shown before the inputs are complete
    assert yaml.safe_load(capsys.readouterr().out)
    assert list(tmp_path.iterdir()) == []  # neither the failed run nor the printing wrote anything
