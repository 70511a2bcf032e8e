"""Reading the unlabeled pool: real logs and intent sets in, utterances out, labels never."""

from __future__ import annotations

import json
import shutil

import pytest

from convssl.downstream.pool import PoolError, read_pool


def test_sgd_folder_gives_user_turns_only(shared_data, tmp_path):
    folder = tmp_path / "sgd"
    folder.mkdir()
    dialogues = json.loads((shared_data / "sgd" / "train" / "dialogues_001.json").read_text(encoding="utf-8"))[:5]
    (folder / "dialogues_001.json").write_text(json.dumps(dialogues), encoding="utf-8")
    pool = read_pool([str(folder)])
    users = {t["utterance"] for d in dialogues for t in d["turns"] if t["speaker"] == "USER"}
    systems = {t["utterance"] for d in dialogues for t in d["turns"] if t["speaker"] == "SYSTEM"} - users
    assert set(pool.texts) <= users and len(pool) >= 0.9 * len(users)
    assert not set(pool.texts) & systems  # agent answers are not requests


def test_labelled_file_is_refused_unless_labels_are_dropped(shared_data, tmp_path):
    clinc = shared_data / "clinc150" / "data_full.json"
    with pytest.raises(PoolError, match=r"labelled examples .*--drop-labels") as err:
        read_pool([str(clinc)])
    assert "\n" not in str(err.value) and "data_full.json" in str(err.value)
    data = json.loads(clinc.read_text(encoding="utf-8"))
    evaluation = [text for text, _ in data["test"] + data["val"] + data["oos_test"] + data["oos_val"]]
    pool = read_pool([str(clinc)], drop_labels=True, exclude=evaluation)
    # Only the train split, never validation or test (CLINC150 repeats some test texts in train:
    # those are removed too), and no label anywhere.
    assert len(pool) <= len(data["train"]) + len(data["oos_train"])
    assert not set(pool.texts) & set(evaluation) and pool.removed_eval_overlap > 0
    assert all(isinstance(t, str) for t in pool.texts)


def test_evaluation_texts_and_duplicates_are_removed(tmp_path):
    path = tmp_path / "utterances.txt"
    path.write_text("How do I reset my PIN?\nhow do i  reset my pin?\nwhere is my card\nI lost my card\n\n",
                    encoding="utf-8")
    pool = read_pool([str(path)], exclude=["I lost my card"])
    assert pool.texts == ["How do I reset my PIN?", "where is my card"]
    assert pool.removed_duplicates == 1 and pool.removed_eval_overlap == 1


def test_prepare_folder_reads_its_dialogues(tmp_path):
    folder = tmp_path / "prepared" / "dialogues"
    folder.mkdir(parents=True)
    rows = [{"id": f"d{i}", "turns": [{"speaker": "customer", "text": f"my transfer {i} has not arrived"},
                                      {"speaker": "agent", "text": "Let me check."}]} for i in range(3)]
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    (folder.parent / "report.json").write_text("{}", encoding="utf-8")  # not read as data
    pool = read_pool([str(folder.parent)])
    assert pool.texts == [f"my transfer {i} has not arrived" for i in range(3)]


@pytest.mark.parametrize("content, message", [
    (b"", r"no utterances|only 0 usable"),
    (b"\x00\x01\x02binary\xff\xfe", r"unlabeled pool .*pool\.bin"),
])
def test_bad_pool_files_get_one_clear_line(tmp_path, content, message):
    path = tmp_path / ("pool.bin" if content else "empty.txt")
    path.write_bytes(content)
    with pytest.raises(PoolError, match=message) as err:
        read_pool([str(path)])
    assert "\n" not in str(err.value)


def test_missing_pool_names_the_path(tmp_path):
    with pytest.raises(PoolError, match="nowhere.txt"):
        read_pool([str(tmp_path / "nowhere.txt")])


def test_chitchat_pool_reads_every_turn(tmp_path):
    pytest.importorskip("chitchat_dataset")
    pool = read_pool(["chitchat"])
    assert len(pool) > 10_000
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_each_pool_text_remembers_its_source(tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("where is my card\nI lost my card\n", encoding="utf-8")
    second.write_text("where is my card\nhow are you today\nnice weather\n", encoding="utf-8")
    pool = read_pool([str(first), str(second)])
    # a duplicate keeps its first source; origins index `sources` in the order given
    assert pool.texts == ["where is my card", "I lost my card", "how are you today", "nice weather"]
    assert pool.origins == [0, 0, 1, 1] and len(pool.sources) == 2
