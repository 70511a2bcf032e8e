"""`convssl prepare` through the command line, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from convssl.cli import main
from convssl.cli.prepare import split_items
from convssl.data.tokenizer import load_tokenizer


def _bad_jsonl(path: Path) -> Path:
    good = {"id": "g", "turns": [{"speaker": "user", "text": "I would like to book a table for two tonight"},
                                 {"speaker": "agent", "text": "Sure, which restaurant would you like to go to?"}]}
    path.write_text(json.dumps(good) + "\n{not json\n", encoding="utf-8")
    return path


def test_prepare_end_to_end(tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    sgd = shared_data / "sgd" / "train" / "dialogues_005.json"
    code = main(["prepare", "chitchat", str(sgd), str(_bad_jsonl(tmp_path / "mine.jsonl")),
                 str(shared_data / "banking77" / "test.csv"), "--out", str(out), "--limit", "80", "--no-progress",
                 "tokenizer.vocab_size=1500", "dedup.threshold=0.9"])
    printed = capsys.readouterr().out
    assert code == 0
    for rel in ("config.yaml", "run.log", "dialogues/train.jsonl", "dialogues/validation.jsonl", "dialogues/test.jsonl",
                "intents/test.jsonl", "rejects.jsonl", "report.json", "report.md", "plots/removed.png",
                "tokenizer/tokenizer.json", "shards/manifest.json"):
        assert (out / rel).exists(), rel
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["rejected"] == 1 and report["rejects"] == {"malformed_json": 1}
    assert [s["format"] for s in report["inputs"]] == ["chitchat", "sgd", "jsonl", "intents"]
    assert "dedup:\n  exact: true\n  near: true\n  threshold: 0.9" in (out / "config.yaml").read_text()
    assert len(load_tokenizer(out / "tokenizer")) == report["tokenizer"]["vocab_size"] <= 1500
    assert "records read" in printed
    # The summary lists the malformed record's reason under the rejects, not under the filters.
    rows = [[cell.strip() for cell in line.strip().strip("│").split("│")] for line in printed.splitlines()]
    start = rows.index(["rejected as malformed", "1"])
    end = next(i for i, r in enumerate(rows) if r[0] == "removed by filters")
    assert rows[start + 1 : end] == [["malformed_json", "1"]]
    assert str(out / "report.md") in printed.replace("\n", "")


def test_prepare_strict_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _bad_jsonl(tmp_path / "bad.jsonl")
    code = main(["prepare", str(bad), "--out", str(tmp_path / "o"), "--strict", "--no-tokenize", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{bad}:2" in err and "invalid JSON" in err


def test_prepare_reuses_a_model_tokenizer(tmp_path: Path, minilm_path: Path) -> None:
    text = tmp_path / "calls.txt"
    text.write_text("customer: my parcel has not arrived yet, can you check the tracking number?\n"
                    "agent: of course, let me look that up for you right now\n", encoding="utf-8")
    out = tmp_path / "o"
    code = main(["prepare", str(text), "--out", str(out), "--tokenizer", str(minilm_path), "--no-progress",
                 "split.train=1", "split.validation=0", "split.test=0", "plots=false"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["tokenizer"]["trained"] is False and report["tokenizer"]["source"] == str(minilm_path)
    assert report["shards"]["train"]["dialogues"] == 1 and report["shards"]["train"]["tokens"] > 20
    assert load_tokenizer(out / "tokenizer").convert_tokens_to_ids("[USR]") > 30000  # MiniLM vocab + role tokens


def test_prepare_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.jsonl does not exist" in capsys.readouterr().err
    good = _bad_jsonl(tmp_path / "x.jsonl")
    assert main(["prepare", str(good), "--out", str(tmp_path / "o2"), "language.keep=[xx]", "--no-progress"]) == 2
    assert "unknown language code" in capsys.readouterr().err
    assert main(["prepare", str(good), "--out", str(tmp_path / "o3"), "dedup.nope=1"]) == 2
    assert "nope" in capsys.readouterr().err
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 10)
    assert main(["prepare", str(junk), "--out", str(tmp_path / "o4"), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "nothing usable was read" in captured.err and "binary_file" in captured.out


def test_split_items_tells_paths_from_overrides(tmp_path: Path) -> None:
    odd = tmp_path / "a=b.jsonl"
    odd.write_text("")
    assert split_items(["x.jsonl", "dedup.threshold=0.9", str(odd)]) == (["x.jsonl", str(odd)], ["dedup.threshold=0.9"])


def test_python_dash_m_help() -> None:
    done = subprocess.run([sys.executable, "-m", "convssl", "prepare", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "--no-tokenize" in done.stdout and "--strict" in done.stdout


def test_rerun_from_saved_config_into_same_folder(tmp_path: Path) -> None:
    """config.yaml reproduces a run; a rerun with fewer splits leaves no stale split files."""
    src = tmp_path / "talk.txt"
    src.write_text("\n\n".join(f"user: question number {i} about my order status please\n"
                               f"agent: answer number {i}, your order ships tomorrow morning" for i in range(40)))
    first = tmp_path / "first"
    assert main(["prepare", str(src), "--out", str(first), "--no-tokenize", "--no-progress", "plots=false",
                 "dedup.near=false"]) == 0  # the 40 dialogues are near duplicates of each other
    assert (first / "dialogues" / "validation.jsonl").exists()
    assert main(["prepare", "--config", str(first / "config.yaml"), "--out", str(first), "--no-progress",
                 "split.train=0.5", "split.validation=0", "split.test=0.5"]) == 0
    assert sorted(p.name for p in (first / "dialogues").iterdir()) == ["test.jsonl", "train.jsonl"]
    report = json.loads((first / "report.json").read_text())
    assert report["counts"]["dialogues_kept"] == 40 and report["inputs"][0]["path"] == str(src)
    assert "tokenizer" not in report and not (first / "plots").exists()


def test_no_input_reads_the_chitchat_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "default"
    assert main(["prepare", "--out", str(out), "--limit", "40", "--no-tokenize", "--no-progress", "plots=false"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [s["format"] for s in report["inputs"]] == ["chitchat"]
    assert report["counts"]["dialogues_read"] == 40
    printed = capsys.readouterr().out
    # Curation removals are not shown as malformed rejects, and each output file is named on one line.
    assert "rejected as malformed" in printed and "removed by filters" in printed
    lines = printed.splitlines()
    assert f"rejects:  {out / 'rejects.jsonl'} (0 malformed records)" in lines
    removed = report["counts"]["dialogues_removed"]
    assert removed > 0  # the corpus has conversations only one person wrote in
    assert f"filtered: {out / 'filtered.jsonl'} ({removed:,} dialogues removed by filters)" in lines
    assert any(line.startswith(f"report:   {out / 'report.md'}") for line in lines)


def test_format_option_reads_an_unrecognised_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "export.data"  # an extension detection does not know
    good = json.loads(_bad_jsonl(tmp_path / "g.jsonl").read_text().splitlines()[0])
    src.write_text(json.dumps(good) + "\n", encoding="utf-8")
    common = ["--no-tokenize", "--no-progress", "plots=false", "split.train=1", "split.validation=0", "split.test=0"]
    assert main(["prepare", str(src), "--out", str(tmp_path / "auto"), *common]) == 1
    assert "unknown_format" in capsys.readouterr().out
    rejects = [json.loads(x) for x in (tmp_path / "auto" / "rejects.jsonl").read_text().splitlines()]
    assert rejects[0]["reason"] == "unknown_format" and "--format" in rejects[0]["message"]
    assert main(["prepare", str(src), "--format", "jsonl", "--out", str(tmp_path / "forced"), *common]) == 0
    report = json.loads((tmp_path / "forced" / "report.json").read_text())
    assert report["inputs"][0]["format"] == "jsonl" and report["counts"]["dialogues_kept"] == 1


def test_intent_sets_only(tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "intents"
    assert main(["prepare", str(shared_data / "banking77"), "--out", str(out), "--no-progress", "plots=false"]) == 0
    printed = capsys.readouterr().out
    rows = [[cell.strip() for cell in line.strip().strip("│").split("│")] for line in printed.splitlines()]
    assert ["intent examples kept", "13,083 of 13,083"] in rows
    assert ["test", "3,080 examples, 77 labels"] in rows and ["train", "10,003 examples, 77 labels"] in rows
    assert not any(r[0] == "dialogues kept" for r in rows)  # no dialogue rows for an intents-only run
    assert "tokenizer and shards not written: no dialogues were kept" in printed
    assert f"intents:  {out / 'intents'}/{{test,train}}.jsonl" in printed.splitlines()
    assert "Not written: no dialogues were kept" in (out / "report.md").read_text(encoding="utf-8")
    assert len((out / "intents" / "train.jsonl").read_text(encoding="utf-8").splitlines()) == 10_003
