"""`convssl tokenizer` end to end, on curated JSONL made from real SGD and chit-chat dialogues."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from convssl.cli import main
from convssl.data.dialogue import Dialogue, Turn

transformers = pytest.importorskip("transformers")


def _real_dialogues(shared_data: Path) -> list[Dialogue]:
    import chitchat_dataset

    sgd = json.loads((shared_data / "sgd" / "train" / "dialogues_001.json").read_text(encoding="utf-8"))
    out = [
        Dialogue(
            id=d["dialogue_id"],
            turns=[Turn(t["speaker"], t["utterance"], "user" if t["speaker"] == "USER" else "agent") for t in d["turns"]],
            source="sgd",
        )
        for d in sgd
    ]
    chat = json.loads((Path(os.path.dirname(chitchat_dataset.__file__)) / "dataset.json").read_text(encoding="utf-8"))
    for conv_id, conv in list(chat.items())[:300]:
        turns = [Turn(t[0]["sender"], " ".join(m["text"] for m in t), "AB"[i % 2]) for i, t in enumerate(conv["messages"])]
        out.append(Dialogue(conv_id, turns, source="chitchat"))
    return out


@pytest.fixture(scope="module")
def prepared(shared_data, tmp_path_factory) -> Path:
    """A folder shaped like `convssl prepare` output: dialogues/train.jsonl."""
    root = tmp_path_factory.mktemp("prepared")
    (root / "dialogues").mkdir()
    lines = [json.dumps(d.to_dict(), ensure_ascii=False) for d in _real_dialogues(shared_data)]
    (root / "dialogues" / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_train_from_prepared_folder_then_encode(prepared, tmp_path, capsys):
    out = tmp_path / "tok"
    assert main(["tokenizer", "train", str(prepared), "--out", str(out), "--vocab-size", "3000"]) == 0
    printed = capsys.readouterr().out
    tok = transformers.AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    assert str(out) in printed and f"vocab size {len(tok)}" in printed
    assert 2500 < len(tok) <= 3000 and tok.cls_token == "[CLS]"
    assert json.loads((out / "tokenizer_config.json").read_text())["convssl_tokenizer_kind"] == "wordpiece"

    assert main(["tokenizer", "encode", "--tokenizer", str(out), "[SYS] What time is the reservation?"]) == 0
    shown = capsys.readouterr().out
    assert "[SYS]" in shown.split("\n")[0] and "reservation" in shown.replace(" ##", "")

    assert main(["tokenizer", "info", "--tokenizer", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "wordpiece" and info["vocab_size"] == len(tok)


def test_train_bpe_lowercase_from_jsonl_files(prepared, tmp_path, capsys):
    jsonl = prepared / "dialogues" / "train.jsonl"
    out = tmp_path / "bpe"
    args = ["tokenizer", "train", str(jsonl), str(jsonl), "--out", str(out), "--kind", "bpe",
            "--vocab-size", "2000", "--min-frequency", "3", "--lowercase"]
    assert main(args) == 0
    # Loaded from tokenizer.json (never vocab_file=, which transformers 5 reads as 5 tokens): the size
    # must be the trained vocabulary's, not just "at most 2000".
    tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json"))
    trained_vocab = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]
    assert 1500 < len(tok) == len(trained_vocab) <= 2000
    assert tok.decode(tok("Book a TABLE")["input_ids"]) == "book a table"
    assert "bpe tokenizer" in capsys.readouterr().out


def test_bad_input_names_file_and_line(prepared, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    good_line = (prepared / "dialogues" / "train.jsonl").read_text(encoding="utf-8").split("\n")[0]
    bad.write_text(good_line + "\n{not json\n", encoding="utf-8")
    assert main(["tokenizer", "train", str(bad), "--out", str(tmp_path / "t")]) == 2
    assert f"{bad}:2: not valid JSON" in capsys.readouterr().err

    assert main(["tokenizer", "train", str(tmp_path), "--out", str(tmp_path / "t")]) == 2
    assert "dialogues/train.jsonl" in capsys.readouterr().err

    assert main(["tokenizer", "encode", "--tokenizer", str(tmp_path), "hi"]) == 2
    assert "holds no tokenizer" in capsys.readouterr().err


def test_verb_without_action_prints_help(capsys):
    assert main(["tokenizer"]) == 2
    assert "train" in capsys.readouterr().out
