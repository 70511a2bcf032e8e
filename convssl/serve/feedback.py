"""The feedback loop: what agents and users taught the bot, as a labelled set to retrain on.

The export is the labelled-JSONL format the readers take (`{"text": ..., "label": ...}` per line),
so `convssl finetune --data FILE` retrains from it directly.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from convssl.serve import db


def export_jsonl_lines(conn: sqlite3.Connection, include_thumbs_up: bool = True) -> list[str]:
    """One line per example; an agent's label also says who gave it and when (UTC, ISO 8601)."""
    lines = []
    for ex in db.labelled_examples(conn, include_thumbs_up):
        row = {"text": ex["text"], "label": ex["label"], "source": ex["source"]}
        if ex.get("agent"):
            row["agent"] = ex["agent"]
        if ex.get("labelled_at"):
            row["labelled_at"] = datetime.fromtimestamp(ex["labelled_at"], UTC).isoformat(timespec="seconds")
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    return lines


def export_feedback(db_path: str | Path, out: str | Path, include_thumbs_up: bool = True) -> Counter:
    """Write the labelled set; returns the count per source (agent_label, correction, thumbs_up)."""
    conn = db.connect(db_path, readonly=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"messages", "labels", "feedback"} <= tables:
            raise ValueError(f"{db_path} is not a convssl serve database (tables messages/labels/feedback missing)")
        lines = export_jsonl_lines(conn, include_thumbs_up)
    finally:
        conn.close()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(out)
    return Counter(json.loads(line)["source"] for line in lines)
