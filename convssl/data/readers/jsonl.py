"""Generic JSONL: one dialogue per line, `{"id": ..., "turns": [{"speaker": ..., "text": ...}, ...]}`.

This is also the format `convssl prepare` writes curated dialogues in, so a curated folder is a
valid input. Turns may carry `role` (kept when it is a known role) and `timestamp`; a missing id
is made from file name and line. A JSON file holding a list of such objects is read the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from convssl.data.dialogue import ROLES, Dialogue, Turn
from convssl.data.readers._common import (
    MissingField,
    iter_json_array,
    json_lines,
    line_reader,
    read_json_document,
    require,
)
from convssl.data.readers.roles import infer_roles
from convssl.data.rejects import RejectLog


def parse_dialogue(item: Any, default_id: str, source: str) -> Dialogue:
    """Validate one generic dialogue record; MissingField names the missing or wrong field."""
    if not isinstance(item, dict):
        raise MissingField(f"record must be a JSON object, got {type(item).__name__}", "malformed_record")
    dialogue_id = str(item["id"]) if item.get("id") not in (None, "") else default_id
    where = f"dialogue {dialogue_id}"
    raw_turns = require(item, "turns", list, where)
    if not raw_turns:
        raise MissingField(f"{where} has an empty 'turns' list", "missing_field")
    turns = []
    for i, raw in enumerate(raw_turns):
        speaker = require(raw, "speaker", (str, int), f"{where} turn {i}")
        text = require(raw, "text", str, f"{where} turn {i}")
        role = raw.get("role")
        timestamp = raw.get("timestamp")
        turns.append(Turn(speaker=str(speaker), text=text, role=role if role in ROLES else "",
                          timestamp=None if timestamp is None else str(timestamp)))
    if any(not t.role for t in turns):
        inferred = infer_roles(t.speaker for t in turns)
        for turn in turns:
            turn.role = turn.role or inferred[turn.speaker]
    meta = item.get("meta") if isinstance(item.get("meta"), dict) else {}
    return Dialogue(id=dialogue_id, turns=turns, source=str(item.get("source") or source), meta=meta)


def parse_dialogues(path: Path, records: Iterator[tuple[int, Any]], rejects: RejectLog,
                    limit: int | None) -> Iterator[Dialogue]:
    """Dialogues from (line, JSON value) records, at most `limit`; a bad record is rejected by line.
    The limit is checked before the next record is read, so nothing past it is parsed or rejected."""
    if limit is not None and limit <= 0:
        return
    count = 0
    for line, item in records:
        try:
            yield parse_dialogue(item, f"{path.stem}:{line}", path.stem)
            count += 1
        except MissingField as exc:
            rejects.reject(path, line, exc.reason, str(exc), item)
        if limit is not None and count >= limit:
            return


@line_reader
def read_jsonl(path: Path, rejects: RejectLog, max_line_bytes: int, limit: int | None) -> Iterator[Dialogue]:
    yield from parse_dialogues(path, json_lines(path, rejects, max_line_bytes), rejects, limit)


def read_dialogue_json(
    path: str | Path, rejects: RejectLog | None = None, limit: int | None = None, **_: Any
) -> Iterator[Dialogue]:
    """A JSON file holding a list of generic dialogue objects."""
    path = Path(path)
    rejects = rejects if rejects is not None else RejectLog()
    parsed = read_json_document(path, rejects)
    if parsed is None:
        return
    yield from parse_dialogues(path, iter_json_array(path, parsed[0], rejects), rejects, limit)
