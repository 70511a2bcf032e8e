"""`run_prepare` end to end on a small mixed input: counts add up, splits are disjoint and stable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from convssl.config import load_config
from convssl.data.config import PrepareConfig
from convssl.data.pipeline import run_prepare
from convssl.data.rejects import read_rejects
from convssl.data.shards import ShardReader
from convssl.data.tokenizer import load_tokenizer

STORY = (
    "I spent the whole weekend repairing the old wooden boat my grandfather built, sanding every plank "
    "and painting the hull a deep shade of blue before the summer festival at the lake"
)


def _dialogue(i: str, texts: list[str]) -> dict:
    return {"id": i, "turns": [{"speaker": "ann" if k % 2 == 0 else "bob", "text": t} for k, t in enumerate(texts)]}


def make_inputs(root: Path) -> dict[str, Path]:
    """A generic JSONL file with known duplicates, PII, German text and one broken line."""
    lines = [
        _dialogue("story", [STORY, "That sounds like a lovely way to spend the weekend, did it float?"]),
        # Same words, other case and punctuation: an exact duplicate after folding.
        _dialogue("story-copy", [STORY.upper() + "!!", "That sounds like a lovely way to spend the weekend did it float"]),
        # One word changed: a near duplicate.
        _dialogue("story-near", [STORY.replace("deep", "dark"),
                                 "That sounds like a lovely way to spend the weekend, did it float?"]),
        _dialogue("contact", ["mail me at jane.doe@example.com or call +44 20 7946 0958 please",
                              "sure, I will write to bob.smith@example.org tonight"]),
        _dialogue("german", ["Ich habe am Wochenende das alte Holzboot meines Großvaters repariert und gestrichen.",
                             "Das klingt wunderbar, ist es denn auch wieder schwimmfähig geworden?"]),
        _dialogue("single", ["only one turn here"]),
        _dialogue("fullwidth", ["ｈｅｌｌｏ ｔｈｅｒｅ, how are you doing today my friend?", "fine thanks"]),
    ]
    text = "\n".join(json.dumps(x, ensure_ascii=False) for x in lines)
    text += '\n{"id": "broken", "turns": [\n'
    jsonl = root / "chats.jsonl"
    jsonl.write_text(text, encoding="utf-8")
    intents = root / "intents"
    intents.mkdir()
    (intents / "train.csv").write_text(
        "text,category\nmy card number is 4111 1111 1111 1111,card\nwhere is my card?,card\n,card\n", encoding="utf-8")
    (intents / "test.csv").write_text("text,category\nI lost my card,card\n", encoding="utf-8")
    return {"jsonl": jsonl, "intents": intents}


def _config(paths: list[str], **overrides: str) -> PrepareConfig:
    items = [f"inputs.paths=[{','.join(repr(p) for p in paths)}]", "inputs.limit=60"]
    items += [f"{k}={v}" for k, v in overrides.items()]
    return load_config(PrepareConfig, "prepare", items)


def _read_split_ids(out: Path) -> dict[str, list[str]]:
    ids = {}
    for path in sorted((out / "dialogues").glob("*.jsonl")):
        ids[path.stem] = [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]
    return ids


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, dict, dict[str, Path]]:
    root = tmp_path_factory.mktemp("pipeline")
    inputs = make_inputs(root)
    paths = ["chitchat", str(shared_data / "sgd" / "train" / "dialogues_003.json"), str(inputs["jsonl"]),
             str(inputs["intents"])]
    config = _config(paths, **{"tokenizer.vocab_size": "1200", "tokenizer.min_frequency": "1",
                               "shards.shard_tokens": "20000"})
    out = root / "out"
    report = run_prepare(config, out, progress=False)
    return out, report, inputs


def test_counts_add_up(prepared: tuple[Path, dict, dict[str, Path]]) -> None:
    out, report, _ = prepared
    c = report["counts"]
    assert c["records_read"] == c["dialogues_read"] + c["intents_read"] + c["rejected"]
    removed = sum(n for stage in report["stages"] for n in stage["removed"].values())
    assert c["dialogues_read"] == c["dialogues_kept"] + removed
    for stage in report["stages"]:
        assert stage["dialogues_in"] - stage["dialogues_out"] == sum(stage["removed"].values()), stage["stage"]
    chained = [s["dialogues_out"] for s in report["stages"][:-1]]
    assert chained == [s["dialogues_in"] for s in report["stages"][1:]]
    # Every dropped record is on disk with its reason.
    assert len(read_rejects(out / "rejects.jsonl")) == c["rejected"] == 2  # broken JSON line + empty intent text
    filtered = [json.loads(x) for x in (out / "filtered.jsonl").read_text().splitlines()]
    assert len(filtered) == removed
    assert c["intents_kept"] == 3 and c["intents_read"] == 3


def test_each_filter_removed_the_planted_record(prepared: tuple[Path, dict, dict[str, Path]]) -> None:
    out, report, _ = prepared
    filtered = {x["id"]: x["reason"] for x in map(json.loads, (out / "filtered.jsonl").read_text().splitlines())}
    assert filtered["story-copy"] == "exact_duplicate"
    assert filtered["story-near"] == "near_duplicate"
    assert filtered["german"] == "language:de"
    assert filtered["single"] == "too_few_turns"
    assert report["rejects"] == {"malformed_json": 1, "missing_field": 1}
    kept = {i for ids in _read_split_ids(out).values() for i in ids}
    assert {"story", "contact", "fullwidth"} <= kept


def test_text_is_normalised_and_pii_scrubbed(prepared: tuple[Path, dict, dict[str, Path]]) -> None:
    out, report, _ = prepared
    dialogues = {json.loads(x)["id"]: json.loads(x) for p in (out / "dialogues").glob("*.jsonl")
                 for x in p.read_text(encoding="utf-8").splitlines()}
    contact = [t["text"] for t in dialogues["contact"]["turns"]]
    assert "jane.doe@example.com" not in contact[0] and "[EMAIL]" in contact[0] and "[PHONE]" in contact[0]
    assert dialogues["fullwidth"]["turns"][0]["text"].startswith("hello there")
    assert report["pii_dialogues"]["EMAIL"] >= 2 and report["pii_dialogues"]["PHONE"] >= 1
    assert report["pii_intents"] == {"CARD": 1}
    intents = [json.loads(x) for x in (out / "intents" / "train.jsonl").read_text().splitlines()]
    assert intents[0] == {"text": "my card number is [CARD]", "label": "card", "split": "train", "source": "intents"}
    assert (out / "intents" / "test.jsonl").exists()


def test_splits_disjoint_and_complete(prepared: tuple[Path, dict, dict[str, Path]]) -> None:
    out, report, _ = prepared
    ids = _read_split_ids(out)
    assert set(ids) == {"train", "validation", "test"}
    all_ids = [i for v in ids.values() for i in v]
    assert len(all_ids) == len(set(all_ids)) == report["counts"]["dialogues_kept"]
    assert {k: len(v) for k, v in ids.items()} == {k: s["dialogues"] for k, s in report["splits"].items()}
    assert len(ids["train"]) > len(ids["validation"])
    assert set(report["splits"]["train"]["by_source"]) == {"chitchat", "sgd/train", "chats"}


def test_tokenizer_and_shards_cover_every_split(prepared: tuple[Path, dict, dict[str, Path]]) -> None:
    out, report, _ = prepared
    tok = load_tokenizer(out / "tokenizer")
    assert len(tok) == report["tokenizer"]["vocab_size"] and report["tokenizer"]["trained"]
    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    for split, stats in report["splits"].items():
        assert manifest["splits"][split]["dialogues"] == stats["dialogues"]
        assert report["shards"][split]["turns"] == stats["turns"]
    assert report["shards"]["train"]["shards"] >= 2  # shard_tokens=20000 forces several
    reader = ShardReader(out / "shards", "validation", shuffle=False)
    first = next(iter(reader))
    assert first.id in _read_split_ids(out)["validation"]
    assert all(isinstance(t, np.ndarray) for t in first.turns)


def test_report_timings_and_stages(prepared: tuple[Path, dict, dict[str, Path]]) -> None:
    out, report, _ = prepared
    assert [s["stage"] for s in report["stages"]] == [
        "read", "normalize", "pii", "quality", "language", "exact_dedup", "near_dedup"]
    for name in ("read", "normalize", "quality", "tokenizer", "shards", "report", "total"):
        assert report["timings"][name] >= 0
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["counts"] == report["counts"]


def test_splits_stable_when_data_is_added(tmp_path: Path, shared_data: Path) -> None:
    sgd = str(shared_data / "sgd" / "train" / "dialogues_004.json")
    small = run_prepare(_config([sgd], **{"tokenizer.enabled": "false", "inputs.limit": "30", "plots": "false"}),
                        tmp_path / "a", progress=False)
    big = run_prepare(_config([sgd, "chitchat"], **{"tokenizer.enabled": "false", "plots": "false"}),
                      tmp_path / "b", progress=False)
    assert small["counts"]["dialogues_kept"] < big["counts"]["dialogues_kept"]
    split_a = {i: s for s, ids in _read_split_ids(tmp_path / "a").items() for i in ids}
    split_b = {i: s for s, ids in _read_split_ids(tmp_path / "b").items() for i in ids}
    assert split_a and all(split_b[i] == s for i, s in split_a.items())


def test_curated_output_reads_back(prepared: tuple[Path, dict, dict[str, Path]], tmp_path: Path) -> None:
    out, report, _ = prepared
    again = run_prepare(
        load_config(PrepareConfig, "prepare", [f"inputs.paths=['{out / 'dialogues'}']", "tokenizer.enabled=false"]),
        tmp_path / "again", progress=False)
    assert again["counts"]["rejected"] == 0
    assert again["counts"]["dialogues_read"] == report["counts"]["dialogues_kept"]
    assert again["counts"]["dialogues_kept"] == report["counts"]["dialogues_kept"]
    assert _read_split_ids(tmp_path / "again") == _read_split_ids(out)


def test_duplicate_ids_across_inputs_are_renamed(tmp_path: Path) -> None:
    make = [_dialogue("same", ["hello there, how is the weather where you live?", "sunny and warm all week"]),
            _dialogue("other", ["did you watch the football match last night?", "yes, what a great final"])]
    (tmp_path / "a.jsonl").write_text(json.dumps(make[0]) + "\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({**make[1], "id": "same"}) + "\n")
    config = load_config(PrepareConfig, "prepare", [
        f"inputs.paths=['{tmp_path / 'a.jsonl'}','{tmp_path / 'b.jsonl'}']", "tokenizer.enabled=false",
        "split.train=1", "split.validation=0", "split.test=0"])
    report = run_prepare(config, tmp_path / "out", progress=False)
    assert report["counts"]["renamed_duplicate_ids"] == 1
    assert sorted(_read_split_ids(tmp_path / "out")["train"]) == ["same", "same#2"]
    assert list(report["splits"]) == ["train"]


def test_bad_config_values_fail_early() -> None:
    with pytest.raises(ValueError, match="stages"):
        load_config(PrepareConfig, "prepare", ["stages=[normalize,typo]"])
    with pytest.raises(ValueError, match="sum to 1"):
        load_config(PrepareConfig, "prepare", ["split.train=0.5"])
    with pytest.raises(ValueError, match="unknown"):
        load_config(PrepareConfig, "prepare", ["dedup.treshold=0.5"])
    with pytest.raises(ValueError, match="pii.types"):
        load_config(PrepareConfig, "prepare", ["pii.types=[EMAIL,PASSPORT]"])
    with pytest.raises(ValueError, match="tokenizer.kind"):
        load_config(PrepareConfig, "prepare", ["tokenizer.kind=sentencepiece"])


def test_preset_equals_defaults() -> None:
    from convssl.config import to_dict

    assert to_dict(load_config(PrepareConfig, "prepare")) == to_dict(PrepareConfig())


def test_report_explains_removals_by_source(prepared: tuple[Path, dict, dict[str, Path]]) -> None:
    out, report, _ = prepared
    quality = next(s for s in report["stages"] if s["stage"] == "quality")
    assert quality["removed_by_source"]["too_few_turns"]["chats"] >= 1  # the planted one-turn dialogue
    for stage in report["stages"]:
        for reason, n in stage["removed"].items():
            assert sum(stage["removed_by_source"][reason].values()) == n, (stage["stage"], reason)
    reasons = report["reasons"]
    assert "fewer than 2 turns" in reasons["too_few_turns"]
    assert "'de'" in reasons["language:de"] and "['en']" in reasons["language:de"]
    assert ">= 0.8" in reasons["near_duplicate"]
    assert "parse" in reasons["malformed_json"] and "missing_field" in reasons
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## What was removed, and why" in md
    assert "| language | language:de | 1 | chats: 1 |" in md


def test_every_shard_mixes_the_sources(prepared: tuple[Path, dict, dict[str, Path]]) -> None:
    """Shards are written in a hash order, so even the first shard is not one source's block."""
    out, report, _ = prepared
    source_of = {json.loads(line)["id"]: json.loads(line)["source"]
                 for line in (out / "dialogues" / "train.jsonl").read_text(encoding="utf-8").splitlines()}
    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    shards = manifest["splits"]["train"]["shards"]
    assert len(shards) >= 2
    seen = []
    for entry in shards:
        ids = json.loads((out / "shards" / "train" / f"{entry['name']}.ids.json").read_text())
        seen += ids
        assert {"chitchat", "sgd/train"} <= {source_of[i] for i in ids}, entry["name"]
    assert sorted(seen) == sorted(source_of)  # the same dialogues, only in another order
    assert seen != list(source_of)


def test_shard_order_is_a_stable_hash_order() -> None:
    from convssl.data.dialogue import Dialogue, Turn
    from convssl.data.pipeline import shard_order

    dialogues = [Dialogue(f"d{i}", [Turn("a", "hi", "A")]) for i in range(200)]
    ordered = [d.id for d in shard_order(dialogues)]
    assert sorted(ordered) == sorted(d.id for d in dialogues) and ordered != [d.id for d in dialogues]
    # Adding dialogues keeps the relative order of the old ones; another seed gives another order.
    grown = [d.id for d in shard_order(dialogues + [Dialogue(f"new{i}", []) for i in range(50)])]
    assert [i for i in grown if not i.startswith("new")] == ordered
    assert [d.id for d in shard_order(dialogues, seed=1)] != ordered
