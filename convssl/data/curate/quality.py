"""Heuristic quality gates that remove dialogues a model should not learn from.

Each check returns a short reason name so the curation report can say how many dialogues were
lost to what. Spam checks judge the share of bad turns, not single turns: one "hahahaha" or
"!!!" is normal chat, a dialogue that is mostly keyboard mashing or emoji is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from convssl.data.dialogue import Dialogue

QUALITY_REASONS = (
    "too_few_turns",
    "too_many_turns",
    "empty_turn",
    "turn_too_long",
    "repeated_char_spam",
    "non_letter_ratio",
)


@dataclass
class QualityConfig:
    min_turns: int = 2
    max_turns: int = 200
    min_tokens_per_turn: int = 1
    max_tokens_per_turn: int = 256
    # A turn is spam when one character, or a unit of 2-4 characters ("ha", "lol "), repeats
    # more than this many times in a row.
    max_char_repeat: int = 10
    # A turn is noise when more than this share of its non-space characters are not letters
    # (digits, punctuation, emoji).
    max_nonletter_ratio: float = 0.5
    # The dialogue is dropped when more than this share of its turns is spam (or noise), and at
    # least two turns are (unless the dialogue has only one).
    max_spam_turn_ratio: float = 0.3

    def __post_init__(self) -> None:
        if self.min_turns < 1 or self.max_turns < self.min_turns:
            raise ValueError(f"need 1 <= min_turns <= max_turns, got {self.min_turns} and {self.max_turns}")
        if self.min_tokens_per_turn < 0 or self.max_tokens_per_turn < max(1, self.min_tokens_per_turn):
            raise ValueError(
                "need 0 <= min_tokens_per_turn <= max_tokens_per_turn, got "
                f"{self.min_tokens_per_turn} and {self.max_tokens_per_turn}"
            )
        if self.max_char_repeat < 1:
            raise ValueError(f"max_char_repeat must be >= 1, got {self.max_char_repeat}")
        for name in ("max_nonletter_ratio", "max_spam_turn_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class _Compiled:
    repeat: re.Pattern[str]


_CACHE: dict[int, _Compiled] = {}


def _compiled(max_char_repeat: int) -> _Compiled:
    found = _CACHE.get(max_char_repeat)
    if found is None:
        # Unit of 1-4 characters followed by more than max_char_repeat - 1 copies of itself.
        found = _Compiled(re.compile(rf"(.{{1,4}}?)\1{{{max_char_repeat},}}", re.DOTALL))
        _CACHE[max_char_repeat] = found
    return found


def is_repeat_spam(text: str, max_char_repeat: int = 10) -> bool:
    """True when a 1-4 character unit repeats more than ``max_char_repeat`` times in a row."""
    return _compiled(max_char_repeat).repeat.search(text) is not None


def nonletter_ratio(text: str) -> float:
    """Share of non-space characters that are not letters; 0 for an empty text."""
    chars = "".join(text.split())
    if not chars:
        return 0.0
    letters = sum(1 for ch in chars if ch.isalpha())
    return 1.0 - letters / len(chars)


def _too_many(flagged: int, total: int, ratio: float) -> bool:
    return flagged > ratio * total and (flagged >= 2 or flagged == total)


def quality_reason(dialogue: Dialogue, config: QualityConfig | None = None) -> str | None:
    """The first failed check's name (see ``QUALITY_REASONS``), or None when the dialogue passes."""
    config = config or QualityConfig()
    turns = dialogue.turns
    if len(turns) < config.min_turns:
        return "too_few_turns"
    if len(turns) > config.max_turns:
        return "too_many_turns"
    token_counts = [len(turn.text.split()) for turn in turns]
    if min(token_counts) < max(1, config.min_tokens_per_turn):
        return "empty_turn"
    if max(token_counts) > config.max_tokens_per_turn:
        return "turn_too_long"
    repeat = _compiled(config.max_char_repeat).repeat
    spam = sum(1 for turn in turns if repeat.search(turn.text))
    if _too_many(spam, len(turns), config.max_spam_turn_ratio):
        return "repeated_char_spam"
    noisy = sum(1 for turn in turns if nonletter_ratio(turn.text) > config.max_nonletter_ratio)
    if _too_many(noisy, len(turns), config.max_spam_turn_ratio):
        return "non_letter_ratio"
    return None
