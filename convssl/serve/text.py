"""Text cleaning at the edge: what the classifier, the encoder and the database all see.

JSON may carry what no tokenizer can encode: a lone UTF-16 surrogate (`"\\ud800"`) is a valid
JSON escape but not a Unicode character, and the Rust tokenizers raise on it. Control and
invisible characters (NUL, zero-width spaces, bidi overrides) pass tokenizers but make a stored
text differ from what a reader sees. So every text is cleaned once, where it enters, with the
same repair the curation pipeline applies to chat logs; the models and the database then get the
same string.
"""

from __future__ import annotations

import re

from convssl.data.curate.text import normalize_text

_SURROGATES = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """Drop lone surrogates, repair mojibake, NFC, drop control/invisible characters, fold spaces.

    NFC (not NFKC) keeps what the user wrote ("x²" stays "x²"); the result is always encodable
    as UTF-8 and may be empty, which callers reject.
    """
    return normalize_text(_SURROGATES.sub("", text), form="NFC")
