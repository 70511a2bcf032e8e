"""The unlabeled pool: utterances from the same domain, read from logs or intent sets, never labels.

What a pool may be (any mix, files or folders):
- chat logs in any format `convssl prepare` reads (SGD folders, chitchat, JSONL/CSV/text dialogues):
  the user turns of task-oriented logs, every turn of peer chat;
- a `convssl prepare` output folder (its `dialogues/*.jsonl`);
- a `.txt` file with one utterance per line;
- a labelled intent set (CSV text,label, CLINC150 JSON, JSONL) only with `drop_labels`: its labels
  are discarded on reading, and only its *train* split is used, so that a test or validation
  split can never leak into training. Without `drop_labels` a labelled file is refused: a team
  that passes labels by mistake should hear about it rather than have them silently ignored.

Texts equal (case- and space-insensitively) to any evaluation text are removed from the pool, and
the pool is de-duplicated.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from convssl.data.dialogue import Dialogue

LOG = logging.getLogger("convssl.pool")
USER_ROLES = {"user"}
MIN_POOL = 2


class PoolError(ValueError):
    """Bad pool input, with a one-line message naming the file."""


@dataclass
class Pool:
    texts: list[str]
    sources: list[dict] = field(default_factory=list)
    removed_eval_overlap: int = 0
    removed_duplicates: int = 0
    origins: list[int] = field(default_factory=list)  # per text, the index of its source in `sources`

    def __len__(self) -> int:
        return len(self.texts)


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def is_prepare_folder(path: Path) -> bool:
    return path.is_dir() and (path / "dialogues").is_dir() and any((path / "dialogues").glob("*.jsonl"))


def is_utterance_list(path: Path) -> bool:
    """A .txt file that is not a `speaker: text` transcript: one utterance per line."""
    from convssl.data.readers.text import looks_like_transcript

    if path.suffix.lower() != ".txt":
        return False
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        head = [line.rstrip("\n") for _, line in zip(range(50), fh)]
    return not looks_like_transcript(head)


def dialogue_utterances(dialogue: Dialogue) -> list[str]:
    """User turns of a task-oriented log (agent turns are answers, not requests); all turns of peer chat."""
    roles = {turn.role for turn in dialogue.turns}
    keep_all = not (roles & USER_ROLES)
    return [t.text for t in dialogue.turns if keep_all or t.role in USER_ROLES]


def read_utterance_list(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise PoolError(f"unlabeled pool {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return [line.strip() for line in lines if line.strip()]


def read_one(path_text: str, drop_labels: bool) -> tuple[list[str], dict]:
    """Utterances of one pool input and a summary of what was read."""
    from convssl.data.readers import RejectLog, read_inputs

    path = Path(path_text)
    if is_prepare_folder(path):
        inputs = sorted(str(p) for p in (path / "dialogues").glob("*.jsonl"))
    elif path.is_file() and is_utterance_list(path):
        texts = read_utterance_list(path)
        return texts, {"input": path_text, "kind": "utterances", "utterances": len(texts)}
    else:
        inputs = [path_text]
    rejects = RejectLog()
    try:
        result = read_inputs(inputs, rejects=rejects)
    except (FileNotFoundError, ValueError) as exc:
        raise PoolError(f"unlabeled pool {path_text}: {exc}") from exc
    unknown = [r for r in rejects.records if r.get("reason") == "unknown_format"]
    if unknown and not result.intents and not result.dialogues:
        raise PoolError(f"unlabeled pool {unknown[0].get('file', path_text)}: {unknown[0].get('message')} "
                        "(a pool is chat logs, a .txt file with one utterance per line, or an intent set with "
                        "--drop-labels)")
    texts: list[str] = []
    if result.intents:
        if not drop_labels:
            labels = sorted({e.label for e in result.intents})
            raise PoolError(f"unlabeled pool {path_text} holds {len(result.intents)} labelled examples "
                            f"({len(labels)} labels, e.g. {labels[0]!r}); pass --drop-labels to use its train "
                            "utterances without their labels")
        texts += [e.text for e in result.intents if e.split == "train"]
    for dialogue in result.dialogues:
        texts += dialogue_utterances(dialogue)
    summary = {"input": path_text, "kind": "intents (labels dropped, train split)" if result.intents else "dialogues",
               "utterances": len(texts), "rejected": rejects.total,
               "first_reject": rejects.records[0].get("message") if rejects.records else None}
    return texts, summary


def read_pool(paths: Sequence[str], drop_labels: bool = False, exclude: Iterable[str] = ()) -> Pool:
    """Read, de-duplicate and clean the pool; `exclude` are evaluation texts that must not be in it."""
    if not paths:
        raise PoolError("no unlabeled pool given")
    texts: list[str] = []
    read_from: list[int] = []
    sources = []
    for path in paths:
        found, summary = read_one(path, drop_labels)
        if not found:
            why = f": {summary['first_reject']}" if summary.get("first_reject") else ""
            raise PoolError(f"unlabeled pool {path}: no utterances found ({summary.get('rejected', 0)} records "
                            f"rejected{why})")
        texts += found
        read_from += [len(sources)] * len(found)
        sources.append(summary)
    banned = {normalise(t) for t in exclude}
    seen: set[str] = set()
    kept: list[str] = []
    origins: list[int] = []
    overlap = duplicates = 0
    for text, origin in zip(texts, read_from):
        key = normalise(text)
        if not key:
            continue
        if key in banned:
            overlap += 1
        elif key in seen:
            duplicates += 1
        else:
            seen.add(key)
            kept.append(text.strip())
            origins.append(origin)
    if len(kept) < MIN_POOL:
        raise PoolError(f"unlabeled pool {', '.join(paths)}: only {len(kept)} usable utterance(s) after removing "
                        f"{overlap} evaluation texts and {duplicates} duplicates")
    LOG.info("unlabeled pool: %d utterances (%d evaluation texts and %d duplicates removed) from %s",
             len(kept), overlap, duplicates, ", ".join(paths))
    return Pool(kept, sources, overlap, duplicates, origins)
