"""normalize_text: what a user sees after repair, on crafted damage and on real corpus text."""

from __future__ import annotations

import csv
import time
import unicodedata
from pathlib import Path

import pytest

from convssl.data.curate.text import normalize_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("donâ€™t", "don't"),  # UTF-8 read as Windows-1252
        ("He said â€œhelloâ€\x9d", 'He said "hello"'),
        ("Ã©tÃ© Ã  Paris", "été à Paris"),
        ("Ð¿Ñ€Ð¸Ð²ÐµÑ‚", "привет"),  # Cyrillic mojibake
        ("don’t", "don't"),  # curly quotes straightened like ftfy does
        ("ｆｕｌｌ　ｗｉｄｔｈ １２３", "full width 123"),  # NFKC
        ("\ufb01le", "file"),  # ligature
        ("  lots \t of\n\nspace  ", "lots of space"),
        ("nul\x00byte and bell\x07", "nulbyte and bell"),
        ("zero\u200bwidth\ufeff", "zerowidth"),
        ("café 😀 ok", "café 😀 ok"),  # real non-ASCII is kept
        ("👩\u200d💻 coder", "👩\u200d💻 coder"),  # emoji ZWJ sequence survives
        ("", ""),
    ],
)
def test_repairs_damaged_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_lowercase_is_opt_in() -> None:
    assert normalize_text("Hello World") == "Hello World"
    assert normalize_text("Hello World", lowercase=True) == "hello world"
    assert normalize_text("ÉTÉ", lowercase=True) == "été"


def test_options_can_turn_off_repair_and_normalisation() -> None:
    assert normalize_text("donâ€™t", fix_unicode=False, form="none") == "donâ€™t"
    assert normalize_text("ｆｕｌｌ", form="none") == "ｆｕｌｌ"
    assert unicodedata.is_normalized("NFD", normalize_text("café", form="NFD"))


def test_unknown_form_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="normal form 'NFX'"):
        normalize_text("x", form="NFX")


def _banking_texts(shared_data, limit: int = 3000) -> list[str]:
    with open(shared_data / "banking77" / "train.csv", newline="", encoding="utf-8") as f:
        return [row["text"] for _, row in zip(range(limit), csv.DictReader(f))]


def test_real_queries_keep_their_words_and_are_fixed_points(shared_data) -> None:
    texts = _banking_texts(shared_data)
    for text in texts:
        once = normalize_text(text)
        assert normalize_text(once) == once
        assert once.split() == text.replace("’", "'").split()


@pytest.mark.benchmark
def test_fast_enough_for_millions_of_turns(shared_data) -> None:
    texts = _banking_texts(shared_data) * 10
    texts += [t + " café" for t in texts[:3000]]  # the non-ASCII path
    start = time.perf_counter()
    for text in texts:
        normalize_text(text)
    per_text = (time.perf_counter() - start) / len(texts)
    assert per_text < 50e-6, f"{per_text * 1e6:.1f} µs per text"


def test_prepare_cli_applies_every_curation_filter(tmp_path: Path) -> None:
    """One crafted corpus through `convssl prepare`: each dialogue meets the filter it was made for."""
    import json

    from convssl.cli import main
    from convssl.data.splits import assign_split

    base = [
        "I would like to book a table for two at the Italian place tonight please",
        "Sure, at what time would you like to arrive there?",
    ]

    def dialogue(did: str, *texts: str) -> dict:
        return {
            "id": did,
            "turns": [{"speaker": "user" if i % 2 == 0 else "agent", "text": t} for i, t in enumerate(texts)],
        }

    records = [
        dialogue(
            "mojibake",
            "Iâ€™m locked out of my account since this morning",
            "I can help, what’s your username?",
        ),
        dialogue(
            "pii",
            "My email is jane.doe@example.com and my phone is (415) 555-0199",
            "Thanks, order #12345678 is on its way",
        ),
        dialogue("one_turn", "hello? anyone there?"),
        dialogue("spam", "aaaaaaaaaaaaaaaaaaaaa", "zzzzzzzzzzzzzzzzzzzzzzz", base[0]),
        dialogue(
            "german",
            "Guten Tag, ich möchte gerne einen Tisch für zwei Personen reservieren.",
            "Gerne, um wie viel Uhr?",
        ),
        dialogue("original", *base),
        dialogue("exact_copy", base[0].upper(), base[1] + "!!"),
        dialogue("near_copy", base[0].replace("tonight", "tonight then"), base[1]),
        *[
            dialogue(
                f"ok_{i}",
                f"Question number {i}: can you tell me the weather in city {i} today?",
                f"It is sunny in city {i}, around {10 + i} degrees.",
            )
            for i in range(20)
        ],
    ]
    source = tmp_path / "logs.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "prepared"
    assert main(["prepare", str(source), "--out", str(out), "--no-tokenize", "--no-progress"]) == 0

    filtered = {}
    for line in (out / "filtered.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        filtered[row["id"]] = row["reason"]
    assert filtered == {
        "one_turn": "too_few_turns",
        "spam": "repeated_char_spam",
        "german": "language:de",
        "exact_copy": "exact_duplicate",
        "near_copy": "near_duplicate",
    }
    kept = {}
    for split in ("train", "validation", "test"):
        path = out / "dialogues" / f"{split}.jsonl"
        for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
            row = json.loads(line)
            kept[row["id"]] = row
            assert assign_split(row["id"]) == split
    assert set(kept) == {r["id"] for r in records} - set(filtered)
    assert [t["text"] for t in kept["mojibake"]["turns"]] == [
        "I'm locked out of my account since this morning",
        "I can help, what's your username?",
    ]
    assert kept["pii"]["turns"][0]["text"] == "My email is [EMAIL] and my phone is [PHONE]"
    assert kept["pii"]["turns"][1]["text"] == "Thanks, order #12345678 is on its way"
