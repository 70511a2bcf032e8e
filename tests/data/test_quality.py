"""Quality gates: each reason on crafted dialogues, and real task-oriented dialogues pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convssl.data.curate.quality import (
    QUALITY_REASONS,
    QualityConfig,
    _turn_flags,
    is_repeat_spam,
    nonletter_ratio,
    quality_reason,
    quality_reasons,
)
from convssl.data.dialogue import Dialogue, Turn

GOOD = [
    "Hi, I need a table for two tonight.",
    "Sure, which restaurant would you like?",
    "The Italian place on Main Street, around 7 pm.",
    "Done! Your table is booked for 7 pm.",
]


def _dialogue(*texts: str) -> Dialogue:
    return Dialogue(
        id="d",
        turns=[
            Turn(speaker=f"s{i % 2}", role="user" if i % 2 == 0 else "agent", text=t)
            for i, t in enumerate(texts)
        ],
    )


def test_good_dialogue_passes() -> None:
    assert quality_reason(_dialogue(*GOOD), QualityConfig()) is None


@pytest.mark.parametrize(
    ("texts", "config", "reason"),
    [
        (GOOD[:1], QualityConfig(), "too_few_turns"),
        (GOOD * 3, QualityConfig(max_turns=10), "too_many_turns"),
        ([GOOD[0], "   ", GOOD[1]], QualityConfig(), "empty_turn"),
        ([GOOD[0], "ok", GOOD[1]], QualityConfig(min_tokens_per_turn=2), "empty_turn"),
        ([GOOD[0], "word " * 300], QualityConfig(), "turn_too_long"),
        (
            [GOOD[0], "aaaaaaaaaaaaaaaaaaaa", "hahahahahahahahahahahahahahaha", GOOD[1]],
            QualityConfig(),
            "repeated_char_spam",
        ),
        ([GOOD[0], "😂😂😂", "!!!???", "12345 6789", GOOD[1]], QualityConfig(), "non_letter_ratio"),
        (["$$$$", "#### 1234"], QualityConfig(), "non_letter_ratio"),
    ],
)
def test_each_reason(texts: list[str], config: QualityConfig, reason: str) -> None:
    assert reason in QUALITY_REASONS
    assert quality_reason(_dialogue(*texts), config) == reason


def test_single_spam_or_emoji_turn_is_normal_chat() -> None:
    assert (
        quality_reason(_dialogue(*GOOD, "hahahahahahahahahahahahahahahahaha", "😂😂"), QualityConfig())
        is None
    )
    assert quality_reason(_dialogue(GOOD[0], "😂😂😂"), QualityConfig()) is None


def test_spam_share_is_configurable() -> None:
    texts = [*GOOD, "noooooooooooooooooooo", "yesssssssssssssssssss"]  # 2 of 6 turns: 33 %
    assert quality_reason(_dialogue(*texts), QualityConfig(max_spam_turn_ratio=0.3)) == "repeated_char_spam"
    assert quality_reason(_dialogue(*texts), QualityConfig(max_spam_turn_ratio=0.4)) is None
    assert quality_reason(_dialogue(*texts), QualityConfig(max_char_repeat=30)) is None


def test_helpers() -> None:
    assert is_repeat_spam("a" * 11) and not is_repeat_spam("a" * 10)
    assert is_repeat_spam("lol " * 12) and not is_repeat_spam("I'm sooo happy!!!")
    assert nonletter_ratio("ab12") == 0.5 and nonletter_ratio("") == 0.0 and nonletter_ratio("a b") == 0.0


def test_bad_config_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="min_turns"):
        QualityConfig(min_turns=5, max_turns=2)
    with pytest.raises(ValueError, match="max_nonletter_ratio"):
        QualityConfig(max_nonletter_ratio=1.5)


def test_real_sgd_dialogues_pass(shared_data) -> None:
    raw = json.loads((shared_data / "sgd" / "train" / "dialogues_001.json").read_text(encoding="utf-8"))
    dialogues = [_dialogue(*(t["utterance"] for t in d["turns"])) for d in raw]
    reasons = [quality_reason(d, QualityConfig()) for d in dialogues]
    assert reasons.count(None) / len(reasons) > 0.99


def test_min_tokens_zero_allows_empty_turns() -> None:
    assert quality_reason(_dialogue(GOOD[0], "", GOOD[1]), QualityConfig(min_tokens_per_turn=0)) is None


def test_vectorised_checks_match_the_reference_on_real_chat() -> None:
    chitchat = pytest.importorskip("chitchat_dataset")
    data = json.loads((Path(chitchat.__file__).parent / "dataset.json").read_text(encoding="utf-8"))
    turns = [
        " ".join(m["text"] for m in turn) for conv in list(data.values())[:600] for turn in conv["messages"]
    ]
    turns += [
        "a" * 11,
        "a" * 10,
        "ha" * 11,
        "ha" * 10 + "h",
        "lol " * 11,
        "😂" * 11,
        "नमस्ते दुनिया",
        "",
        "\x00" * 12,
    ]
    spam, noisy = _turn_flags(turns, 10, 0.5)
    assert spam.tolist() == [is_repeat_spam(t, 10) for t in turns]
    assert noisy.tolist() == [nonletter_ratio(t) > 0.5 for t in turns]
    assert spam.sum() > 10 and noisy.sum() > 10  # the real slice holds both kinds


def test_batch_equals_single(shared_data) -> None:
    raw = json.loads((shared_data / "sgd" / "train" / "dialogues_002.json").read_text(encoding="utf-8"))
    dialogues = [_dialogue(*(t["utterance"] for t in d["turns"])) for d in raw]
    dialogues += [
        _dialogue(GOOD[0]),
        _dialogue(GOOD[0], "aaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbb"),
        _dialogue("😂😂", "!!"),
    ]
    config = QualityConfig(max_turns=24)
    batch = quality_reasons(dialogues, config, chunk_chars=5000)
    assert batch == [quality_reason(d, config) for d in dialogues]
    assert {"too_many_turns", "too_few_turns", "repeated_char_spam", "non_letter_ratio", None} <= set(batch)


def test_devanagari_vowel_signs_count_as_letters() -> None:
    assert nonletter_ratio("नमस्ते दुनिया") == 0.0
