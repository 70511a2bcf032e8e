"""Writing and streaming pre-tokenised shards of real dialogues."""

from __future__ import annotations

import functools
import json
import os
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from convssl.data.dialogue import Dialogue, Turn
from convssl.data.shards import (
    ShardError,
    ShardReader,
    ShardsNotFound,
    TokenizedDialogue,
    manifest_tokenizer_path,
    token_dtype,
    write_manifest,
    write_shards,
)

pytest.importorskip("transformers")
from convssl.data.tokenizer import load_tokenizer  # noqa: E402


@functools.cache
def _chitchat_raw() -> dict:
    import chitchat_dataset

    return json.loads((Path(os.path.dirname(chitchat_dataset.__file__)) / "dataset.json").read_text(encoding="utf-8"))


def _chitchat_dialogues(limit: int) -> list[Dialogue]:
    out = []
    for conv_id, conv in list(_chitchat_raw().items())[:limit]:
        turns = [
            Turn(speaker=turn[0]["sender"], text=" ".join(m["text"] for m in turn), role="AB"[i % 2])
            for i, turn in enumerate(conv["messages"])
        ]
        out.append(Dialogue(id=f"chitchat-{conv_id}", turns=turns, source="chitchat"))
    return out


def _sgd_dialogues(shared_data: Path) -> list[Dialogue]:
    raw = json.loads((shared_data / "sgd" / "train" / "dialogues_001.json").read_text(encoding="utf-8"))
    return [
        Dialogue(
            id=f"sgd-{d['dialogue_id']}",
            turns=[
                Turn(speaker=t["speaker"], text=t["utterance"], role="user" if t["speaker"] == "USER" else "agent")
                for t in d["turns"]
            ],
            source="sgd",
        )
        for d in raw
    ]


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    return load_tokenizer(minilm_path)


@pytest.fixture(scope="module")
def dialogues(shared_data) -> list[Dialogue]:
    mixed = _chitchat_dialogues(150) + _sgd_dialogues(shared_data)
    mixed[3].turns[1].text = ""  # an empty turn keeps its place
    return mixed


@pytest.fixture(scope="module")
def shards(dialogues, tokenizer, tmp_path_factory, minilm_path) -> Path:
    out = tmp_path_factory.mktemp("shards")
    stats = write_shards(dialogues, tokenizer, out, "train", shard_tokens=4000, batch_size=300, source="test")
    write_manifest(out, minilm_path, {"train": stats}, ["chitchat", "sgd"])
    return out


def _ids(reader) -> list[str]:
    return [d.id for d in reader]


def test_read_back_identical(dialogues, tokenizer, shards):
    read = list(ShardReader(shards, "train", shuffle=False))
    assert [d.id for d in read] == [d.id for d in dialogues]
    texts = [t.text for d in dialogues for t in d.turns]
    expected = tokenizer(texts, add_special_tokens=False)["input_ids"]
    got = [t for d in read for t in d.turns]
    assert len(got) == len(expected)
    assert all(g.dtype == np.int32 and g.tolist() == e for g, e in zip(got, expected))
    assert [d.roles for d in read] == [[t.role for t in d.turns] for d in dialogues]
    assert len(read[3].turns[1]) == 0
    assert {"A", "B", "user", "agent"} == {r for d in read for r in d.roles}
    assert all(isinstance(d, TokenizedDialogue) for d in read)


def test_layout_manifest_and_whole_dialogues(dialogues, shards, minilm_path):
    manifest = json.loads((shards / "manifest.json").read_text())
    split = manifest["splits"]["train"]
    assert split["dialogues"] == len(dialogues) and split["turns"] == sum(len(d.turns) for d in dialogues)
    assert split["num_shards"] == len(split["shards"]) > 10
    assert manifest["tokenizer"]["info"]["vocab_size"] == 30527 and manifest["sources"] == ["chitchat", "sgd"]
    assert manifest_tokenizer_path(shards) == Path(minilm_path).resolve()
    seen: list[str] = []
    for entry in split["shards"]:
        tokens = np.load(shards / "train" / f"{entry['name']}.tokens.npy")
        assert tokens.dtype == np.uint16
        ids = json.loads((shards / "train" / f"{entry['name']}.ids.json").read_text())
        seen += ids
        assert len(tokens) <= 4000 or len(ids) == 1  # only a single dialogue may exceed the shard size
    assert seen == [d.id for d in dialogues]  # every dialogue in exactly one shard
    assert not [p for p in (shards / "train").iterdir() if ".tmp" in p.name]


def test_typed_role_tokens_in_text_stay_text(tokenizer, tmp_path):
    dialogue = Dialogue("d1", [Turn("u", "press [USR] then [EOT]", role="user")])
    stats = write_shards([dialogue], tokenizer, tmp_path, "train", progress=False)
    write_manifest(tmp_path, "MiniLM", {"train": stats}, [])
    (turn,) = next(iter(ShardReader(tmp_path))).turns
    assert tokenizer.convert_tokens_to_ids("[USR]") not in turn.tolist()
    assert tokenizer.convert_tokens_to_ids("[EOT]") not in turn.tolist()


def test_shuffle_is_deterministic_per_seed_and_epoch(dialogues, shards):
    all_ids = sorted(d.id for d in dialogues)
    first = ShardReader(shards, seed=7)
    epoch0, epoch1 = _ids(first), _ids(first)  # iterating again starts the next epoch
    assert first.epoch == 2
    assert epoch0 == _ids(ShardReader(shards, seed=7))
    assert epoch0 != _ids(ShardReader(shards, seed=8))
    assert epoch0 != epoch1
    assert sorted(epoch0) == sorted(epoch1) == all_ids  # every dialogue exactly once per epoch
    assert epoch0 != [d.id for d in dialogues]
    again = ShardReader(shards, seed=7)
    again.set_epoch(1)
    assert _ids(again) == epoch1


def test_shuffle_permutes_shards_and_the_dialogues_inside_them(shards):
    """Both levels are shuffled: the shard visiting order and the order inside each shard."""
    manifest = json.loads((shards / "manifest.json").read_text())
    where = {}
    for s, entry in enumerate(manifest["splits"]["train"]["shards"]):
        ids = json.loads((shards / "train" / f"{entry['name']}.ids.json").read_text())
        where.update({i: (s, k) for k, i in enumerate(ids)})
    order = [where[i] for i in _ids(ShardReader(shards, seed=11))]
    visits = [s for k, (s, _) in enumerate(order) if k == 0 or order[k - 1][0] != s]
    assert sorted(visits) == list(range(len(visits)))  # one shard at a time, each visited once
    assert visits != sorted(visits)
    shuffled_inside = 0
    for s in visits:
        positions = [k for shard, k in order if shard == s]
        assert sorted(positions) == list(range(len(positions)))
        shuffled_inside += len(positions) > 2 and positions != sorted(positions)
    assert shuffled_inside >= len(visits) // 2
    unshuffled = [where[i] for i in _ids(ShardReader(shards, shuffle=False))]
    assert unshuffled == sorted(unshuffled)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_are_disjoint_and_cover(dialogues, shards, world_size):
    parts = []
    for rank in range(world_size):
        reader = ShardReader(shards, seed=3, rank=rank, world_size=world_size)
        ids = _ids(reader)
        assert len(ids) == len(reader)
        parts.append(ids)
    counts = Counter(i for part in parts for i in part)
    assert set(counts) == {d.id for d in dialogues} and set(counts.values()) == {1}
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    # the ranks' streams interleave into the single-process order
    single = _ids(ShardReader(shards, seed=3))
    assert [single[i] for i in range(0, len(single), world_size)] == parts[0]


@pytest.mark.parametrize("stop", [0, 1, 17, 60, 299])
def test_resume_yields_exactly_the_rest(shards, stop):
    reader = ShardReader(shards, seed=5, rank=1, world_size=2, loop=True)
    stream = iter(reader)
    for _ in range(stop):
        next(stream)
    state = json.loads(json.dumps(reader.state_dict()))  # survives a checkpoint file
    rest = [next(stream).id for _ in range(len(reader) + 40)]  # runs into the next epoch
    resumed = ShardReader(shards, seed=5, rank=1, world_size=2, loop=True)
    resumed.load_state_dict(state)
    stream2 = iter(resumed)
    assert [next(stream2).id for _ in range(len(rest))] == rest


def test_resume_at_end_of_epoch_yields_nothing_more(shards):
    reader = ShardReader(shards, seed=1)
    stream = iter(reader)
    for _ in range(len(reader)):
        next(stream)
    resumed = ShardReader(shards, seed=1)
    resumed.load_state_dict(reader.state_dict())
    assert _ids(resumed) == []
    assert resumed.epoch == 1


def test_resume_refuses_other_settings(shards):
    state = ShardReader(shards, seed=1).state_dict()
    with pytest.raises(ValueError, match="seed"):
        ShardReader(shards, seed=2).load_state_dict(state)


def test_memory_stays_bounded(tokenizer, tmp_path):
    """A reader over many shards holds one at a time: its peak is far below the corpus size."""
    stats = write_shards(_chitchat_dialogues(1500), tokenizer, tmp_path, "train", shard_tokens=40_000, progress=False)
    write_manifest(tmp_path, "MiniLM", {"train": stats}, ["chitchat"])
    assert stats["num_shards"] >= 15
    corpus_bytes = stats["tokens"] * 4  # int32 in memory
    reader = ShardReader(tmp_path, seed=0)
    tracemalloc.start()
    held, count = set(), 0
    for dialogue in reader:
        held.add(len(reader.loaded_shards))
        count += dialogue.num_tokens > 0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 1500 and held == {1} and reader.loaded_shards == []
    assert peak < corpus_bytes / 10, (peak, corpus_bytes)


def test_missing_or_inconsistent_shards_name_the_folder(shards, tmp_path):
    with pytest.raises(ShardsNotFound, match=str(tmp_path)):
        ShardReader(tmp_path)
    with pytest.raises(ShardsNotFound, match="no split 'test'"):
        ShardReader(shards, "test")
    broken = tmp_path / "broken"
    (broken / "train").mkdir(parents=True)
    for path in (shards / "train").iterdir():
        (broken / "train" / path.name).write_bytes(path.read_bytes())
    (broken / "manifest.json").write_text((shards / "manifest.json").read_text())
    ids = broken / "train" / "shard-00002.ids.json"
    ids.write_text(json.dumps(json.loads(ids.read_text())[:-1]))
    with pytest.raises(ShardError, match="shard-00002 does not match the manifest"):
        list(ShardReader(broken, shuffle=False))
    (broken / "train" / "shard-00001.roles.npy").unlink()
    with pytest.raises(ShardsNotFound, match="shard-00001.roles.npy"):
        ShardReader(broken)


def test_crash_leaves_only_complete_shards_and_no_manifest(dialogues, tokenizer, tmp_path):
    def crashing():
        for i, dialogue in enumerate(dialogues):
            if i == 120:
                raise RuntimeError("disk full")
            yield dialogue

    with pytest.raises(RuntimeError, match="disk full"):
        write_shards(crashing(), tokenizer, tmp_path, "train", shard_tokens=3000, batch_size=64, progress=False)
    files = [p.name for p in (tmp_path / "train").iterdir()]
    names = {f.split(".")[0] for f in files}
    assert names and all(len([f for f in files if f.startswith(n + ".")]) == 5 for n in names)
    assert not (tmp_path / "manifest.json").exists()
    with pytest.raises(ShardsNotFound, match="manifest"):
        ShardReader(tmp_path)


def test_rewrite_removes_stale_shards_and_old_manifest(dialogues, tokenizer, tmp_path):
    old = write_shards(dialogues[:100], tokenizer, tmp_path, "train", shard_tokens=2000, progress=False)
    write_manifest(tmp_path, "MiniLM", {"train": old}, [])
    (tmp_path / "train" / ".shard-00000.tokens.npy.tmp999").write_bytes(b"half")  # a crashed run's leftover
    stats = write_shards(dialogues[:10], tokenizer, tmp_path, "train", shard_tokens=2000, progress=False)
    assert not (tmp_path / "manifest.json").exists()  # it listed shards that no longer exist
    on_disk = {p.name.split(".")[0] for p in (tmp_path / "train").iterdir()}
    assert on_disk == {s["name"] for s in stats["shards"]}
    write_manifest(tmp_path, "MiniLM", {"train": stats}, [])
    assert len(ShardReader(tmp_path)) == 10


def test_bad_role_names_the_dialogue(tokenizer, tmp_path):
    bad = Dialogue("odd-1", [Turn("x", "hello", role="narrator")])
    with pytest.raises(ShardError, match="odd-1.*narrator"):
        write_shards([bad], tokenizer, tmp_path, "train", progress=False)


def test_token_dtype_follows_vocabulary_size():
    assert token_dtype(30527) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32


@pytest.mark.slow
def test_full_chitchat_corpus_tokenises_in_seconds(tokenizer, tmp_path):
    """The whole chit-chat corpus (258k messages in 139k turns), as `convssl prepare` shards it."""
    import time

    dialogues = _chitchat_dialogues(10**6)
    messages = 258_145
    started = time.perf_counter()
    stats = write_shards(dialogues, tokenizer, tmp_path, "train", progress=False)
    seconds = time.perf_counter() - started
    print(f"{messages / seconds:,.0f} utterances/s, {stats['tokens'] / seconds:,.0f} tokens/s, {seconds:.1f} s")
    assert stats["dialogues"] == len(dialogues) == 7168
    assert seconds < 30


def test_malformed_manifest_is_named(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"splits": {"train": {"shards": [{"name": "shard-00000"}]}}}))
    with pytest.raises(ShardError, match=r"splits.train.shards\[0\] must have the keys"):
        ShardReader(tmp_path)
    (tmp_path / "manifest.json").write_text("{oops")
    with pytest.raises(ShardError, match="manifest.json: not valid JSON"):
        ShardReader(tmp_path)


def test_rank_without_dialogues(tokenizer, tmp_path):
    dialogue = Dialogue("only", [Turn("u", "hello there", role="user")])
    write_manifest(tmp_path, "MiniLM", {"train": write_shards([dialogue], tokenizer, tmp_path, "train")}, [])
    assert [d.id for d in ShardReader(tmp_path, rank=0, world_size=2)] == ["only"]
    empty = ShardReader(tmp_path, rank=1, world_size=2)
    assert len(empty) == 0 and list(empty) == []
    with pytest.raises(ShardError, match="none for rank 1 of 2"):
        next(iter(ShardReader(tmp_path, rank=1, world_size=2, loop=True)))
    with pytest.raises(ValueError, match="rank"):
        ShardReader(tmp_path, rank=2, world_size=2)
