"""What the bot says: intent templates from YAML, and a response bank for everything else.

The response bank is dual-encoder retrieval: every bank entry is embedded once at start-up, and a
user turn is answered with the entry whose key is nearest by cosine. An entry is a (context,
response) pair — the key is the context, so a general-purpose sentence encoder finds "a turn like
yours" and replies with what a person said after it — or a bare response, which is then its own
key (the right choice for an encoder trained on response selection, where turns and replies share
one space). Below the threshold the bank stays silent and the bot falls back.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

_SLOT = re.compile(r"{(\w+)}")
_SPACE_PUNCT = re.compile(r"\s+([.,!?;:])")
_URL = re.compile(r"https?://|www\.|@\w")


class ResponsesError(ValueError):
    """The responses YAML or the bank file is malformed; the message names file and entry."""


@dataclass
class Templates:
    """Intent -> answers, with default slot values so a template never shows a raw `{slot}`."""

    answers: dict[str, list[str]]
    defaults: dict[str, str]

    def render(self, intent: str, slots: dict[str, str] | None = None, rng: random.Random | None = None) -> str | None:
        options = self.answers.get(intent)
        if not options:
            return None
        values = {**self.defaults, **(slots or {})}
        template = (rng or random).choice(options)
        text = _SLOT.sub(lambda m: str(values.get(m.group(1), "")), template)
        return _SPACE_PUNCT.sub(r"\1", re.sub(r"\s{2,}", " ", text)).strip()


def load_templates(path: str | Path | None) -> Templates:
    if not path:
        return Templates({}, {})
    path = _package_relative(Path(path))
    if not path.exists():
        raise FileNotFoundError(f"responses file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ResponsesError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ResponsesError(f"{path}: top level must be a mapping")
    if "intents" in data:
        unknown = sorted(set(data) - {"intents", "defaults"})
        if unknown:
            raise ResponsesError(f"{path}: unknown top-level key(s) {unknown}; expected 'intents' and 'defaults'")
        intents, defaults = data.get("intents") or {}, data.get("defaults") or {}
    else:
        intents, defaults = data, {}
    if not isinstance(intents, dict) or not isinstance(defaults, dict):
        raise ResponsesError(f"{path}: 'intents' and 'defaults' must be mappings")
    answers: dict[str, list[str]] = {}
    for intent, value in intents.items():
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(v, str) and v.strip() for v in items):
            raise ResponsesError(f"{path}: intent {intent!r} needs a non-empty answer or list of answers")
        answers[str(intent)] = [v.strip() for v in items]
    return Templates(answers, {str(k): str(v) for k, v in defaults.items()})


def _package_relative(path: Path) -> Path:
    """Presets name shipped files (convssl/serve/demo/...) relative to the source tree."""
    if path.exists() or path.is_absolute():
        return path
    candidate = Path(__file__).resolve().parents[2] / path
    return candidate if candidate.exists() else path


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
        self.keys = encoder.embed(keys, batch_size=batch_size, normalize=True)

    def best(self, queries: np.ndarray) -> list[tuple[str, float]]:
        if not self.entries:
            return [("", -1.0)] * len(queries)
        sims = queries @ self.keys.T
        idx = sims.argmax(axis=1)
        return [(self.entries[i].response, float(sims[row, i])) for row, i in enumerate(idx)]
