"""Text repair and normalisation shared by every curation filter.

Chat logs arrive with mojibake (UTF-8 read as Windows-1252), compatibility characters, stray
control bytes and ragged whitespace. Repairing them first means duplicates, PII and language are
judged on the text a reader would see. ftfy is slow, so pure-ASCII text (most of English chat),
which cannot hold mojibake, skips it.
"""

from __future__ import annotations

import re
import unicodedata

import ftfy

NORMAL_FORMS = ("NFC", "NFKC", "NFD", "NFKD")

# C0/C1 controls (tab and newlines become spaces via the whitespace fold instead), invisible
# format characters that break matching (zero-width space, BOM, soft hyphen, bidi marks).
# ZWJ (U+200D) and variation selectors are kept: emoji sequences need them.
_CONTROL_RE = re.compile(
    "[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u00ad\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\ufeff]"
)
# The ASCII part of the same set; \t \n \v \f \r and \x1c-\x1f are whitespace to str.split()
# and so become single spaces instead of disappearing.
_ASCII_CONTROL_RE = re.compile("[\x00-\x08\x0e-\x1b\x7f]")
_FTFY_CONFIG = ftfy.TextFixerConfig(normalization=None, explain=False)
# UTF-8 mojibake always shows a lead byte (Â..ô as Latin-1/Windows-1252) followed by a
# continuation byte (U+0080..U+00BF or its Windows-1252 stand-in); text without such a pair has
# nothing for ftfy's expensive decoder search to repair.
_CP1252_CONTINUATION = "\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122"
_MOJIBAKE_HINT_RE = re.compile(f"[\u00c2-\u00f4][\u0080-\u00bf{_CP1252_CONTINUATION}]|\ufffd|[\ud800-\udfff]")
# ftfy's quote straightening, done here for text that skips ftfy, so "don’t" and "don't" agree.
_UNCURL = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
    }
)


def normalize_text(
    text: str, *, fix_unicode: bool = True, form: str = "NFKC", lowercase: bool = False
) -> str:
    """Repair and canonicalise one utterance; see the module docstring for why each step exists.

    ``form`` is a Unicode normal form or ``"none"``/``""`` to keep code points as they are.
    """
    if form and form.lower() != "none" and form not in NORMAL_FORMS:
        raise ValueError(
            f"unknown Unicode normal form {form!r}; use one of {', '.join(NORMAL_FORMS)} or 'none'"
        )
    if text.isascii():
        # No mojibake and nothing for any normal form to change: only controls and spacing.
        text = _ASCII_CONTROL_RE.sub("", text)
    else:
        if fix_unicode:
            if _MOJIBAKE_HINT_RE.search(text):
                text = ftfy.fix_text(text, _FTFY_CONFIG)
            text = text.translate(_UNCURL)
        if form and form.lower() != "none":
            text = unicodedata.normalize(form, text)
        text = _CONTROL_RE.sub("", text)
    text = " ".join(text.split())
    return text.lower() if lowercase else text
