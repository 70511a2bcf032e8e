"""Schema-Guided Dialogue (SGD) JSON: a list of `{dialogue_id, services, turns: [{speaker, utterance}]}`.

Task-oriented logs: USER becomes role `user`, SYSTEM role `agent`. A folder is read file by file,
skipping `schema.json` (service definitions, not dialogues).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from convssl.data.dialogue import Dialogue, Turn
from convssl.data.readers._common import MissingField, iter_json_array, read_json_document, require
from convssl.data.rejects import RejectLog

ROLE_OF = {"USER": "user", "SYSTEM": "agent"}
SKIP_FILES = {"schema.json"}


def sgd_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.glob("*.json") if p.name not in SKIP_FILES)
    return [path]


def read_sgd(
    path: str | Path, rejects: RejectLog | None = None, limit: int | None = None, **_: Any
) -> Iterator[Dialogue]:
    rejects = rejects if rejects is not None else RejectLog()
    count = 0
    for file in sgd_files(Path(path)):
        parsed = read_json_document(file, rejects)
        if parsed is None:
            continue
        text, _data = parsed
        source = f"sgd/{file.parent.name}" if file.parent.name else "sgd"
        for line, item in iter_json_array(file, text, rejects):
            if limit is not None and count >= limit:
                return
            try:
                yield _dialogue(item, source, file.stem)
                count += 1
            except MissingField as exc:
                rejects.reject(file, line, exc.reason, str(exc), item)


def _dialogue(item: Any, source: str, stem: str) -> Dialogue:
    dialogue_id = str(require(item, "dialogue_id", (str, int), "SGD dialogue"))
    where = f"SGD dialogue {dialogue_id}"
    turns = []
    for i, turn in enumerate(require(item, "turns", list, where)):
        speaker = require(turn, "speaker", str, f"{where} turn {i}")
        if speaker not in ROLE_OF:
            raise MissingField(f"{where} turn {i}: speaker {speaker!r} is not USER or SYSTEM", "malformed_record")
        text = require(turn, "utterance", str, f"{where} turn {i}")
        turns.append(Turn(speaker=speaker, text=text, role=ROLE_OF[speaker]))
    meta = {"services": item.get("services", []), "file": stem}
    return Dialogue(id=dialogue_id, turns=turns, source=source, meta=meta)
