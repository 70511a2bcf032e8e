"""Plain-text transcripts: `speaker: text` lines, a blank line between dialogues.

A line without `speaker:` is rejected by line number rather than guessed at, so a transcript
with a stray line loses only that line and the user learns where it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from convssl.data.dialogue import Dialogue, Turn
from convssl.data.readers._common import decoded_lines, line_reader
from convssl.data.readers.roles import infer_roles
from convssl.data.rejects import RejectLog

# A speaker label: a word character first, then letters, digits, spaces and a little punctuation.
TURN_LINE = re.compile(r"^\s*(\w[\w .'()@#/-]{0,63}?)\s*:\s?(.*)$")


def looks_like_transcript(lines: list[str]) -> bool:
    content = [line for line in lines if line.strip()]
    return bool(content) and sum(bool(TURN_LINE.match(line)) for line in content) >= 0.8 * len(content)


@line_reader
def read_text(path: Path, rejects: RejectLog, max_line_bytes: int, limit: int | None) -> Iterator[Dialogue]:
    turns: list[Turn] = []
    start = 0
    count = 0
    for line, text in decoded_lines(path, rejects, max_line_bytes):
        if not text.strip():
            if turns:
                if limit is not None and count >= limit:
                    return
                yield _dialogue(path, start, turns)
                count += 1
                turns = []
            continue
        match = TURN_LINE.match(text)
        if not match or not match.group(2).strip():
            reason = "malformed_record" if not match else "missing_field"
            message = "expected 'speaker: text'" if not match else "turn has no text after 'speaker:'"
            rejects.reject(path, line, reason, message, text)
            continue
        if not turns:
            start = line
        turns.append(Turn(speaker=match.group(1).strip(), text=match.group(2).strip()))
    if turns and (limit is None or count < limit):
        yield _dialogue(path, start, turns)


def _dialogue(path: Path, start: int, turns: list[Turn]) -> Dialogue:
    roles = infer_roles(t.speaker for t in turns)
    for turn in turns:
        turn.role = roles[turn.speaker]
    return Dialogue(id=f"{path.stem}:{start}", turns=turns, source=path.stem)
