"""Offline language identification, so a corpus meant for one language is not diluted by others.

py3langid is a compact naive-Bayes model over byte n-grams; the model is loaded once per
process and its probabilities are normalised, so a confidence threshold means the same thing for
short and long texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from py3langid.langid import MODEL_FILE, LanguageIdentifier

from convssl.data.dialogue import Dialogue

# The model walks every byte in pure Python (~1 µs per byte); a dialogue's language is clear long
# before 1,000 characters (on the chitchat corpus 500, 1,000 and 2,000 give the same decisions).
MAX_CHARS = 1000


@lru_cache(maxsize=1)
def _identifier() -> LanguageIdentifier:
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def supported_languages() -> list[str]:
    """ISO 639 codes the bundled model knows, for validating a user's ``keep`` list."""
    return list(_identifier().labels)


def detect_language(text: str) -> tuple[str, float]:
    """Most likely ISO 639 code (mostly two letters) and its normalised probability (0..1)."""
    lang, prob = _identifier().classify(text[:MAX_CHARS])
    return lang, float(prob)


class LanguageFilter:
    """Drops dialogues that are confidently in a language outside ``keep``.

    A dialogue is dropped only when its most likely language is not kept AND that language has at
    least ``min_confidence`` probability. Uncertain texts are kept: casual chat ("hahaha yeah dude
    thats so funny lmao") often gets a low, scattered score, and dropping it would strip the
    corpus of exactly the informal language a chat model must learn. Texts shorter than
    ``min_chars`` are not judged at all, since on a few words ("lol ok") the model only guesses.
    """

    def __init__(
        self, keep: Sequence[str] = ("en",), min_confidence: float = 0.5, min_chars: int = 20
    ) -> None:
        if isinstance(keep, str):
            keep = (keep,)
        known = set(supported_languages())
        unknown = sorted(set(keep) - known)
        if unknown:
            raise ValueError(
                f"unknown language code(s) {', '.join(unknown)}; py3langid knows: {', '.join(sorted(known))}"
            )
        if not keep:
            raise ValueError("keep must name at least one language")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
        self.keep = tuple(keep)
        self.min_confidence = min_confidence
        self.min_chars = min_chars

    def text_reason(self, text: str) -> str | None:
        """Why ``text`` would be dropped (``"language:de"``), or None to keep it."""
        text = text.strip()
        if len(text) < self.min_chars:
            return None
        lang, prob = detect_language(text)
        if lang in self.keep or prob < self.min_confidence:
            return None
        return f"language:{lang}"

    def reason(self, dialogue: Dialogue) -> str | None:
        """Why the dialogue would be dropped, judged on the start of its joined turns."""
        return self.text_reason(_head_text(dialogue, max(MAX_CHARS, self.min_chars)))


def _head_text(dialogue: Dialogue, limit: int) -> str:
    """The turns joined by spaces, stopping once ``limit`` characters are collected."""
    parts: list[str] = []
    size = 0
    for turn in dialogue.turns:
        parts.append(turn.text)
        size += len(turn.text) + 1
        if size >= limit:
            break
    return " ".join(parts)
