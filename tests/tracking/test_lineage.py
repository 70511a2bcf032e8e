"""Data -> pretrain run -> finetune run -> registered version -> served model, all through the CLI.

Two colleagues' steps on one real SQLite store: prepare and pretrain a tiny encoder, register it as
`champion`, fine-tune an intent classifier from `models:/...@champion`, register two versions,
compare them, promote the second, and serve the champion; then follow its lineage back to the data.
"""

from __future__ import annotations

import json

import httpx

from convssl.cli import build_parser, main, resolve_model_references
from convssl.tracking.references import resolve_model_uri
from tests.cli.test_finetune_cli import FAST, write_banking_slice
from tests.train._data import TINY_MODEL

TINY = [f"model.overrides.{k}={v}" for k, v in TINY_MODEL.items()] + [
    "max_steps=6", "eval_every=0", "checkpoint_every=0", "log_every=1", "progress=false", "tensorboard=false"]


def _run(capsys, *argv: str) -> str:
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_lineage_from_data_to_the_served_champion(tracking_on, shared_data, minilm_path, tmp_path, capsys):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_on)
    data, pretrained = tmp_path / "data", tmp_path / "pretrain"
    _run(capsys, "prepare", shared_data / "sgd" / "train" / "dialogues_001.json", "--out", data, "--limit", "60",
         "tokenizer.vocab_size=800", "--no-progress")
    _run(capsys, "pretrain", "--config", "pretrain_tiny", "--data", data, "--out", pretrained, *TINY)
    printed = _run(capsys, "registry", "register", pretrained, "--name", "team-encoder", "--alias", "champion")
    assert "team-encoder version 1" in printed

    # The pretraining run: resolved config as params, loss over every step, artifacts, the data as input.
    pretrain_run = client.get_run(json.loads((pretrained / "tracking.json").read_text())["run_id"])
    assert pretrain_run.data.params["max_steps"] == "6" and pretrain_run.data.tags["convssl.verb"] == "pretrain"
    assert [m.step for m in client.get_metric_history(pretrain_run.info.run_id, "loss")] == list(range(1, 7))
    assert "mlflow.source.git.commit" in pretrain_run.data.tags and "version.torch" in pretrain_run.data.tags
    artifacts = {a.path for a in client.list_artifacts(pretrain_run.info.run_id)}
    assert {"config.yaml", "metrics.jsonl", "pretrain.log", "final"} <= artifacts
    assert [a.path for a in client.list_artifacts(pretrain_run.info.run_id, "final")] == ["final/README.md"]

    banking = write_banking_slice(shared_data, tmp_path / "banking77", per_train=12, per_test=6)
    # Evaluating the registered encoder: its run names the pretraining run as parent.
    _run(capsys, "evaluate", "--model", "models:/team-encoder@champion", "--task", f"intent:{banking}",
         "--modes", "probe", "--no-random-baseline", "--no-plots", "--out", tmp_path / "eval")
    evaluation = client.get_run(json.loads((tmp_path / "eval" / "tracking.json").read_text())["run_id"])
    assert evaluation.data.tags["convssl.parent_runs"] == pretrain_run.info.run_id
    assert evaluation.data.metrics["eval.intent_banking77.probe.tfidf_logreg.accuracy"] > 0.5  # the baseline

    for number, (epochs, out) in enumerate([(2, "intent-a"), (4, "intent-b")], 1):
        _run(capsys, "finetune", "--model", "models:/team-encoder@champion", "--data", banking, "--out",
             tmp_path / out, *FAST, f"epochs={epochs}")
        alias = "champion" if number == 1 else "challenger"
        printed = _run(capsys, "registry", "register", tmp_path / out, "--name", "team-intent", "--alias", alias)
        assert f"team-intent version {number}" in printed

    # Fine-tuning curves: loss and validation accuracy per epoch.
    finetune_run = json.loads((tmp_path / "intent-b" / "tracking.json").read_text())["run_id"]
    assert [m.step for m in client.get_metric_history(finetune_run, "epoch.val_accuracy")] == [1, 2, 3, 4]

    compared = _run(capsys, "registry", "compare", "team-intent", "champion", "challenger")
    assert "test.accuracy" in compared and "v1 (champion)" in compared and "v2 (challenger)" in compared
    assert "-> version 2 (was version 1)" in _run(capsys, "registry", "alias", "team-intent", "champion", "2")
    listed = _run(capsys, "registry", "list", "team-intent")
    assert "champion" in listed and "challenger" in listed

    # Lineage of the champion: prepare -> pretrain -> finetune, the same data fingerprint at each hand-over.
    info = json.loads(_run(capsys, "registry", "lineage", "team-intent@champion", "--json"))
    assert info["version"] == "2" and info["aliases"] == ["challenger", "champion"]
    assert [s["verb"] for s in info["steps"]] == ["prepare", "pretrain", "finetune"]
    prepared = next(d["digest"] for d in info["steps"][0]["data"] if d["context"] == "output")
    assert [d["digest"] for d in info["steps"][1]["data"]] == [prepared]
    assert info["steps"][2]["data"][0]["name"] == "banking77"
    assert "models:/team-encoder@champion" in info["steps"][2]["command"]
    assert info["steps"][1]["command"].startswith("convssl pretrain --config pretrain_tiny")

    # The champion's model card names its data, lineage and the encoder's evaluation beside its baselines.
    card = (resolve_model_uri("models:/team-intent@champion") / "README.md").read_text()
    assert "Evaluation beside baselines" in card and "tfidf_logreg" in card and "banking77" in card

    # The bot serves the new champion: /healthz names the registered version.
    _check_served_version(tmp_path, minilm_path)


def _check_served_version(tmp_path, minilm_path):
    from convssl.serve.analysis import Brain
    from convssl.serve.app import BackgroundServer, create_app
    from tests.serve.conftest import serve_config

    args = build_parser().parse_args(["serve", "classifier_path=models:/team-intent@champion"])
    resolve_model_references(args)
    classifier = args.overrides[0].split("=", 1)[1]
    responses = tmp_path / "responses.yaml"
    responses.write_text(json.dumps({"intents": {"card_arrival": "Cards arrive in 3 days."}}), encoding="utf-8")
    config = serve_config(tmp_path / "serve.sqlite3", classifier, minilm_path, responses, tmp_path / "onnx",
                          **{"batching.backend": "torch", "responder.bank_size": 20})
    with BackgroundServer(create_app(config, Brain.load(config))) as server:
        health = httpx.get(f"{server.url}/healthz", timeout=10).json()
    assert health["classifier"]["name"] == "team-intent" and health["classifier"]["version"] == "2"
    assert "champion" in health["classifier"]["aliases"]
