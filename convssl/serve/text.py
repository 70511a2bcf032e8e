"""Text cleaning at the edge: what the classifier, the encoder and the database all see.

JSON may carry what no tokenizer can encode: a lone UTF-16 surrogate (`"\\ud800"`) is a valid
JSON escape but not a Unicode character, and the Rust tokenizers raise on it. Control and
invisible characters (NUL, zero-width spaces, bidi overrides) pass tokenizers but make a stored
text differ from what a reader sees. So every text is cleaned once, where it enters, with the
same repair the curation pipeline applies to chat logs; the models and the database then get the
same string.

Unlike chat logs, live messages come from browsers and apps as proper UTF-8, so mojibake repair
(ftfy) is left out: it is not idempotent ("Â¡" -> "¡" -> ...), and the edge must be, so a text
cleaned twice (a retry, a stored text sent back) is the same text.
"""

from __future__ import annotations

import re

from convssl.data.curate.text import normalize_text

_SURROGATES = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """Drop lone surrogates, NFC, drop control/invisible characters, fold spaces; a fixed point.

    NFC (not NFKC) keeps what the user wrote ("x²" stays "x²"); the result is always encodable
    as UTF-8 and may be empty, which callers reject. Dropping a character can make two others
    composable ("e", NUL, U+0301), so the steps repeat until nothing changes (two rounds at most
    in practice).
    """
    text = _SURROGATES.sub("", text)
    for _ in range(4):
        cleaned = normalize_text(text, fix_unicode=False, form="NFC")
        if cleaned == text:
            break
        text = cleaned
    return text
