"""Shared checks for every reader: encodings, binary junk, over-long lines, JSON with line numbers.

Readers see raw bytes first so that a wrong encoding or a binary file gets a message that says
what is wrong and where, instead of a UnicodeDecodeError traceback or silently mangled text.
"""

from __future__ import annotations

import codecs
import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from convssl.data.rejects import RejectLog

DEFAULT_MAX_LINE_BYTES = 1_000_000


def line_reader(read: Callable[[Path, RejectLog, int, int | None], Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """The one signature of the line-based readers (csv, jsonl, text, intents).

    Callers pass `path` (str or Path) and, optionally, `rejects`, `max_line_bytes` and `limit`, by
    keyword; other keywords (the dispatcher passes the same ones to every reader) are ignored. The
    reader itself receives them resolved: a Path, a RejectLog, an int and a limit or None."""

    @functools.wraps(read)
    def reader(path: str | Path, rejects: RejectLog | None = None, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
               limit: int | None = None, **_: Any) -> Iterator[Any]:
        return read(Path(path), rejects if rejects is not None else RejectLog(), max_line_bytes, limit)

    return reader

# Bytes that never occur in text files (controls other than tab, newline, form feed, return, escape).
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13, 27))
_CONTROL_TABLE = bytes.maketrans(b"", b"")


def _mostly_text(data: bytes) -> bool:
    printable = sum(1 for b in data if 32 <= b < 127 or b in (9, 10, 13))
    return printable > 0.8 * max(1, len(data))


def _looks_utf16(head: bytes) -> bool:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True
    # Latin-script text in UTF-16 without BOM: every other byte is NUL, the others printable.
    sample = head[:4000]
    if len(sample) < 8:
        return False
    evens, odds = sample[0::2], sample[1::2]
    if odds.count(0) > 0.4 * len(odds) and _mostly_text(evens.replace(b"\x00", b"")):
        return True
    return evens.count(0) > 0.4 * len(evens) and _mostly_text(odds.replace(b"\x00", b""))


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    sample = head[:8000]
    if not sample:
        return False
    controls = len(sample) - len(sample.translate(_CONTROL_TABLE, _CONTROL))
    return controls > 0.05 * len(sample)


def check_file_bytes(path: Path, data: bytes, rejects: RejectLog) -> bool:
    """Reject files that are empty, UTF-16 or binary as a whole; True when the bytes look like text."""
    if not data.strip():
        rejects.reject(path, None, "empty_file", "file is empty (no records)")
        return False
    head = data[:8192]
    if _looks_utf16(head):
        rejects.reject(
            path, 1, "bad_encoding",
            "file looks UTF-16 encoded; convert it to UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8`)", head[:80],
        )
        return False
    if _looks_binary(head):
        rejects.reject(path, None, "binary_file", "file looks binary (NUL or control bytes), not text", head[:80])
        return False
    return True


def _describe_decode_error(raw: bytes, exc: UnicodeDecodeError) -> str:
    bad = raw[exc.start : exc.start + 4]
    try:
        as_latin1 = raw.decode("latin-1")[exc.start : exc.start + 1]
        hint = f"; as latin-1 it would read {as_latin1!r}: convert the file to UTF-8"
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        hint = ""
    return f"not valid UTF-8 at byte {exc.start} of the line ({bad!r}){hint}"


def decoded_lines(
    path: Path, rejects: RejectLog, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[tuple[int, str]]:
    """Yield (line number, text without newline) for each good line; reject bad ones by line."""
    data = path.read_bytes()
    if not check_file_bytes(path, data, rejects):
        return
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if len(raw) > max_line_bytes:
            rejects.reject(
                path, number, "line_too_long",
                f"line is {len(raw):,} bytes, over the limit of {max_line_bytes:,} (input.max_line_bytes)", raw,
            )
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            rejects.reject(path, number, "bad_encoding", _describe_decode_error(raw, exc), raw)
            continue
        yield number, text.removesuffix("\r")



def json_lines(path: Path, rejects: RejectLog, max_line_bytes: int) -> Iterator[tuple[int, Any]]:
    """(line, parsed value) of every non-empty JSONL line; a line that does not parse is rejected."""
    for line, text in decoded_lines(path, rejects, max_line_bytes):
        if not text.strip():
            continue
        try:
            yield line, json.loads(text)
        except json.JSONDecodeError as exc:
            rejects.reject(path, line, "malformed_json", f"invalid JSON: {exc.msg} (column {exc.colno})", text)

def read_json_text(path: Path, rejects: RejectLog) -> str | None:
    """The file as text when it is non-empty UTF-8 text; otherwise reject it and return None."""
    data = path.read_bytes()
    if not check_file_bytes(path, data, rejects):
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        rejects.reject(path, line, "bad_encoding", f"not valid UTF-8 at byte {exc.start}; convert the file to UTF-8")
        return None


def read_json_document(path: Path, rejects: RejectLog) -> tuple[str, Any] | None:
    """Decode and parse a whole-file JSON document; reject the file with a line number on failure."""
    text = read_json_text(path, rejects)
    if text is None:
        return None
    try:
        return text, json.loads(text)
    except json.JSONDecodeError as exc:
        rejects.reject(path, exc.lineno, "malformed_json", f"invalid JSON: {exc.msg} (column {exc.colno})",
                       text[max(0, exc.pos - 60) : exc.pos + 60])
        return None


def iter_json_object(path: Path, text: str, rejects: RejectLog) -> Iterator[tuple[int, str, Any]]:
    """Yield (line, key, value) for each member of a top-level JSON object, parsing lazily.

    Lets a reader with a `limit` stop after a few records of a 40 MB file, and gives every record
    its line number for the reject log.
    """
    for line, (key, value) in _iter_members(path, text, rejects, "{}", "a JSON object", _parse_key_value):
        yield line, key, value


def iter_json_array(path: Path, text: str, rejects: RejectLog) -> Iterator[tuple[int, Any]]:
    """Yield (line, item) for each element of a top-level JSON array, so rejects can name lines.

    Parsing element by element (C scanner, one call per element) costs little over json.loads and
    keeps the offset of every record.
    """
    yield from _iter_members(path, text, rejects, "[]", "a JSON list of records",
                             lambda decoder, text, pos: decoder.raw_decode(text, pos))


def line_of_offset(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


MemberParser = Callable[[json.JSONDecoder, str, int], tuple[Any, int]]


def _parse_key_value(decoder: json.JSONDecoder, text: str, pos: int) -> tuple[tuple[str, Any], int]:
    key, end = decoder.raw_decode(text, pos)
    colon = _skip_ws(text, end)
    if not isinstance(key, str) or colon >= len(text) or text[colon] != ":":
        raise json.JSONDecodeError("expected a string key and ':'", text, colon)
    value, end = decoder.raw_decode(text, _skip_ws(text, colon + 1))
    return (key, value), end


def _iter_members(path: Path, text: str, rejects: RejectLog, brackets: str, what: str,
                  parse_member: MemberParser) -> Iterator[tuple[int, Any]]:
    """(line, member) of the top-level container that `brackets` ("{}" or "[]") opens and closes.

    A member that does not parse ends the file with one reject: without the member's end there is
    no safe place to resume.
    """
    opener, closer = brackets
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if pos >= len(text) or text[pos] != opener:
        rejects.reject(path, line_of_offset(text, pos), "malformed_json", f"expected {what}")
        return
    pos = _skip_ws(text, pos + 1)
    line, counted = 1, 0
    while pos < len(text) and text[pos] != closer:
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            member, end = parse_member(decoder, text, pos)
        except json.JSONDecodeError as exc:
            rejects.reject(path, exc.lineno, "malformed_json", f"invalid JSON: {exc.msg}; rest of the file skipped",
                           text[pos : pos + 120])
            return
        yield line, member
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
        elif pos >= len(text) or text[pos] != closer:
            rejects.reject(path, line_of_offset(text, pos), "malformed_json",
                           f"expected ',' or '{closer}' between records")
            return


def _skip_ws(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in " \t\r\n":
        pos += 1
    return pos


def require(record: Any, field: str, kind: type | tuple[type, ...], where: str) -> Any:
    """Fetch a field or raise MissingField naming it, so readers reject with a precise message."""
    if not isinstance(record, dict):
        raise MissingField(f"{where} must be a JSON object, got {type(record).__name__}", "malformed_record")
    if field not in record or record[field] is None:
        raise MissingField(f"{where} has no '{field}' field", "missing_field")
    value = record[field]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise MissingField(f"{where} field '{field}' must be {names}, got {type(value).__name__}", "malformed_record")
    return value


class MissingField(ValueError):
    """A record lacks a required field or has it in the wrong type."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
