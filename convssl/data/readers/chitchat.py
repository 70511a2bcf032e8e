"""The BYU Chit-Chat corpus, as shipped by the `chitchat-dataset` package (the default input).

Its `dataset.json` maps a conversation id to `{"messages": [[{text, timestamp, sender}, ...], ...]}`,
where each inner list holds consecutive messages of one sender: one turn. Peer chat, so the
first sender is role A and the other B.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from convssl.data.dialogue import Dialogue, Turn
from convssl.data.readers._common import MissingField, iter_json_object, read_json_text, require
from convssl.data.readers.roles import infer_roles
from convssl.data.rejects import RejectLog

SOURCE = "chitchat"


def default_path() -> Path:
    """The JSON file inside the installed package; a clear error when it is not installed."""
    try:
        import chitchat_dataset
    except ImportError as exc:
        raise FileNotFoundError(
            "the default input needs the chitchat corpus: `pip install chitchat-dataset`, or name input files"
        ) from exc
    return Path(chitchat_dataset.__file__).resolve().parent / "dataset.json"


def read_chitchat(
    path: str | Path | None = None, limit: int | None = None, rejects: RejectLog | None = None, **_: Any
) -> Iterator[Dialogue]:
    """Yield conversations in file order; `limit` stops early (tests read a slice)."""
    path = Path(path) if path is not None else default_path()
    rejects = rejects if rejects is not None else RejectLog()
    text = read_json_text(path, rejects)
    if text is None:
        return
    count = 0
    for line, conv_id, record in iter_json_object(path, text, rejects):
        if limit is not None and count >= limit:
            return
        try:
            yield _conversation(conv_id, record)
            count += 1
        except MissingField as exc:
            rejects.reject(path, line, exc.reason, str(exc), record, record_id=conv_id)


def _conversation(conv_id: str, record: Any) -> Dialogue:
    where = f"conversation {conv_id}"
    groups = require(record, "messages", list, where)
    turns: list[Turn] = []
    for g, group in enumerate(groups):
        if not isinstance(group, list) or not group:
            raise MissingField(f"{where} message group {g} must be a non-empty list", "malformed_record")
        first = group[0]
        sender = str(require(first, "sender", (str, int), f"{where} message group {g}"))
        texts = [str(require(m, "text", (str, int, float), f"{where} message group {g}")) for m in group]
        turns.append(Turn(speaker=sender, text=" ".join(texts), timestamp=first.get("timestamp")))
    roles = infer_roles(t.speaker for t in turns)
    for turn in turns:
        turn.role = roles[turn.speaker]
    meta = {k: record[k] for k in ("prompt", "start") if k in record}
    return Dialogue(id=conv_id, turns=turns, source=SOURCE, meta=meta)
