"""PiiScrubber: real PII becomes typed placeholders, look-alike numbers survive untouched."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest

from convssl.data.curate.pii import PII_TYPES, PLACEHOLDERS, PiiScrubber, iban_valid, luhn_valid

SCRUBBER = PiiScrubber()

POSITIVES = [
    # (text, expected output, kind)
    ("mail me at john.doe+shop@example.co.uk.", "mail me at [EMAIL].", "EMAIL"),
    ("Contact: Anna_Smith@mail-server.de", "Contact: [EMAIL]", "EMAIL"),
    ("call +44 20 7946 0958 now", "call [PHONE] now", "PHONE"),
    ("call +1-555-123-4567 today", "call [PHONE] today", "PHONE"),
    ("my cell is +49 (0)30 1234 5678", "my cell is [PHONE]", "PHONE"),
    ("call (555) 123-4567", "call [PHONE]", "PHONE"),
    ("it's 555.123.4567.", "it's [PHONE].", "PHONE"),
    ("ring 5551234567 please", "ring [PHONE] please", "PHONE"),
    ("office 020 7946 0958", "office [PHONE]", "PHONE"),
    ("toll free 1-800-555-0199.", "toll free [PHONE].", "PHONE"),
    ("portable +33 6 12 34 56 78", "portable [PHONE]", "PHONE"),
    ("mobile 06 12 34 56 78", "mobile [PHONE]", "PHONE"),
    ("card 4111 1111 1111 1111 please", "card [CARD] please", "CARD"),
    ("visa 4111-1111-1111-1111", "visa [CARD]", "CARD"),
    ("amex 378282246310005!", "amex [CARD]!", "CARD"),
    ("mc 5555555555554444", "mc [CARD]", "CARD"),
    ("IBAN GB82 WEST 1234 5698 7654 32 thanks", "IBAN [IBAN] thanks", "IBAN"),
    ("pay to DE89370400440532013000.", "pay to [IBAN].", "IBAN"),
    ("FR14 2004 1010 0505 0001 3M02 606", "[IBAN]", "IBAN"),
    ("server 192.168.1.100 is down", "server [IP] is down", "IP"),
    ("ping 8.8.8.8.", "ping [IP].", "IP"),
    ("v6 2001:db8::8a2e:370:7334 here", "v6 [IP] here", "IP"),
    ("loopback fe80::1ff:fe23:4567:890a", "loopback [IP]", "IP"),
    ("see https://en.wikipedia.org/wiki/Foo_(bar), ok", "see [URL], ok", "URL"),
    ("go to www.example.com/path?q=1!", "go to [URL]!", "URL"),
    ("(http://example.org/a)", "([URL])", "URL"),
    ("ssn 123-45-6789", "ssn [SSN]", "SSN"),
    ("SSN: 078-05-1120.", "SSN: [SSN].", "SSN"),
]

NEGATIVES = [
    "order #12345678 has shipped",
    "order 1234567890123 is late",
    "it happened on 2024-03-15 at 10:30",
    "on 15/03/2024 and 03/15/2024",
    "on 15.03.2024",
    "I paid $1,234.56 yesterday",
    "it was 1234.50 EUR",
    "the meeting is at 12:30:45",
    "upgrade to version 1.2.3.4.5",
    "release 2.10.3",
    "card number 1234567812345678",  # 16 digits, Luhn-invalid
    "card 4111 1111 1111 1112",  # one digit off
    "back in 2023 and 1999",
    "my pin is 1234 and the code 98765",
    "ssn 666-45-6789 and 000-12-3456 and 900-12-3456",
    "ip 256.1.1.1 is not valid",
    "DE89370400440532013001",  # IBAN with a broken checksum
    "binary 0101101001010 and 1111111111",
    "room 404, floor 3, 12 people, 2.5 kg",
    "score was 3-2, then 10-7",
    "stamp 2024 03 15 1230",
    "arabic-indic amounts ١٢٣ and ٤٥",
    "just an at sign @ here and an email-ish thing user@localhost",
    "ratio 16:9 and 4:3",
]


@pytest.mark.parametrize(("text", "expected", "kind"), POSITIVES)
def test_pii_becomes_typed_placeholder(text: str, expected: str, kind: str) -> None:
    scrubbed, counts = SCRUBBER.scrub(text)
    assert scrubbed == expected
    assert counts == Counter({kind: 1})


@pytest.mark.parametrize("text", NEGATIVES)
def test_look_alikes_survive_unchanged(text: str) -> None:
    assert SCRUBBER.scrub(text) == (text, Counter())


def test_counts_every_type_in_one_message() -> None:
    text = (
        "I'm jane@example.com, call +1 415 555 0100 or (415) 555-0199, card 4111111111111111, "
        "see https://example.com, from 10.0.0.1; order #12345678 on 2024-03-15 for $99.99"
    )
    scrubbed, counts = SCRUBBER.scrub(text)
    assert counts == Counter({"EMAIL": 1, "PHONE": 2, "CARD": 1, "URL": 1, "IP": 1})
    assert scrubbed == (
        "I'm [EMAIL], call [PHONE] or [PHONE], card [CARD], see [URL], from [IP]; "
        "order #12345678 on 2024-03-15 for $99.99"
    )


def test_only_chosen_types_are_scrubbed() -> None:
    text = "mail a@b.com or call (555) 123-4567"
    assert PiiScrubber(["email"]).scrub(text) == (
        "mail [EMAIL] or call (555) 123-4567",
        Counter({"EMAIL": 1}),
    )
    assert PiiScrubber(["PHONE"]).scrub(text)[0] == "mail a@b.com or call [PHONE]"
    assert PiiScrubber([]).scrub(text) == (text, Counter())


def test_unknown_type_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown PII type.*PASSPORT"):
        PiiScrubber(["EMAIL", "PASSPORT"])


def test_types_and_placeholders_are_published() -> None:
    assert set(PII_TYPES) == {"EMAIL", "PHONE", "CARD", "IBAN", "IP", "URL", "SSN"}
    assert PLACEHOLDERS["CARD"] == "[CARD]"


def test_checksums() -> None:
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB82 WEST 1234 5698 7654 33")


def test_real_banking_queries_are_left_alone(shared_data) -> None:
    # BANKING77 mentions cards, amounts, dates and transfers but holds no real PII.
    with open(shared_data / "banking77" / "train.csv", newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    changed = [t for t in texts if SCRUBBER.scrub(t)[1]]
    assert changed == []


def test_real_sgd_phone_numbers_are_found(shared_data) -> None:
    utterances = [
        turn["utterance"]
        for dialogue in json.loads((shared_data / "sgd" / "train" / "dialogues_001.json").read_text())
        for turn in dialogue["turns"]
    ]
    hits = [(u, SCRUBBER.scrub(u)) for u in utterances if "phone number is" in u.lower()]
    assert hits, "slice should contain restaurant phone numbers"
    for utterance, (scrubbed, counts) in hits:
        assert counts["PHONE"] >= 1, utterance
        assert "[PHONE]" in scrubbed
    # Nothing but phones in this SGD slice; times, party sizes and addresses stay.
    totals = sum((SCRUBBER.scrub(u)[1] for u in utterances), Counter())
    assert set(totals) <= {"PHONE"}
