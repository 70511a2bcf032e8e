"""Language detection and the language filter on real English data and crafted foreign text."""

from __future__ import annotations

import json

import pytest

from convssl.data.curate.language import LanguageFilter, detect_language
from convssl.data.dialogue import Dialogue, Turn

FOREIGN = {
    "de": ["Guten Tag, ich möchte gerne mein Konto auflösen.", "Kein Problem, ich helfe Ihnen sofort dabei."],
    "fr": [
        "Bonjour, je voudrais réserver une table pour deux personnes ce soir.",
        "Bien sûr, à quelle heure ?",
    ],
    "es": ["Hola, ¿a qué hora abre la farmacia mañana por la mañana?", "Abre a las nueve en punto."],
    "ru": ["Здравствуйте, я хочу перевести деньги на другой счёт.", "Конечно, назовите сумму."],
}


def _dialogue(texts: list[str]) -> Dialogue:
    return Dialogue(
        id="d",
        turns=[
            Turn(speaker=f"s{i % 2}", role="A" if i % 2 == 0 else "B", text=t) for i, t in enumerate(texts)
        ],
    )


@pytest.fixture(scope="module")
def sgd_dialogues(shared_data) -> list[Dialogue]:
    raw = json.loads((shared_data / "sgd" / "train" / "dialogues_001.json").read_text(encoding="utf-8"))
    return [_dialogue([t["utterance"] for t in d["turns"]]) for d in raw[:200]]


def test_detects_common_languages() -> None:
    for lang, texts in FOREIGN.items():
        detected, prob = detect_language(" ".join(texts))
        assert detected == lang
        assert 0.5 < prob <= 1.0
    assert detect_language("I would like to transfer money to my savings account, please.")[0] == "en"


def test_real_english_dialogues_are_kept(sgd_dialogues: list[Dialogue]) -> None:
    lang_filter = LanguageFilter()
    reasons = [lang_filter.reason(d) for d in sgd_dialogues]
    assert reasons.count(None) == len(sgd_dialogues)


def test_foreign_dialogues_are_dropped_with_their_language() -> None:
    lang_filter = LanguageFilter()
    for lang, texts in FOREIGN.items():
        assert lang_filter.reason(_dialogue(texts)) == f"language:{lang}"


def test_keep_other_languages(sgd_dialogues: list[Dialogue]) -> None:
    german_only = LanguageFilter(keep=["de"])
    assert german_only.reason(_dialogue(FOREIGN["de"])) is None
    assert german_only.reason(sgd_dialogues[0]) == "language:en"
    assert LanguageFilter(keep=("en", "fr")).reason(_dialogue(FOREIGN["fr"])) is None


def test_short_text_is_not_judged() -> None:
    lang_filter = LanguageFilter(min_chars=20)
    assert lang_filter.reason(_dialogue(["Danke!", "Bitte."])) is None  # 13 characters
    assert LanguageFilter(min_chars=5).reason(_dialogue(["Danke schön!", "Bitte sehr."])) == "language:de"


def test_uncertain_informal_english_is_kept() -> None:
    # py3langid spreads its probability on slang; the filter drops only confident foreign text.
    text = ["hahaha yeah dude", "thats so funny lmao"]
    lang, prob = detect_language(" ".join(text))
    assert lang == "en" or prob < 0.5
    assert LanguageFilter().reason(_dialogue(text)) is None
    strict = LanguageFilter(min_confidence=0.0)
    assert strict.reason(_dialogue(FOREIGN["ru"])) == "language:ru"


def test_bad_options_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown language code.*xx"):
        LanguageFilter(keep=["en", "xx"])
    with pytest.raises(ValueError, match="min_confidence"):
        LanguageFilter(min_confidence=2.0)
    with pytest.raises(ValueError, match="at least one"):
        LanguageFilter(keep=[])
