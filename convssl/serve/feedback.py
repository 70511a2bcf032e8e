"""The feedback loop: what agents and users taught the bot, as a labelled set to retrain on.

The export is the labelled-JSONL format the readers take (`{"text": ..., "label": ...}` per line),
so `convssl finetune --data FILE` retrains from it directly.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

from convssl.serve import db


def export_jsonl_lines(conn: sqlite3.Connection, include_thumbs_up: bool = True) -> list[str]:
    return [
        json.dumps({"text": ex["text"], "label": ex["label"], "source": ex["source"]}, ensure_ascii=False) + "\n"
        for ex in db.labelled_examples(conn, include_thumbs_up)
    ]


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
