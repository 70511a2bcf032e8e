"""Exact and near-duplicate detection on real chit-chat text with known injected copies."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from convssl.data.curate.dedup import (
    NearDuplicateIndex,
    candidate_pairs,
    dialogue_fingerprint,
    exact_duplicates,
    fold_text,
    lsh_params,
    minhash_signatures,
    near_duplicates,
)
from convssl.data.dialogue import Dialogue, Turn


@pytest.fixture(scope="module")
def chitchat_texts() -> list[str]:
    """2,000 distinct real conversations (first ~40 words each) from the chitchat corpus."""
    chitchat = pytest.importorskip("chitchat_dataset")
    data = json.loads((Path(chitchat.__file__).parent / "dataset.json").read_text(encoding="utf-8"))
    texts, seen = [], set()
    for conv in data.values():
        words = " ".join(m["text"] for turn in conv["messages"] for m in turn).split()[:40]
        text = " ".join(words)
        if len(words) >= 30 and fold_text(text) not in seen:
            seen.add(fold_text(text))
            texts.append(text)
        if len(texts) == 2000:
            break
    return texts


def _edit(text: str, rng: random.Random) -> str:
    """A small human-like edit: change, drop or duplicate one word, or change punctuation."""
    words = text.split()
    i = rng.randrange(len(words))
    action = rng.choice(["replace", "drop", "repeat", "punct"])
    if action == "replace":
        words[i] = rng.choice(["yeah", "really", "cool", "okay"])
    elif action == "drop":
        del words[i]
    elif action == "repeat":
        words.insert(i, words[i])
    else:
        words[i] = words[i] + "!!"
    return " ".join(words)


def _shingles(text: str, n: int = 5) -> set[bytes]:
    b = fold_text(text).encode()
    return {b[i : i + n] for i in range(max(1, len(b) - n + 1))}


def _jaccard(a: str, b: str) -> float:
    x, y = _shingles(a), _shingles(b)
    return len(x & y) / len(x | y)


def _dialogue(*texts: str, roles: tuple[str, str] = ("user", "agent")) -> Dialogue:
    return Dialogue(
        id=str(hash(texts)),
        turns=[Turn(speaker=roles[i % 2], role=roles[i % 2], text=t) for i, t in enumerate(texts)],
    )


def test_fingerprint_ignores_case_punctuation_spacing_and_roles() -> None:
    a = _dialogue("Hello there!", "How can I help you?")
    b = _dialogue("hello   THERE", "how can i help you", roles=("A", "B"))
    c = _dialogue("Hello there!", "How can I help him?")
    assert dialogue_fingerprint(a) == dialogue_fingerprint(b)
    assert dialogue_fingerprint(a) != dialogue_fingerprint(c)
    assert re.fullmatch(r"[0-9a-f]{32}", dialogue_fingerprint(a))


def test_fingerprint_keeps_turn_boundaries() -> None:
    assert dialogue_fingerprint(_dialogue("a b", "c")) != dialogue_fingerprint(_dialogue("a", "b c"))


def test_exact_duplicates_drop_later_copies_only() -> None:
    first = _dialogue("I lost my card", "I can block it for you.")
    other = _dialogue("Where is my refund?", "It takes 5 days.")
    copy = _dialogue("i lost my card.", "I can block it for you")
    dialogues = [first, other, copy, other, first]
    assert exact_duplicates(dialogues) == [2, 3, 4]
    assert exact_duplicates([]) == []


def test_injected_near_duplicates_are_found(chitchat_texts: list[str]) -> None:
    rng = random.Random(0)
    texts = list(chitchat_texts)
    injected = {}
    for source in rng.sample(range(len(texts)), 200):
        injected[len(texts)] = source
        texts.append(_edit(texts[source], rng))
    dropped = set(near_duplicates(texts, threshold=0.8))
    true_dups = {i for i, s in injected.items() if _jaccard(texts[i], texts[s]) >= 0.85}
    recall = len(true_dups & dropped) / len(true_dups)
    assert len(true_dups) > 150
    assert recall >= 0.95, f"recall {recall:.3f}"
    # Originals are never the ones dropped, and unrelated real conversations are left alone.
    assert not dropped & set(injected.values())
    false_drops = dropped - set(injected)
    assert len(false_drops) <= 5, [texts[i] for i in false_drops]


def test_drops_match_brute_force_jaccard(chitchat_texts: list[str]) -> None:
    rng = random.Random(1)
    texts = chitchat_texts[:300] + [_edit(t, rng) for t in chitchat_texts[:60]]
    dropped = set(near_duplicates(texts, threshold=0.7, num_perm=256))
    for i in dropped:
        best = max(_jaccard(texts[i], texts[j]) for j in range(i))
        assert best >= 0.55, (i, best)  # minhash estimate error is ~0.03 at 256 permutations
    for i in range(300, 360):
        if _jaccard(texts[i], texts[i - 300]) >= 0.85:
            assert i in dropped


def test_clusters_keep_first_member() -> None:
    base = "i would like to book a table for two people tonight at the italian place downtown please"
    texts = ["completely different words about the weather in spring", base + " now", base, base + " ok"]
    assert near_duplicates(texts) == [2, 3]


def test_identical_short_and_empty_texts() -> None:
    assert near_duplicates(["hi", "hi", "hey", "", "", "Hi!", "  "]) == [1, 4, 5, 6]
    assert near_duplicates([]) == [] and near_duplicates(["only one"]) == []


def test_non_ascii_texts() -> None:
    texts = [
        "Das Wetter ist heute schön und wir gehen spazieren",
        "das wetter ist heute schön, und wir gehen spazieren!",
        "今日はいい天気ですね、散歩に行きましょう",
        "今日はいい天気ですね、散歩に行きましょう。",
    ]
    assert near_duplicates(texts) == [1, 3]


def test_bad_threshold_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="threshold"):
        near_duplicates(["a", "b"], threshold=1.5)


def test_signatures_are_deterministic_and_seeded(chitchat_texts: list[str]) -> None:
    a = minhash_signatures(chitchat_texts[:50], seed=3)
    assert a.shape == (50, 128) and a.dtype == np.uint32
    assert np.array_equal(a, minhash_signatures(chitchat_texts[:50], seed=3))
    assert not np.array_equal(a, minhash_signatures(chitchat_texts[:50], seed=4))
    long_ngram = minhash_signatures(chitchat_texts[:2] * 2, ngram=12)
    assert np.array_equal(long_ngram[0], long_ngram[2])


def test_lsh_bands_fit_the_signature() -> None:
    for threshold in (0.5, 0.7, 0.8, 0.9):
        bands, rows = lsh_params(threshold, 128)
        assert bands * rows <= 128
        assert 1 - (1 - threshold**rows) ** bands >= 0.8  # most pairs at the threshold become candidates


def test_candidates_grow_linearly_not_quadratically(chitchat_texts: list[str]) -> None:
    signatures = minhash_signatures(chitchat_texts)
    bands, rows = lsh_params(0.8, 128)
    pairs = candidate_pairs(signatures, bands, rows)
    n = len(chitchat_texts)
    assert len(pairs) < n  # distinct conversations: a handful of candidates, not n²/2 = 2 million
    # One huge bucket of identical texts still yields O(m) candidate pairs, not m²/2.
    same = minhash_signatures(["the very same sentence again and again"] * 5000)
    assert len(candidate_pairs(same, bands, rows)) < 2 * 5000
    assert len(near_duplicates(["the very same sentence again and again"] * 5000)) == 4999


def test_ascii_fast_fold_matches_unicode_fold() -> None:
    ascii_chars = "".join(chr(c) for c in range(128))
    reference = " ".join(re.sub(r"[\W_]+", " ", ascii_chars.casefold()).split())
    assert fold_text(ascii_chars) == reference
    assert fold_text("Straße, ÉTÉ — ok!") == "strasse été ok"
    # Punctuation- or emoji-only text keeps its symbols instead of folding to nothing.
    assert fold_text("😂") != fold_text("👍") and fold_text("!!!") != fold_text("???")
    assert near_duplicates(["😂😂", "👍", "?!", "...", " 😂😂 "]) == [4]


@pytest.mark.slow
def test_benchmark_100k_under_a_minute(tmp_path: Path) -> None:
    """The documented benchmark: 100k real chit-chat windows, 2% injected near copies."""
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "scripts" / "benchmark_dedup.py"
    spec = importlib.util.spec_from_file_location("benchmark_dedup", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "bench.json"
    assert module.main(["--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["texts"] == 100_000
    assert result["near_seconds"] < 60
    assert result["recall"] >= 0.99


def test_index_added_in_batches_equals_one_pass(chitchat_texts: list[str]) -> None:
    rng = random.Random(2)
    texts = list(chitchat_texts)
    for source in rng.sample(range(len(texts)), 150):
        texts.insert(rng.randrange(source + 1, len(texts) + 1), _edit(texts[source], rng))
    index = NearDuplicateIndex()
    dropped = []
    for lo in range(0, len(texts), 500):
        dropped += [lo + i for i in index.add(texts[lo : lo + 500])]
    assert dropped == near_duplicates(texts)
    assert len(index) == len(texts) - len(dropped)
    assert index.add(texts[:3]) == [0, 1, 2]  # everything already indexed


def test_index_query_names_the_indexed_original(chitchat_texts: list[str]) -> None:
    index = NearDuplicateIndex(threshold=0.8)
    assert index.add(chitchat_texts[:100]) == []
    assert index.query(_edit(chitchat_texts[42], random.Random(0))) == [42]
    assert index.query("a sentence that nobody in the chitchat corpus ever wrote, surely") == []
    with pytest.raises(ValueError, match="threshold"):
        NearDuplicateIndex(threshold=0)
