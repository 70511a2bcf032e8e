"""Spelling repair for turns the classifier does not understand: "my new crad hasnt arived yet".

A sentence encoder's word pieces break on typos, so a misspelt question often falls under the
out-of-scope threshold. For such a turn the bot tries once more with each unknown word replaced by
its most frequent English neighbour one edit away (pyspellchecker's word list, plus the bot's own
vocabulary: its intents' names and written answers, so "acount" becomes "account", not "count").
The repaired turn is used only when the classifier then accepts it (`analysis.py`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


class SpellingRepair:
    def __init__(self, domain_texts: Iterable[str] = (), domain_weight: int = 10_000_000):
        try:
            from spellchecker import SpellChecker
        except ImportError as exc:
            raise ValueError("repair_spelling needs pyspellchecker: pip install pyspellchecker (in convssl[serve]), "
                             "or set repair_spelling=false") from exc

        self.checker = SpellChecker(distance=1)
        words = {w.lower() for text in domain_texts for w in _WORD.findall(text.replace("_", " ")) if len(w) > 2}
        # the bot's own words outrank general English neighbours one edit away
        for w in words:
            self.checker.word_frequency.dictionary[w] = max(self.checker.word_frequency.dictionary.get(w, 0),
                                                            domain_weight)

    def repair(self, text: str) -> str:
        """The text with each unknown word of 3+ letters replaced by its best known neighbour."""
        def fix(match: re.Match[str]) -> str:
            word = match.group(0)
            lower = word.lower()
            if len(lower) < 3 or not lower.isascii() or "'" in lower or lower in self.checker:
                return word  # short, foreign-lettered, contracted or known: leave it
            return self.checker.correction(lower) or word

        return _WORD.sub(fix, text)
