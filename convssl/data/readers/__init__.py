"""Readers: every supported input format becomes `Dialogue`s (or `IntentExample`s for intent sets).

`detect_format` guesses the format from the name and the first bytes (no full parse, so a 40 MB
corpus is parsed once); `read_inputs` reads many inputs, files or folders, into one result and
sends every malformed record to a `RejectLog`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convssl.data.dialogue import Dialogue, IntentExample
from convssl.data.readers._common import DEFAULT_MAX_LINE_BYTES, check_file_bytes
from convssl.data.readers.chitchat import default_path, read_chitchat
from convssl.data.readers.csvfile import is_dialogue_header, read_csv_dialogues
from convssl.data.readers.intents import TEXT_COLUMNS, is_intent_header, read_intents
from convssl.data.readers.jsonl import read_dialogue_json, read_jsonl
from convssl.data.readers.sgd import SKIP_FILES, read_sgd
from convssl.data.readers.text import looks_like_transcript, read_text
from convssl.data.rejects import DataError, RejectLog

FORMATS = ("chitchat", "sgd", "jsonl", "csv", "text", "intents")
CHITCHAT_NAMES = {"chitchat", "chitchat-dataset", "chitchat_dataset"}
FOLDER_EXTENSIONS = {".json", ".jsonl", ".csv", ".tsv", ".txt"}
# Side files of the public data sets that hold no records (schemas, label lists).
SIDE_FILES = SKIP_FILES | {"categories.json", "domains.json"}

__all__ = [
    "FORMATS", "ReadResult", "detect_format", "read_inputs", "read_chitchat", "read_sgd", "read_jsonl",
    "read_csv_dialogues", "read_text", "read_intents", "read_dialogue_json",
]


class UnknownFormat(ValueError):
    pass


@dataclass
class ReadResult:
    dialogues: list[Dialogue] = field(default_factory=list)
    intents: list[IntentExample] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)

    @property
    def turns(self) -> int:
        return sum(len(d.turns) for d in self.dialogues)


def _head(path: Path, size: int = 65536) -> str:
    with path.open("rb") as fh:
        raw = fh.read(size)
    return raw.decode("utf-8-sig", errors="ignore")


def _json_kind(path: Path) -> str:
    compact = re.sub(r"\s+", "", _head(path))
    if compact.startswith("[{") and '"dialogue_id":' in compact[:4000]:
        return "sgd"
    if compact.startswith("{") and re.match(r'\{"[^"]*":\{"(messages|ratings|prompt|start)"', compact):
        return "chitchat"
    if compact.startswith("[{") and '"turns":' in compact[:2000]:
        return "jsonl"
    if re.match(r'(\{"[^"]*":)?\[\[', compact) or re.match(r'\[\{"text":', compact):
        return "intents"
    raise UnknownFormat(f"{path}: JSON layout not recognised (not SGD, chitchat, dialogue list or intent set)")


def _first_line(path: Path) -> str:
    for line in _head(path).splitlines():
        if line.strip():
            return line
    return ""


def detect_format(path: str | Path) -> str:
    """Name the reader for `path` from its name and first bytes; UnknownFormat when unsure."""
    if str(path).lower() in CHITCHAT_NAMES and not Path(path).exists():
        return "chitchat"
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.is_dir():
        if any(path.glob("dialogues_*.json")) or (path / "schema.json").exists():
            return "sgd"
        return "folder"
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _json_kind(path)
    if suffix == ".jsonl":
        first = _first_line(path)
        try:
            item = json.loads(first)
        except json.JSONDecodeError:
            return "jsonl"
        is_intent = isinstance(item, dict) and any(c in item for c in TEXT_COLUMNS) and "turns" not in item
        return "intents" if is_intent else "jsonl"
    if suffix == ".csv":
        header = _first_line(path).split(",")
        if is_intent_header(header) and not is_dialogue_header(header):
            return "intents"
        return "csv"
    if suffix == ".tsv":  # only intent sets come tab-separated; the reader names a header it cannot use
        return "intents"
    if suffix in (".txt", ".text", ".log", ""):
        return "text"
    lines = _head(path).splitlines()[:50]
    if looks_like_transcript(lines):
        return "text"
    raise UnknownFormat(f"{path}: cannot tell the format from the name {path.name!r}; pass --format one of {FORMATS}")


Reader = Callable[..., Iterator[Any]]


def _reader(fmt: str, path: Path) -> Reader:
    if fmt == "jsonl" and path.suffix.lower() == ".json":
        return read_dialogue_json
    return {
        "chitchat": read_chitchat, "sgd": read_sgd, "jsonl": read_jsonl, "csv": read_csv_dialogues,
        "text": read_text, "intents": read_intents,
    }[fmt]


def _folder_files(path: Path) -> list[Path]:
    return sorted(
        p for p in path.rglob("*")
        if p.is_file() and p.suffix.lower() in FOLDER_EXTENSIONS and p.name not in SIDE_FILES
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )


def _expand(paths: Iterable[str | Path], fmt: str | None) -> Iterator[tuple[str, Path | None, str | None]]:
    """Yield (display name, path, format or None when undetectable) for every input to read."""
    for raw in paths:
        name = str(raw)
        if fmt == "chitchat" or (fmt is None and name.lower() in CHITCHAT_NAMES and not Path(name).exists()):
            yield name, (None if name.lower() in CHITCHAT_NAMES else Path(name)), "chitchat"
            continue
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"input {path} does not exist")
        detected = fmt
        if detected is None:
            try:
                detected = detect_format(path)
            except UnknownFormat:
                detected = None
        if path.is_dir() and detected != "sgd":
            files = _folder_files(path)
            if not files:
                raise FileNotFoundError(f"input folder {path} holds no .json/.jsonl/.csv/.tsv/.txt files")
            yield from _expand(files, fmt)
            continue
        yield name, path, detected


def read_inputs(
    paths: Iterable[str | Path] | None,
    format: str | None = None,
    strict: bool = False,
    rejects: RejectLog | None = None,
    limit: int | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    progress: Callable[[str, int], None] | None = None,
) -> ReadResult:
    """Read every input into one ReadResult; with no paths, the chitchat corpus."""
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose one of {FORMATS}")
    rejects = rejects if rejects is not None else RejectLog(strict=strict)
    if strict:
        rejects.strict = True
    result = ReadResult()
    for name, path, fmt in _expand(list(paths or ["chitchat"]), format):
        before = rejects.total
        entry: dict[str, Any] = {"path": str(path or default_path()), "input": name, "format": fmt or "unknown"}
        if fmt is None:
            assert path is not None
            if check_file_bytes(path, path.read_bytes()[:65536], rejects):
                rejects.reject(path, None, "unknown_format",
                               f"cannot tell the format of {path.name}; pass --format one of {', '.join(FORMATS)}")
        else:
            reader = _reader(fmt, path or default_path())
            n_dialogues = n_turns = n_intents = 0
            for item in reader(path or default_path(), rejects=rejects, limit=limit, max_line_bytes=max_line_bytes):
                if isinstance(item, Dialogue):
                    result.dialogues.append(item)
                    n_dialogues += 1
                    n_turns += len(item.turns)
                else:
                    result.intents.append(item)
                    n_intents += 1
                if progress is not None:
                    progress(name, 1)
            entry.update(dialogues=n_dialogues, turns=n_turns, intents=n_intents)
        entry["rejected"] = rejects.total - before
        result.sources.append(entry)
    return result


__all__ += ["DataError", "RejectLog", "UnknownFormat"]
