"""Real dialogue slices and tokenizers trained on them, shared by the pretext and model tests."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import numpy as np

from convssl.data.shards import TokenizedDialogue

RawDialogue = list[tuple[str, str]]  # (role, text) per turn


@functools.lru_cache(maxsize=1)
def _chitchat_all() -> dict:
    import chitchat_dataset

    path = Path(chitchat_dataset.__file__).parent / "dataset.json"
    return json.loads(path.read_text(encoding="utf-8"))


def chitchat_dialogues(n: int = 300, start: int = 0) -> list[RawDialogue]:
    """Real peer chats: each inner message list is one turn; speakers alternate A/B."""
    out = []
    for conv in list(_chitchat_all().values())[start : start + n]:
        turns = []
        for i, messages in enumerate(conv["messages"]):
            text = " ".join(m["text"].strip() for m in messages if m["text"].strip())
            if text:
                turns.append(("A" if i % 2 == 0 else "B", text))
        if len(turns) >= 2:
            out.append(turns)
    return out


def sgd_dialogues(shared_data: Path, n: int = 100) -> list[RawDialogue]:
    """Real task-oriented dialogues (user/agent) from the first SGD training file."""
    records = json.loads((shared_data / "sgd" / "train" / "dialogues_001.json").read_text(encoding="utf-8"))
    role = {"USER": "user", "SYSTEM": "agent"}
    return [[(role[t["speaker"]], t["utterance"]) for t in r["turns"]] for r in records[:n]]


@functools.lru_cache(maxsize=4)
def trained_tokenizer(kind: str = "wordpiece", vocab_size: int = 3000, n_dialogues: int = 1500):
    """A tokenizer trained (through convssl's own trainer) on real chitchat text, loaded back."""
    from convssl.data.tokenizer import load_tokenizer, train_tokenizer

    texts = [text for d in chitchat_dialogues(n_dialogues) for _, text in d]
    out = Path(tempfile.mkdtemp(prefix=f"convssl-tok-{kind}-"))
    train_tokenizer(texts, out, kind=kind, vocab_size=vocab_size, lowercase=True)
    tok = load_tokenizer(out)
    assert len(tok) > 500
    return tok


def tokenize(tokenizer, dialogues: list[RawDialogue], prefix: str = "d") -> list[TokenizedDialogue]:
    texts = [text for d in dialogues for _, text in d]
    encoded = [e.ids for e in tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]
    out, k = [], 0
    for i, d in enumerate(dialogues):
        turns = [np.asarray(encoded[k + j], dtype=np.uint16) for j in range(len(d))]
        k += len(d)
        out.append(TokenizedDialogue(id=f"{prefix}{i}", turns=turns, roles=[r for r, _ in d]))
    return out
