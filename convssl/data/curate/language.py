"""Offline language identification, so a corpus meant for one language is not diluted by others.

py3langid is a compact naive-Bayes model over byte n-grams; the model is loaded once per
process and its probabilities are normalised, so a confidence threshold means the same thing for
short and long texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from py3langid.langid import MODEL_FILE, LanguageIdentifier

from convssl.data.curate.dedup import dialogue_text
from convssl.data.dialogue import Dialogue

# The model's cost is linear in bytes; a dialogue's language is clear long before 2,000 characters.
MAX_CHARS = 2000


@lru_cache(maxsize=1)
def _identifier() -> LanguageIdentifier:
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def supported_languages() -> list[str]:
    """ISO 639-1 codes the bundled model knows, for validating a user's ``keep`` list."""
    return list(_identifier().labels)


def detect_language(text: str) -> tuple[str, float]:
    """Most likely ISO 639-1 code and its normalised probability (0..1)."""
    lang, prob = _identifier().classify(text[:MAX_CHARS])
    return lang, float(prob)


def language_scores(text: str) -> dict[str, float]:
    """Normalised probability of every language, for summing over a set of kept languages."""
    return dict(_identifier().rank(text[:MAX_CHARS]))


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
        return self.text_reason(dialogue_text(dialogue))
