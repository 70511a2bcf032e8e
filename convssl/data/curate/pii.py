"""Replace personal data in chat text with typed placeholders before anything is trained on it.

Placeholders keep the sentence shape ("call me on [PHONE]"), so a model still learns how people
hand over contact details without memorising them. Matching is precision-first: numbers that only
look like PII (order numbers, dates, amounts, times, version strings) must survive, so cards need a
valid Luhn check digit, IBANs a valid mod-97 checksum, IPs valid octets, SSNs valid US ranges and
phones a plausible digit count.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable

PII_TYPES = ("URL", "EMAIL", "IBAN", "CARD", "SSN", "IP", "PHONE")
PLACEHOLDERS = {kind: f"[{kind}]" for kind in PII_TYPES}

_URL_RE = re.compile(r"(?<![\w@.])(?:https?://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?)]}'\""
_EMAIL_RE = re.compile(
    r"(?<![\w.%+-])[\w.%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)
# Printed IBANs come in groups of four; upper case only, so ordinary words never extend a match.
_IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_CARD_RE = re.compile(r"(?<![\w.,-])\d(?:[ -]?\d){12,18}(?![\w-]|[.,]\d)")
_SSN_RE = re.compile(r"(?<![\w.-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-]|\.\d)")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Not after "v"/"version"-style prefixes and not part of a longer dotted number (1.2.3.4.5).
_IPV4_RE = re.compile(rf"(?<![\w.])(?<!version )(?:{_OCTET}\.){{3}}{_OCTET}(?![\w]|\.\d)", re.IGNORECASE)
_IPV6_RE = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:.])")
_SEP = r"[ .\-]?"
_PHONE_RE = re.compile(
    r"(?<![\w#+.,/:-])(?:"
    # international: +CC then groups, optional (0) trunk digit or area code in brackets
    rf"\+\d{{1,3}}{_SEP}(?:\(\d{{1,4}}\){_SEP})?\d{{1,5}}(?:{_SEP}\d{{1,5}}){{1,5}}"
    # North American: (555) 123-4567, 555.123.4567, 5551234567, 1-800-555-0199
    rf"|(?:1{_SEP})?\(?\d{{3}}\)?{_SEP}\d{{3}}{_SEP}\d{{4}}"
    # European national with trunk 0: 020 7946 0958, 030-1234-5678, 06 12 34 56 78
    rf"|\(?0\d{{1,4}}\)?(?:{_SEP}\d{{2,4}}){{2,4}}"
    r")(?![\w]|[.,:/-]\d)"
)
_NOT_DIGIT = re.compile(r"\D")
_HAS_DIGIT = re.compile(r"\d")
_ASCII_TRIGGER = re.compile(r"[0-9@]")


def _may_hold_pii(text: str) -> bool:
    """Every type needs a digit, an "@", "://" or "www.": a cheap test that clears most chat turns.

    (An IPv6 address without any digit, like "dead::beef", is the accepted miss.) A single
    case-insensitive alternation regex costs several times more than these substring tests.
    """
    return (
        _ASCII_TRIGGER.search(text) is not None
        or "://" in text
        or "www." in text.lower()
        or (not text.isascii() and _HAS_DIGIT.search(text) is not None)
    )


def luhn_valid(digits: str) -> bool:
    """Card numbers carry a Luhn check digit; random 16-digit ids almost never pass it."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """ISO 13616 mod-97 check: country and check digits moved to the end, letters as 10..35."""
    iban = candidate.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34 or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _card(match: re.Match[str]) -> bool:
    # Issuer ranges start with 2-6 (Mastercard 2-series, Amex/Diners/JCB 3, Visa 4, Mastercard 5,
    # Discover/UnionPay/Maestro 6); ids, binary strings and 9-prefixed numbers do not.
    digits = _NOT_DIGIT.sub("", match.group())
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and len(set(digits)) >= 2 and luhn_valid(digits)


def _phone(match: re.Match[str]) -> bool:
    text = match.group()
    digits = _NOT_DIGIT.sub("", text)
    if len(set(digits)) < 3:  # "0101101001" and "1111111111" are not numbers anyone dials
        return False
    if text.startswith("+"):
        return 8 <= len(digits) <= 15
    if not 10 <= len(digits) <= 12:
        return False
    # A year, a month and a day ("2024 03 15 1230") is a date stamp, not a phone number.
    return not re.fullmatch(r"(?:19|20)\d\d[ .\-](?:0[1-9]|1[0-2])[ .\-]\d\d.*", text)


def _ipv6(match: re.Match[str]) -> bool:
    text = match.group()
    if sum(1 for group in text.split(":") if group) < 2:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _url(match: re.Match[str]) -> tuple[int, int]:
    """Trailing sentence punctuation is not part of the URL, a balanced ")" (wiki links) is."""
    url = match.group().rstrip(_URL_TRAILING)
    rest = match.group()[len(url) :]
    if rest.startswith(")") and url.count("(") > url.count(")"):
        url += ")"
    return match.start(), match.start() + len(url)


_Check = Callable[[re.Match[str]], bool]
_RULES: dict[str, tuple[re.Pattern[str], _Check | None, bool]] = {
    # kind: (pattern, validator, needs a digit in the text to be worth running)
    "URL": (_URL_RE, None, False),
    "EMAIL": (_EMAIL_RE, None, False),
    "IBAN": (_IBAN_RE, lambda m: iban_valid(m.group()), True),
    "CARD": (_CARD_RE, _card, True),
    "SSN": (_SSN_RE, None, True),
    "IP": (_IPV4_RE, None, True),
    "PHONE": (_PHONE_RE, _phone, True),
}


class PiiScrubber:
    """Typed PII replacement; construct once and reuse (patterns are compiled at import)."""

    def __init__(self, types: Iterable[str] | None = None) -> None:
        chosen = PII_TYPES if types is None else tuple(t.upper() for t in types)
        unknown = sorted(set(chosen) - set(PII_TYPES))
        if unknown:
            raise ValueError(f"unknown PII type(s) {', '.join(unknown)}; choose from {', '.join(PII_TYPES)}")
        # Fixed order matters: URLs and e-mails swallow digits that look like phones, IBANs and
        # cards are long digit runs that the phone pattern would otherwise split.
        self.types = tuple(kind for kind in PII_TYPES if kind in chosen)

    def scrub(self, text: str) -> tuple[str, Counter[str]]:
        counts: Counter[str] = Counter()
        if not text or not _may_hold_pii(text):
            return text, counts
        has_digit = _HAS_DIGIT.search(text) is not None
        for kind in self.types:
            if kind == "URL" and "://" not in text and "www." not in text.lower():
                continue
            if kind == "EMAIL" and "@" not in text:
                continue
            pattern, check, needs_digit = _RULES[kind]
            if needs_digit and not has_digit:
                continue
            text = self._replace(text, kind, pattern, check, counts)
            if kind == "IP" and ":" in text:
                text = self._replace(text, kind, _IPV6_RE, _ipv6, counts)
            has_digit = _HAS_DIGIT.search(text) is not None
        return text, counts

    @staticmethod
    def _replace(
        text: str, kind: str, pattern: re.Pattern[str], check: _Check | None, counts: Counter[str]
    ) -> str:
        placeholder = PLACEHOLDERS[kind]
        pieces: list[str] = []
        last = 0
        for match in pattern.finditer(text):
            if check is not None and not check(match):
                continue
            start, end = _url(match) if kind == "URL" else match.span()
            if start < last:
                continue
            pieces.append(text[last:start])
            pieces.append(placeholder)
            last = end
            counts[kind] += 1
        if not pieces:
            return text
        pieces.append(text[last:])
        return "".join(pieces)
