"""The reject log: what a user reads in DIR/rejects.jsonl, counts per reason, strict mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convssl.data.readers import read_inputs
from convssl.data.rejects import DataError, RejectLog, excerpt, read_rejects


def test_rejects_file_has_file_line_reason_excerpt(tmp_path: Path) -> None:
    log_path = tmp_path / "out" / "rejects.jsonl"
    with RejectLog(log_path) as rejects:
        rejects.reject("a.jsonl", 7, "malformed_json", "invalid JSON: Expecting value", '{"id": 1, "turns": [')
        rejects.reject("b.csv", None, "empty_file", "file is empty")
    rows = read_rejects(log_path)
    assert rows[0] == {"file": "a.jsonl", "line": 7, "stage": "read", "reason": "malformed_json",
                       "message": "invalid JSON: Expecting value", "excerpt": '{"id": 1, "turns": ['}
    assert rows[1]["line"] is None and "excerpt" not in rows[1]
    assert rejects.counts == {"malformed_json": 1, "empty_file": 1} and rejects.total == 2


def test_excerpt_is_short_and_printable() -> None:
    long = "x" * 1000
    assert len(excerpt(long)) == 201 and excerpt(long).endswith("…")
    assert "\\x00" in excerpt(b"ab\x00cd") and "\x00" not in excerpt("a\x00b")
    assert excerpt({"k": [1, 2]}) == '{"k": [1, 2]}'


def test_strict_raises_naming_file_and_line(tmp_path: Path) -> None:
    rejects = RejectLog(tmp_path / "r.jsonl", strict=True)
    with pytest.raises(DataError) as info:
        rejects.reject("data/x.csv", 12, "missing_field", "row has an empty text field")
    assert str(info.value) == "data/x.csv:12: row has an empty text field [missing_field]"
    assert rejects.total == 0
    rejects.close()


def test_reader_rejects_end_up_in_the_file(tmp_path: Path) -> None:
    good = json.dumps({"id": "ok", "turns": [{"speaker": "a", "text": "hello"}]})
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join([good, "{oops", json.dumps({"id": "nt"}), good.replace("ok", "ok2")]) + "\n")
    (tmp_path / "empty.txt").write_text("")
    with RejectLog(tmp_path / "rejects.jsonl") as rejects:
        result = read_inputs([src, tmp_path / "empty.txt"], rejects=rejects)
    assert [d.id for d in result.dialogues] == ["ok", "ok2"]
    rows = read_rejects(tmp_path / "rejects.jsonl")
    assert [(Path(r["file"]).name, r["line"], r["reason"]) for r in rows] == [
        ("in.jsonl", 2, "malformed_json"), ("in.jsonl", 3, "missing_field"), ("empty.txt", None, "empty_file")]
    assert rows[1]["excerpt"] == '{"id": "nt"}'
    assert [s["rejected"] for s in result.sources] == [2, 1]
