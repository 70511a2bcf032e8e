"""Bad input is counted and kept for inspection, never silently dropped.

Every reader and filter reports a malformed record here with the file, line and a short reason
code, so `DIR/rejects.jsonl` lets a user find and fix the exact record, and the summary can say
how many records were lost and why. In strict mode the first bad record stops the run instead.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import IO, Any

EXCERPT_CHARS = 200

# Every reason code a reader uses, with what it means (shown in report.md; see docs/data.md).
REJECT_REASONS: dict[str, str] = {
    "empty_file": "the file is empty or only whitespace",
    "bad_encoding": "not UTF-8 (a UTF-16 file, or a line with e.g. latin-1 bytes); convert the file to UTF-8",
    "binary_file": "NUL or control bytes: not a text file",
    "line_too_long": "a line longer than inputs.max_line_bytes; the rest of the file is still read",
    "malformed_json": "a JSONL line or JSON file that does not parse",
    "missing_field": "a required field or CSV column/cell is absent or empty (named in rejects.jsonl)",
    "malformed_record": "a field of the wrong type, a CSV row with the wrong number of fields, an SGD speaker "
                        "other than USER/SYSTEM, or a transcript line without 'speaker:'",
    "unknown_format": "the file's format could not be detected; pass --format",
}


class DataError(ValueError):
    """Input data that cannot be read; the message names the file (and line when known)."""

    def __init__(self, file: str, line: int | None, reason: str, message: str) -> None:
        self.file = file
        self.line = line
        self.reason = reason
        self.detail = message
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {message} [{reason}]")


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """A short printable preview of the offending record, so rejects.jsonl stays small."""
    if isinstance(value, bytes):
        text = value[:limit].decode("utf-8", errors="backslashreplace")
    elif isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    text = text.replace("\x00", "\\x00")
    return text if len(text) <= limit else text[:limit] + "…"


class RejectLog:
    """Collects rejected records, writes them as JSON lines and counts them per reason."""

    def __init__(self, path: str | Path | None = None, strict: bool = False) -> None:
        self.path = Path(path) if path is not None else None
        self.strict = strict
        self.counts: Counter[str] = Counter()
        self.records: list[dict[str, Any]] = []
        self._fh: IO[str] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", encoding="utf-8")

    def reject(
        self,
        file: str | Path,
        line: int | None,
        reason: str,
        message: str,
        record: Any = None,
        *,
        stage: str = "read",
        record_id: str | None = None,
    ) -> None:
        """Log one bad record; in strict mode raise a DataError naming file and line instead."""
        file = str(file)
        if self.strict:
            raise DataError(file, line, reason, message)
        entry: dict[str, Any] = {"file": file, "line": line, "stage": stage, "reason": reason, "message": message}
        if record_id is not None:
            entry["id"] = record_id
        if record is not None:
            entry["excerpt"] = excerpt(record)
        self.counts[reason] += 1
        self.records.append(entry)
        if self._fh is not None:
            self._fh.write(json.dumps(entry, ensure_ascii=False) + "\n")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> RejectLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_rejects(path: str | Path) -> list[dict[str, Any]]:
    """Load a rejects.jsonl file (for reports and tests)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]
