"""Intent sets for downstream tasks: CSV `text,label` (BANKING77: `text,category`; or tab-separated `.tsv`) or JSON.

JSON may be CLINC150's `data_full.json` (split name -> list of `[text, intent]`), a list of
`[text, label]` pairs or `{"text", "label"}` objects; JSONL holds one `{"text", "label"[, "split"]}`
per line (what `prepare` writes to `DIR/intents/`). The given splits are kept: a CSV file's
split comes from its name (train.csv, test.csv), a JSON key names its own split.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from convssl.data.dialogue import IntentExample
from convssl.data.readers._common import (
    json_lines,
    line_reader,
    read_json_document,
)
from convssl.data.readers.csvfile import csv_table, delimiter_of, header_columns
from convssl.data.rejects import RejectLog

# Column names other intent sets use; the first present wins (a string `label_text` before an
# integer `label`, as Hugging Face exports write both).
TEXT_COLUMNS = ("text", "utterance", "sentence", "query")
LABEL_COLUMNS = ("label_text", "intent_name", "label", "category", "intent")
SPLIT_NAMES = {
    "train": "train", "training": "train", "val": "validation", "valid": "validation", "dev": "validation",
    "validation": "validation", "test": "test",
}


def split_of(name: str, default: str = "train") -> str:
    """Split named by a file stem or JSON key: `val`, `oos_val` -> validation; unknown -> default."""
    key = name.lower()
    for prefix in ("oos_", "ood_"):
        key = key.removeprefix(prefix)
    return SPLIT_NAMES.get(key, default)


def source_of(path: Path) -> str:
    """BANKING77's train.csv is source `banking77`: a split-named file takes its folder's name."""
    stem = path.stem.lower()
    generic = stem in SPLIT_NAMES or stem in {"data", "data_full", "dataset", "intents"}
    return path.parent.name if generic and path.parent.name else path.stem


def is_intent_header(header: list[str]) -> bool:
    cols = header_columns(header)
    return any(c in cols for c in TEXT_COLUMNS) and any(c in cols for c in LABEL_COLUMNS)


def _field(item: dict[str, Any], names: tuple[str, ...]) -> Any:
    """The value under the first of `names` that `item` has (a record, or a header's column index)."""
    return next((item[c] for c in names if c in item), None)


@line_reader
def read_intents(path: Path, rejects: RejectLog, max_line_bytes: int, limit: int | None) -> Iterator[IntentExample]:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        items = _read_csv(path, rejects, max_line_bytes)
    elif suffix == ".jsonl":
        items = _read_jsonl(path, rejects, max_line_bytes)
    else:
        items = _read_json(path, rejects)
    for count, item in enumerate(items):
        if limit is not None and count >= limit:
            return
        yield item


def _read_csv(path: Path, rejects: RejectLog, max_line_bytes: int) -> Iterator[IntentExample]:
    table = csv_table(path, rejects, max_line_bytes)
    if table is None:
        return
    line, header, cols, rows = table
    i_text, i_label = _field(cols, TEXT_COLUMNS), _field(cols, LABEL_COLUMNS)
    if i_text is None or i_label is None:
        read = delimiter_of(path).join(header)
        kind = "TSV" if path.suffix.lower() == ".tsv" else "CSV"
        rejects.reject(path, line, "missing_field", f"intent {kind} header {read!r} needs a text column "
                       f"({' or '.join(TEXT_COLUMNS)}) and a label column ({' or '.join(LABEL_COLUMNS)})", read)
        return
    width = len(header)
    split, source = split_of(path.stem), source_of(path)
    i_split = cols.get("split")  # one file holding every split, as JSONL may
    for line, row in rows:
        if len(row) != width:
            rejects.reject(path, line, "malformed_record", f"row has {len(row)} fields, the header has {width}", ",".join(row))
            continue
        row_split = split_of(row[i_split], split) if i_split is not None and row[i_split].strip() else split
        example = _example(path, line, row[i_text], row[i_label], row_split, source, rejects, row)
        if example is not None:
            yield example


def _read_jsonl(path: Path, rejects: RejectLog, max_line_bytes: int) -> Iterator[IntentExample]:
    default_split, source = split_of(path.stem), source_of(path)
    for line, item in json_lines(path, rejects, max_line_bytes):
        if not isinstance(item, dict):
            rejects.reject(path, line, "malformed_record", "expected a {\"text\", \"label\"} object", item)
            continue
        split = split_of(str(item.get("split", default_split)), default_split)
        example = _example(path, line, _field(item, TEXT_COLUMNS), _field(item, LABEL_COLUMNS), split,
                           str(item.get("source") or source), rejects, item)
        if example is not None:
            yield example


def _read_json(path: Path, rejects: RejectLog) -> Iterator[IntentExample]:
    parsed = read_json_document(path, rejects)
    if parsed is None:
        return
    data = parsed[1]
    source = source_of(path)
    groups = data.items() if isinstance(data, dict) else [(path.stem, data)]
    for key, items in groups:
        if not isinstance(items, list):
            rejects.reject(path, None, "malformed_record", f"key {key!r} must hold a list of [text, label] items")
            continue
        split = split_of(str(key), "train")
        for i, item in enumerate(items):
            if isinstance(item, dict):
                text, label = _field(item, TEXT_COLUMNS), _field(item, LABEL_COLUMNS)
            elif isinstance(item, list) and len(item) == 2:
                text, label = item
            else:
                rejects.reject(path, None, "malformed_record", f"{key}[{i}] is not a [text, label] pair", item)
                continue
            example = _example(path, None, text, label, split, source, rejects, item, where=f"{key}[{i}]")
            if example is not None:
                yield example


def _example(
    path: Path, line: int | None, text: Any, label: Any, split: str, source: str, rejects: RejectLog, record: Any,
    where: str = "",
) -> IntentExample | None:
    prefix = f"{where}: " if where else ""
    if not isinstance(text, str) or not text.strip():
        rejects.reject(path, line, "missing_field", f"{prefix}example has no text", record)
        return None
    if label is None or not str(label).strip():
        rejects.reject(path, line, "missing_field", f"{prefix}example has no label", record)
        return None
    return IntentExample(text=text, label=str(label).strip(), split=split, source=source)
