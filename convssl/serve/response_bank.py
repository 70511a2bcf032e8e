"""The response bank: dual-encoder retrieval of a reply for turns that no written answer covers.

Every bank entry is embedded once at start-up, and a user turn is answered with the entry whose
key is nearest by cosine. An entry is a (context, response) pair — the key is the context, so a
general-purpose sentence encoder finds "a turn like yours" and replies with what a person said
after it — or a bare response, which is then its own key (the right choice for an encoder trained
on response selection, where turns and replies share one space). Whether its reply is used (its
threshold) is decided in `policy.py`.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convssl.serve.answers import ResponsesError

_URL = re.compile(r"https?://|www\.|@\w")


@dataclass
class BankEntry:
    response: str
    context: str | None = None

    @property
    def key(self) -> str:
        return self.context if self.context else self.response


def load_bank_file(path: str | Path, limit: int | None = None) -> list[BankEntry]:
    """JSONL of {"response", "context"?} or plain text (one response per line)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"response bank file {path} does not exist")
    entries: list[BankEntry] = []
    jsonl = path.suffix in {".jsonl", ".json"}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line:
                continue
            if jsonl:
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ResponsesError(f"{path}:{number}: invalid JSON: {exc.msg}") from exc
                if not isinstance(item, dict) or not isinstance(item.get("response"), str):
                    raise ResponsesError(f"{path}:{number}: each line needs a string field 'response'")
                entries.append(BankEntry(item["response"], item.get("context") or None))
            else:
                entries.append(BankEntry(line))
            if limit and len(entries) >= limit:
                break
    if not entries:
        raise ResponsesError(f"{path}: the response bank is empty")
    return entries


def _clean_turn(messages: list[dict[str, Any]]) -> str:
    return " ".join(str(m.get("text", "")).strip() for m in messages).strip()


def _usable(text: str, max_chars: int = 120) -> bool:
    return 2 <= len(text) <= max_chars and not _URL.search(text) and any(c in string.ascii_letters for c in text)


def chitchat_bank(limit: int = 3000) -> list[BankEntry]:
    """(turn, reply) pairs from the chitchat corpus bundled with the `chitchat_dataset` package.

    Only short, link-free openings of conversations are used: they are the generic small talk
    ("hi, how are you?") a service bot meets, not the topic-specific middles of long chats.
    """
    import chitchat_dataset

    path = Path(chitchat_dataset.__file__).resolve().parent / "dataset.json"
    if not path.exists():
        raise FileNotFoundError(f"chitchat corpus not found at {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    entries: list[BankEntry] = []
    seen: set[str] = set()
    for conv_id in sorted(data):
        turns = [_clean_turn(t) for t in data[conv_id].get("messages", [])[:4]]
        for context, response in zip(turns, turns[1:]):
            if _usable(context) and _usable(response) and context.lower() not in seen:
                seen.add(context.lower())
                entries.append(BankEntry(response, context))
        if len(entries) >= limit:
            break
    return entries[:limit]


class ResponseBank:
    """Precomputed, L2-normalised key embeddings; `best(query_embeddings)` is one matrix product."""

    def __init__(self, entries: Sequence[BankEntry], encoder: Any, batch_size: int = 128, by_response: bool = False):
        """`by_response`: rank the replies themselves (a response-selection encoder), not their contexts."""
        self.entries = list(entries)
        keys = [e.response if by_response else e.key for e in self.entries]
        if by_response:  # a response encoder's replies get its "document" prompt, if it was trained with one
            keys = encoder.prompted(keys, "document")
        self.keys = encoder.embed(keys, batch_size=batch_size, normalize=True) if keys else None

    def best(self, queries: np.ndarray) -> list[tuple[str, float]]:
        if not self.entries:
            return [("", -1.0)] * len(queries)
        sims = queries @ self.keys.T
        idx = sims.argmax(axis=1)
        return [(self.entries[i].response, float(sims[row, i])) for row, i in enumerate(idx)]
