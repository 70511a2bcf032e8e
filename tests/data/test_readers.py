"""Every reader on real data slices and on files made here, plus format detection and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convssl.data.dialogue import Dialogue, IntentExample
from convssl.data.readers import (
    FORMATS,
    UnknownFormat,
    detect_format,
    read_chitchat,
    read_csv_dialogues,
    read_inputs,
    read_intents,
    read_jsonl,
    read_sgd,
    read_text,
)
from convssl.data.readers.roles import infer_roles
from convssl.data.rejects import DataError, RejectLog

# ------------------------------------------------------------------------------------------
# real data


def test_chitchat_slice_has_peer_roles_and_merged_messages() -> None:
    rejects = RejectLog()
    dialogues = list(read_chitchat(limit=50, rejects=rejects))
    assert len(dialogues) == 50 and rejects.total == 0
    first = dialogues[0]
    assert first.source == "chitchat"
    assert first.turns[0].role == "A"
    # Consecutive messages of one sender are one turn, so roles alternate within a dialogue.
    for d in dialogues:
        assert {t.role for t in d.turns} <= {"A", "B"}
        assert all(a.speaker != b.speaker for a, b in zip(d.turns, d.turns[1:]))
        assert all(t.text.strip() for t in d.turns)
    # The first conversation of the corpus: "Hello" and "How are you doing today?" by one sender.
    assert first.turns[0].text == "Hello How are you doing today?"
    assert first.turns[0].timestamp is not None


def test_sgd_file_user_system_roles(shared_data: Path) -> None:
    path = shared_data / "sgd" / "train" / "dialogues_001.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    dialogues = list(read_sgd(path))
    assert len(dialogues) == len(raw)
    assert [d.id for d in dialogues] == [r["dialogue_id"] for r in raw]
    d0 = dialogues[0]
    assert [t.text for t in d0.turns] == [t["utterance"] for t in raw[0]["turns"]]
    assert {t.speaker: t.role for d in dialogues for t in d.turns} == {"USER": "user", "SYSTEM": "agent"}
    assert d0.meta["services"] == raw[0]["services"]


def test_sgd_folder_skips_schema(shared_data: Path) -> None:
    folder = shared_data / "sgd" / "train"
    assert detect_format(folder) == "sgd"
    first_two = list(read_sgd(folder, limit=200))
    assert len(first_two) == 200  # crosses from dialogues_001.json into dialogues_002.json
    assert all(d.turns for d in first_two)


def test_banking77_csv_keeps_file_split(shared_data: Path) -> None:
    test_csv = shared_data / "banking77" / "test.csv"
    assert detect_format(test_csv) == "intents"
    examples = list(read_intents(test_csv))
    assert len(examples) == 3080
    assert {e.split for e in examples} == {"test"}
    assert {e.source for e in examples} == {"banking77"}
    assert len({e.label for e in examples}) == 77


def test_clinc150_json_splits_by_key(shared_data: Path) -> None:
    path = shared_data / "clinc150" / "data_full.json"
    assert detect_format(path) == "intents"
    examples = list(read_intents(path))
    assert len(examples) == 15000 + 3000 + 4500 + 100 + 100 + 1000
    per_split = {s: sum(e.split == s for e in examples) for s in ("train", "validation", "test")}
    assert per_split == {"train": 15100, "validation": 3100, "test": 5500}
    assert sum(e.label == "oos" for e in examples) == 1200
    assert {e.source for e in examples} == {"clinc150"}


def test_read_inputs_mixes_sources(shared_data: Path) -> None:
    result = read_inputs(["chitchat", shared_data / "sgd" / "train" / "dialogues_002.json",
                          shared_data / "banking77" / "test.csv"], limit=20)
    assert [s["format"] for s in result.sources] == ["chitchat", "sgd", "intents"]
    assert len(result.dialogues) == 40 and len(result.intents) == 20
    assert {d.source for d in result.dialogues} == {"chitchat", "sgd/train"}


# ------------------------------------------------------------------------------------------
# generic formats made here


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_generic_jsonl_roundtrip_and_roles(tmp_path: Path) -> None:
    dialogues = [
        Dialogue("d1", []).__class__.from_dict(
            {"id": "d1", "turns": [{"speaker": "customer", "text": "My card is lost"},
                                   {"speaker": "Bot", "text": "I can block it."}]}),
        Dialogue.from_dict({"id": "d2", "turns": [{"speaker": "ann", "text": "hi"}, {"speaker": "bob", "text": "yo"},
                                                  {"speaker": "ann", "text": "sup"}]}),
    ]
    path = _write(tmp_path / "chats.jsonl", "\n".join(json.dumps(d.to_dict()) for d in dialogues) + "\n")
    assert detect_format(path) == "jsonl"
    got = list(read_jsonl(path))
    assert [d.id for d in got] == ["d1", "d2"]
    # Stored roles ("user" default from from_dict) are kept; names map when roles are absent.
    raw = _write(tmp_path / "raw.jsonl", json.dumps(
        {"id": "x", "turns": [{"speaker": "customer", "text": "hello"}, {"speaker": "Bot", "text": "hi"}]}))
    assert [t.role for t in next(read_jsonl(raw)).turns] == ["user", "agent"]
    peer = _write(tmp_path / "peer.jsonl", json.dumps(
        {"id": "p", "turns": [{"speaker": "bob", "text": "a"}, {"speaker": "ann", "text": "b"},
                              {"speaker": "bob", "text": "c"}]}))
    assert [t.role for t in next(read_jsonl(peer)).turns] == ["A", "B", "A"]


def test_missing_id_gets_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "noid.jsonl", '\n{"turns": [{"speaker": "a", "text": "x"}]}\n')
    assert next(read_jsonl(path)).id == "noid:2"


def test_csv_dialogues_group_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.csv",
                  "conversation_id,speaker,text,timestamp\n"
                  "c1,user,I want a table,2024-01-01T10:00\n"
                  "c2,alice,\"hi, there\",\n"
                  "c1,agent,For how many?,2024-01-01T10:01\n"
                  "c2,bob,hello,\n")
    assert detect_format(path) == "csv"
    got = {d.id: d for d in read_csv_dialogues(path)}
    assert [t.text for t in got["c1"].turns] == ["I want a table", "For how many?"]
    assert [t.role for t in got["c1"].turns] == ["user", "agent"]
    assert got["c1"].turns[0].timestamp == "2024-01-01T10:00"
    assert [t.role for t in got["c2"].turns] == ["A", "B"] and got["c2"].turns[0].text == "hi, there"


def test_text_transcripts_split_on_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "talk.txt", "User: hi there\nAgent: hello, how can I help?\n\n\nann: yo\nbob: hey: you\n")
    assert detect_format(path) == "text"
    got = list(read_text(path))
    assert [d.id for d in got] == ["talk:1", "talk:5"]
    assert [(t.speaker, t.role, t.text) for t in got[0].turns] == [
        ("User", "user", "hi there"), ("Agent", "agent", "hello, how can I help?")]
    assert got[1].turns[1].text == "hey: you"


def test_intent_csv_text_label(tmp_path: Path) -> None:
    path = _write(tmp_path / "validation.csv", "text,label\nbook a flight,travel\nplay music,music\n")
    assert detect_format(path) == "intents"
    got = list(read_intents(path))
    assert got == [IntentExample("book a flight", "travel", "validation", tmp_path.name),
                   IntentExample("play music", "music", "validation", tmp_path.name)]


def test_intent_sets_with_other_column_names(tmp_path: Path) -> None:
    # Hugging Face exports write an integer `label` beside the name in `label_text`; the name wins
    hf = _write(tmp_path / "train.csv", "utterance,label,label_text\nbook a flight,3,travel\n")
    assert detect_format(hf) == "intents"
    assert [(e.text, e.label) for e in read_intents(hf)] == [("book a flight", "travel")]
    jsonl = _write(tmp_path / "test.jsonl", '{"sentence": "play jazz", "intent": "music"}\n')
    assert detect_format(jsonl) == "intents"
    assert [(e.text, e.label, e.split) for e in read_intents(jsonl)] == [("play jazz", "music", "test")]
    one_file = _write(tmp_path / "all.csv", "text,label,split\nbook a flight,travel,train\nplay jazz,music,test\n"
                      "set an alarm,alarm,\n")
    assert [(e.text, e.split) for e in read_intents(one_file)] == [
        ("book a flight", "train"), ("play jazz", "test"), ("set an alarm", "train")]
    rejects = RejectLog()
    bad = _write(tmp_path / "dev.csv", "question,answer\nhi,hello\n")
    assert list(read_intents(bad, rejects=rejects)) == []
    assert "needs a text column (text or utterance" in rejects.records[0]["message"]


def test_intent_sets_in_tab_separated_files(tmp_path: Path) -> None:
    # a comma inside a text is just text in a .tsv; the split comes from the file name as with CSV
    train = _write(tmp_path / "train.tsv", "sentence\tintent\nbook a flight, one way\ttravel\nplay jazz\tmusic\n")
    _write(tmp_path / "test.tsv", "sentence\tintent\nplay some rock\tmusic\n")
    assert detect_format(train) == "intents"
    assert [(e.text, e.label, e.split) for e in read_intents(train)] == [
        ("book a flight, one way", "travel", "train"), ("play jazz", "music", "train")]
    folder = read_inputs([tmp_path])  # a folder of train.tsv / test.tsv, as of train.csv / test.csv
    assert sorted((e.split, e.text) for e in folder.intents) == [
        ("test", "play some rock"), ("train", "book a flight, one way"), ("train", "play jazz")]
    (tmp_path / "more").mkdir()
    (tmp_path / "other").mkdir()
    rejects = RejectLog()
    bad_row = _write(tmp_path / "more" / "dev.tsv", "text\tlabel\nplay jazz\tmusic\textra\n")
    assert list(read_intents(bad_row, rejects=rejects)) == []
    assert rejects.records[0]["line"] == 2 and "3 fields, the header has 2" in rejects.records[0]["message"]
    headless = _write(tmp_path / "other" / "train.tsv", "play jazz\tmusic\n")
    rejects = RejectLog()
    assert read_inputs([headless], rejects=rejects).intents == []
    assert "intent TSV header 'play jazz\\tmusic' needs a text column" in rejects.records[0]["message"]


def test_format_override_and_unknown(tmp_path: Path) -> None:
    path = _write(tmp_path / "chat.data", json.dumps({"id": "z", "turns": [{"speaker": "a", "text": "b"}]}) + "\n")
    with pytest.raises(UnknownFormat):
        detect_format(path)
    rejects = RejectLog()
    result = read_inputs([path], rejects=rejects)
    assert result.dialogues == [] and rejects.counts == {"unknown_format": 1}
    forced = read_inputs([path], format="jsonl")
    assert [d.id for d in forced.dialogues] == ["z"]
    with pytest.raises(ValueError, match="unknown format"):
        read_inputs([path], format="xml")
    assert "jsonl" in FORMATS


def test_missing_input_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_inputs([tmp_path / "nope.jsonl"])


def test_infer_roles_mixed_known_and_unknown() -> None:
    assert infer_roles(["Customer", "Jane"]) == {"Customer": "user", "Jane": "agent"}
    assert infer_roles(["B", "A"]) == {"B": "B", "A": "A"}
    assert infer_roles(["x", "y", "z"]) == {"x": "A", "y": "B", "z": "B"}


# ------------------------------------------------------------------------------------------
# bad input


def _good_line(i: int) -> str:
    return json.dumps({"id": f"g{i}", "turns": [{"speaker": "a", "text": f"hello {i}"}, {"speaker": "b", "text": "hi"}]})


def test_malformed_json_line_in_the_middle_rest_still_read(tmp_path: Path) -> None:
    lines = [_good_line(1), _good_line(2), '{"id": "bad", "turns": [', _good_line(4)]
    path = _write(tmp_path / "mixed.jsonl", "\n".join(lines) + "\n")
    rejects = RejectLog()
    got = list(read_jsonl(path, rejects=rejects))
    assert [d.id for d in got] == ["g1", "g2", "g4"]
    assert rejects.counts == {"malformed_json": 1}
    entry = rejects.records[0]
    assert entry["file"] == str(path) and entry["line"] == 3 and "invalid JSON" in entry["message"]


def test_missing_fields_named(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "a"}),
        json.dumps({"id": "b", "turns": [{"speaker": "x"}]}),
        json.dumps({"id": "c", "turns": [{"text": "no speaker"}]}),
        json.dumps({"id": "d", "turns": "not a list"}),
        _good_line(5),
    ]
    path = _write(tmp_path / "fields.jsonl", "\n".join(lines))
    rejects = RejectLog()
    assert [d.id for d in read_jsonl(path, rejects=rejects)] == ["g5"]
    messages = {r["line"]: r["message"] for r in rejects.records}
    assert "no 'turns' field" in messages[1]
    assert "turn 0 has no 'text' field" in messages[2]
    assert "no 'speaker' field" in messages[3]
    assert "'turns' must be list" in messages[4]
    assert rejects.counts == {"missing_field": 3, "malformed_record": 1}


def test_empty_file(tmp_path: Path) -> None:
    for name in ("empty.jsonl", "empty.csv", "empty.txt", "empty.json"):
        path = _write(tmp_path / name, "  \n")
        rejects = RejectLog()
        result = read_inputs([path], rejects=rejects)
        assert result.dialogues == [] and rejects.counts == {"empty_file": 1}, name
        assert "empty" in rejects.records[0]["message"]


def test_utf16_file_is_rejected_with_a_hint(tmp_path: Path) -> None:
    path = _write(tmp_path / "utf16.jsonl", (_good_line(1) + "\n").encode("utf-16"))
    rejects = RejectLog()
    assert list(read_jsonl(path, rejects=rejects)) == []
    assert rejects.counts == {"bad_encoding": 1}
    assert "UTF-16" in rejects.records[0]["message"] and "UTF-8" in rejects.records[0]["message"]
    # Without a BOM too.
    path2 = _write(tmp_path / "utf16le.txt", "user: hello there\n".encode("utf-16-le"))
    rejects2 = RejectLog()
    assert list(read_text(path2, rejects=rejects2)) == [] and rejects2.counts == {"bad_encoding": 1}


def test_latin1_line_rejected_by_line(tmp_path: Path) -> None:
    data = "user: hello\nagent: caf\xe9 ol\xe9\nuser: bye\n".encode("latin-1")
    path = _write(tmp_path / "latin.txt", data)
    rejects = RejectLog()
    got = list(read_text(path, rejects=rejects))
    assert [t.text for t in got[0].turns] == ["hello", "bye"]
    assert rejects.counts == {"bad_encoding": 1}
    entry = rejects.records[0]
    assert entry["line"] == 2 and "not valid UTF-8" in entry["message"] and "latin-1" in entry["message"]


def test_binary_junk(tmp_path: Path) -> None:
    junk = bytes(range(256)) * 40
    for name in ("junk.bin", "junk.jsonl", "junk.json"):
        path = _write(tmp_path / name, junk)
        rejects = RejectLog()
        result = read_inputs([path], rejects=rejects)
        assert result.dialogues == [] and rejects.counts == {"binary_file": 1}, name
        assert "binary" in rejects.records[0]["message"]


def test_over_long_line(tmp_path: Path) -> None:
    long_line = json.dumps({"id": "long", "turns": [{"speaker": "a", "text": "x" * 5000}]})
    path = _write(tmp_path / "long.jsonl", "\n".join([_good_line(1), long_line, _good_line(3)]))
    rejects = RejectLog()
    got = list(read_jsonl(path, rejects=rejects, max_line_bytes=1000))
    assert [d.id for d in got] == ["g1", "g3"]
    assert rejects.counts == {"line_too_long": 1}
    assert rejects.records[0]["line"] == 2 and "1,000" in rejects.records[0]["message"]


def test_csv_bad_rows_and_header(tmp_path: Path) -> None:
    path = _write(tmp_path / "rows.csv", "conversation_id,speaker,text\nc1,a,hi\nc1,b\nc1,,hello\nc1,b,yo\n")
    rejects = RejectLog()
    got = list(read_csv_dialogues(path, rejects=rejects))
    assert [t.text for t in got[0].turns] == ["hi", "yo"]
    assert {r["line"]: r["reason"] for r in rejects.records} == {3: "malformed_record", 4: "missing_field"}
    bad_header = _write(tmp_path / "header.csv", "conversation_id,who,text\nc1,a,hi\n")
    rejects = RejectLog()
    assert list(read_csv_dialogues(bad_header, rejects=rejects)) == []
    message = rejects.records[0]["message"]
    assert rejects.records[0]["line"] == 1 and "speaker" in message
    assert "'conversation_id,who,text'" in message  # the header it read, not only the rule


def test_text_line_without_speaker(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.txt", "user: hi\nthis line has no speaker label\nagent: hello\n")
    rejects = RejectLog()
    got = list(read_text(path, rejects=rejects))
    assert len(got[0].turns) == 2
    assert rejects.records[0]["line"] == 2 and rejects.records[0]["reason"] == "malformed_record"


def test_sgd_bad_dialogue_named_by_line(tmp_path: Path) -> None:
    items = [{"dialogue_id": "1", "turns": [{"speaker": "USER", "utterance": "hi"}]},
             {"dialogue_id": "2", "turns": [{"speaker": "USER"}]},
             {"dialogue_id": "3", "turns": [{"speaker": "SYSTEM", "utterance": "ok"}]}]
    path = _write(tmp_path / "dialogues_001.json", json.dumps(items, indent=1))
    rejects = RejectLog()
    assert [d.id for d in read_sgd(path, rejects=rejects)] == ["1", "3"]
    text = path.read_text()
    expected_line = text[: text.index('"dialogue_id": "2"')].count("\n")  # the line with the opening brace
    assert rejects.records[0]["line"] == expected_line
    assert "'utterance'" in rejects.records[0]["message"]


def test_strict_stops_at_first_bad_record(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.jsonl", "\n".join([_good_line(1), "not json", _good_line(3)]))
    with pytest.raises(DataError) as info:
        read_inputs([path], strict=True)
    assert f"{path}:2" in str(info.value) and info.value.line == 2


def test_folder_with_forced_format(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    (folder / "sub").mkdir(parents=True)
    _write(folder / "a.jsonl", _good_line(1) + "\n")
    _write(folder / "sub" / "b.jsonl", _good_line(2) + "\n")
    _write(folder / ".hidden.jsonl", _good_line(3) + "\n")
    assert detect_format(folder) == "folder"
    assert [d.id for d in read_inputs([folder]).dialogues] == ["g1", "g2"]
    assert [d.id for d in read_inputs([folder], format="jsonl").dialogues] == ["g1", "g2"]


def test_zero_heavy_binary_is_binary_not_utf16(tmp_path: Path) -> None:
    path = _write(tmp_path / "blob.jsonl", bytes([0, 0, 0, 7, 200, 0, 13, 0, 255, 0, 3, 0]) * 300)
    rejects = RejectLog()
    assert list(read_jsonl(path, rejects=rejects)) == []
    assert rejects.counts == {"binary_file": 1}


def test_intent_jsonl_and_json_lists(tmp_path: Path) -> None:
    jsonl = _write(tmp_path / "feedback.jsonl",
                   '{"text": "where is my card", "label": "card_arrival", "split": "test"}\n'
                   '{"text": "top up failed", "intent": "top_up_failed"}\n'
                   '{"text": "no label here"}\n')
    assert detect_format(jsonl) == "intents"
    rejects = RejectLog()
    got = list(read_intents(jsonl, rejects=rejects))
    assert [(e.text, e.label, e.split) for e in got] == [
        ("where is my card", "card_arrival", "test"), ("top up failed", "top_up_failed", "train")]
    assert rejects.counts == {"missing_field": 1} and rejects.records[0]["line"] == 3
    pairs = _write(tmp_path / "pairs.json", json.dumps([["book a flight", "travel"], ["play jazz", "music"]]))
    objects = _write(tmp_path / "objects.json", json.dumps([{"text": "book a flight", "label": "travel"}]))
    for path in (pairs, objects):
        assert detect_format(path) == "intents", path.name
    assert [(e.text, e.label) for e in read_intents(pairs)] == [("book a flight", "travel"), ("play jazz", "music")]
    assert [(e.text, e.label, e.source) for e in read_intents(objects)] == [("book a flight", "travel", "objects")]


def test_json_list_of_generic_dialogues(tmp_path: Path) -> None:
    items = [{"id": "j1", "turns": [{"speaker": "customer", "text": "my card is lost"},
                                     {"speaker": "agent", "text": "I blocked it"}]},
             {"id": "j2", "turns": [{"speaker": "customer"}]},
             {"id": "j3", "turns": [{"speaker": "x", "text": "hi"}, {"speaker": "y", "text": "hey"}]}]
    path = _write(tmp_path / "export.json", json.dumps(items, indent=2))
    assert detect_format(path) == "jsonl"
    rejects = RejectLog()
    result = read_inputs([path], rejects=rejects)
    assert [d.id for d in result.dialogues] == ["j1", "j3"]
    assert [t.role for t in result.dialogues[0].turns] == ["user", "agent"]
    assert [t.role for t in result.dialogues[1].turns] == ["A", "B"]
    assert rejects.counts == {"missing_field": 1}
    text = path.read_text()
    assert rejects.records[0]["line"] == text[: text.index('"id": "j2"')].count("\n")  # its opening brace


def test_whole_file_json_in_latin1_names_the_line(tmp_path: Path) -> None:
    items = [{"dialogue_id": "1", "turns": [{"speaker": "USER", "utterance": "hi"}]},
             {"dialogue_id": "2", "turns": [{"speaker": "USER", "utterance": "caf\u00e9"}]}]
    text = json.dumps(items, indent=1, ensure_ascii=False)
    path = _write(tmp_path / "dialogues_001.json", text.encode("latin-1"))
    rejects = RejectLog()
    assert list(read_sgd(path, rejects=rejects)) == []
    assert rejects.counts == {"bad_encoding": 1}
    entry = rejects.records[0]
    assert entry["line"] == text[: text.index("caf\u00e9")].count("\n") + 1  # the line with the bad byte
    assert "UTF-8" in entry["message"]


@pytest.mark.parametrize("content", [b"", b"\x00\x01\x02" * 100, "user: hi\n".encode("utf-16")])
def test_strict_stops_on_whole_file_problems_too(tmp_path: Path, content: bytes) -> None:
    path = _write(tmp_path / "bad.txt", content)
    with pytest.raises(DataError, match="bad.txt") as info:
        read_inputs([path], strict=True)
    assert info.value.reason in {"empty_file", "binary_file", "bad_encoding"}


def test_default_input_is_the_chitchat_corpus() -> None:
    result = read_inputs(None, limit=5)
    assert [s["format"] for s in result.sources] == ["chitchat"] and len(result.dialogues) == 5
    assert result.sources[0]["path"].endswith("dataset.json")
