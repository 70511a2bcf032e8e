"""normalize_text: what a user sees after repair, on crafted damage and on real corpus text."""

from __future__ import annotations

import csv
import time
import unicodedata

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


def test_fast_enough_for_millions_of_turns(shared_data) -> None:
    texts = _banking_texts(shared_data) * 10
    texts += [t + " café" for t in texts[:3000]]  # the non-ASCII path
    start = time.perf_counter()
    for text in texts:
        normalize_text(text)
    per_text = (time.perf_counter() - start) / len(texts)
    assert per_text < 50e-6, f"{per_text * 1e6:.1f} µs per text"
