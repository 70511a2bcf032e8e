"""CSV dialogues: rows `conversation_id,speaker,text` (and an optional `timestamp`), one row a turn.

Rows are grouped by conversation id in order of appearance, so a dialogue's rows need not be
contiguous. The header names the columns; their order is free.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from convssl.data.dialogue import Dialogue, Turn
from convssl.data.readers._common import DEFAULT_MAX_LINE_BYTES, decoded_lines, line_reader
from convssl.data.readers.roles import infer_roles
from convssl.data.rejects import RejectLog

ID_COLUMNS = ("conversation_id", "dialogue_id", "dialog_id")
REQUIRED = ("speaker", "text")


def delimiter_of(path: Path) -> str:
    """Tab for `.tsv` files (intent sets are often shipped so), comma otherwise."""
    return "\t" if path.suffix.lower() == ".tsv" else ","


def csv_rows(
    path: Path, rejects: RejectLog, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[tuple[int, list[str]]]:
    """Yield (line, fields) for each CSV (or `.tsv`) row, including the header; bad rows are rejected by line."""
    state = {"line": 0}

    def lines() -> Iterator[str]:
        for number, text in decoded_lines(path, rejects, max_line_bytes):
            state["line"] = number
            yield text + "\n"

    csv.field_size_limit(max(max_line_bytes, 131072))
    reader = csv.reader(lines(), delimiter=delimiter_of(path))
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            rejects.reject(path, state["line"], "malformed_record", f"CSV error: {exc}")
            continue
        if row and any(cell.strip() for cell in row):
            yield state["line"], row


def header_columns(header: list[str]) -> dict[str, int]:
    return {name.strip().lower().lstrip("\ufeff"): i for i, name in enumerate(header)}


def csv_table(path: Path, rejects: RejectLog, max_line_bytes: int
              ) -> tuple[int, list[str], dict[str, int], Iterator[tuple[int, list[str]]]] | None:
    """(header line, header, column index by lower-case name, the remaining rows), or None when
    the file has no row at all."""
    rows = csv_rows(path, rejects, max_line_bytes)
    first = next(rows, None)
    if first is None:
        return None
    line, header = first
    return line, header, header_columns(header), rows


def is_dialogue_header(header: list[str]) -> bool:
    cols = header_columns(header)
    return any(c in cols for c in ID_COLUMNS) and all(c in cols for c in REQUIRED)


@line_reader
def read_csv_dialogues(path: Path, rejects: RejectLog, max_line_bytes: int, limit: int | None) -> Iterator[Dialogue]:
    table = csv_table(path, rejects, max_line_bytes)
    if table is None:
        return
    header_line, header, cols, rows = table
    id_col = next((c for c in ID_COLUMNS if c in cols), None)
    missing = [c for c in REQUIRED if c not in cols] + ([] if id_col else ["conversation_id"])
    if missing:
        read = ",".join(header)
        rejects.reject(path, header_line, "missing_field",
                       f"CSV header {read!r} lacks column(s) {missing}: a chat log needs "
                       "conversation_id,speaker,text[,timestamp]; for an intent set (text,label) pass --format intents",
                       read)
        return
    assert id_col is not None
    idx_id, idx_speaker, idx_text = cols[id_col], cols["speaker"], cols["text"]
    idx_time = cols.get("timestamp")
    width = len(header)
    groups: dict[str, list[Turn]] = {}
    for line, row in rows:
        if len(row) != width:
            rejects.reject(path, line, "malformed_record", f"row has {len(row)} fields, the header has {width}", ",".join(row))
            continue
        conv, speaker, text = row[idx_id].strip(), row[idx_speaker].strip(), row[idx_text]
        empty = [name for name, value in ((id_col, conv), ("speaker", speaker), ("text", text.strip())) if not value]
        if empty:
            rejects.reject(path, line, "missing_field", f"row has an empty {', '.join(empty)} field", ",".join(row))
            continue
        timestamp = row[idx_time] if idx_time is not None and row[idx_time] else None
        groups.setdefault(conv, []).append(Turn(speaker=speaker, text=text, timestamp=timestamp))
    for count, (conv, turns) in enumerate(groups.items()):
        if limit is not None and count >= limit:
            return
        roles = infer_roles(t.speaker for t in turns)
        for turn in turns:
            turn.role = roles[turn.speaker]
        yield Dialogue(id=conv, turns=turns, source=path.stem)
